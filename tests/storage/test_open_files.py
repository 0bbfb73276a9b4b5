"""Thousands of topics under a small open-files limit: publish, restart, all still served."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from linemq.broker.storage.handles import HandleBudget, budget_for
from tests.wire import Wire

LIMIT = 256
TOPICS = 2000


def _small_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


class _Broker:
    """``python -m broker`` with RLIMIT_NOFILE set to 256 (soft and hard) before it starts."""

    def __init__(self, data_dir: Path) -> None:
        self.log_path = data_dir.parent / f"broker-{time.monotonic_ns()}.log"
        cmd = [sys.executable, "-m", "linemq.broker", "--port", "0", "--data-dir", str(data_dir)]
        cmd += ["--log-format", "json", "--fsync-interval-ms", "50"]
        with open(self.log_path, "wb") as log_file:
            self.proc = subprocess.Popen(
                cmd, stderr=log_file, stdout=subprocess.DEVNULL, preexec_fn=_small_limit
            )
        self.port = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self.port:
            for line in self.log_path.read_bytes().splitlines():
                event = json.loads(line) if line.startswith(b"{") else {}
                if event.get("event") == "listening":
                    self.port = int(event["port"])
            if self.proc.poll() is not None:
                raise RuntimeError(self.log_path.read_text())
            time.sleep(0.05)
        assert self.port, self.log_path.read_text()

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self) -> None:
        self.proc.terminate()
        assert self.proc.wait(30) == 0, self.log_path.read_text()


@pytest.mark.timeout(300)
async def test_two_thousand_topics_publish_and_restart_under_a_256_file_limit(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    broker = await asyncio.to_thread(_Broker, data)
    try:
        pub = await Wire.open(broker.port)
        for start in range(0, TOPICS, 500):
            names = range(start, start + 500)
            await pub.send("".join(f"PUB t{i} first {i}\nPUB t{i} second {i}\n" for i in names))
            assert await pub.lines(1000, timeout=60) == ["OK published"] * 1000
        assert broker.fds() < LIMIT - 32
        await pub.send("".join(f"PUB t{i} third {i}\n" for i in range(0, TOPICS, 7)))
        n = len(range(0, TOPICS, 7))
        assert await pub.lines(n, timeout=60) == ["OK published"] * n
    finally:
        await asyncio.to_thread(broker.stop)
    broker = await asyncio.to_thread(_Broker, data)
    try:
        assert broker.fds() < LIMIT - 32
        w = await Wire.open(broker.port)
        for i in (0, 1, 7, 999, 1998, 1999):
            await w.send(f"HISTORY t{i} 10\n")
            got = [line.split(" ", 5)[5] for line in (await w.until("OK history end"))[:-1]]
            want = [f"first {i}", f"second {i}"] + ([f"third {i}"] if i % 7 == 0 else [])
            assert got == want
        await w.send("".join(f"PUB t{i} after\n" for i in range(TOPICS)))
        assert await w.lines(TOPICS, timeout=60) == ["OK published"] * TOPICS
        await w.send("STATS\n")
        assert f"topics={TOPICS}" in (await w.until("OK stats end"))[0]
    finally:
        await asyncio.to_thread(broker.stop)


class _Owner:
    def __init__(self) -> None:
        self.handle_recent = False
        self.released = 0

    def release_handles(self) -> None:
        self.released += 1


def test_budget_closes_the_least_recently_used_first() -> None:
    budget = HandleBudget(3)
    owners = [_Owner() for _ in range(5)]
    for o in owners[:3]:
        budget.opened(o)
    owners[0].handle_recent = True  # written since: gets a second chance
    owners[1].handle_recent = False
    owners[2].handle_recent = False
    budget.opened(owners[3])
    assert [o.released for o in owners] == [0, 1, 0, 0, 0]
    budget.opened(owners[4])
    assert [o.released for o in owners] == [0, 1, 1, 0, 0]
    assert len(budget) == 3


def test_budget_follows_the_limit() -> None:
    assert budget_for(0.5, 2, limit=256) == 48
    assert budget_for(0.5, 2, limit=1024) == 240
    assert budget_for(0.5, 2, limit=70) == 4


def test_closing_an_idle_topic_leaves_its_fsync_to_the_sync_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eviction happens on the event loop, inside a write: it must not wait for the disk.
    The unsynced bytes of a closed topic are fsynced by the next ``sync`` instead."""
    from linemq.broker.storage import topic_log
    from linemq.broker.storage.topic_log import TopicLog

    budget = HandleBudget(1)
    a = TopicLog.open(tmp_path, "a", handles=budget)
    b = TopicLog.open(tmp_path, "b", handles=budget)
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(topic_log.os, "fsync", fsync)
    a.append("one", 1.0, "ia")
    a.write()
    b.append("two", 1.0, "ib")
    b.write()  # opens b's files: a's are closed, unsynced
    assert synced == [], "no fsync on the loop"
    a.sync()
    log_file = tmp_path / "a" / "00000000000000000001.log"
    assert log_file.stat().st_ino in synced
    a.append("three", 2.0, "ic")
    a.write()  # reopened for the write
    assert [r.msg for r in a.read(1, 10)] == ["one", "three"]
    for t in (a, b):
        t.close()
