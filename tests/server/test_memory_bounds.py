"""The broker's memory (its RSS, from /proc) while clients misbehave, as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from linemq.broker.auth import hash_token
from tests.conftest import BrokerProcess
from tests.wire import Wire

MiB = 1024 * 1024
TOKEN = "memory-secret-token"

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def reset_peak(pid: int) -> bool:
    """Start VmHWM (peak RSS) afresh, so a passing peak is measured too (Linux >= 4.0)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class Rss:
    """The broker's RSS growth over a baseline: the peak if the kernel keeps it, else sampled."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.base = status_kib(pid, "VmRSS") * 1024
        self.peak_kept = reset_peak(pid)
        self.sampled = self.base

    def sample(self) -> None:
        self.sampled = max(self.sampled, status_kib(self.pid, "VmRSS") * 1024)

    @property
    def growth(self) -> int:
        self.sample()
        peak = status_kib(self.pid, "VmHWM") * 1024 if self.peak_kept else self.sampled
        return max(peak, self.sampled) - self.base


async def watch(rss: Rss, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rss.sample()
        await asyncio.sleep(0.02)


async def fill(port: int, topic: str, count: int, size: int) -> None:
    w = await Wire.open(port)
    body = "m" * size
    for start in range(0, count, 2000):
        n = min(2000, count - start)
        await w.send("".join(f"PUB {topic} {body}\n" for _ in range(n)))
        assert await w.lines(n, timeout=30) == ["OK published"] * n
    await w.close()


async def open_unread(port: int, line: bytes) -> asyncio.StreamWriter:
    """A client that sends ``line`` and reads nothing (a small receive buffer)."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    writer.write(line)
    await writer.drain()
    return writer


def dropped(proc: BrokerProcess) -> int:
    return sum(
        1
        for e in proc.events()
        if e.get("event") == "connection_dropped" and "slow consumer" in str(e.get("reason"))
    )


async def test_clients_asking_for_history_and_never_reading_are_cut_and_rss_stays_flat(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    proc = broker_process("--write-timeout", "1.5")
    assert proc.proc is not None
    await fill(proc.port, "t", 50_000, 1000)  # ~50 MB stored
    rss = Rss(proc.proc.pid)
    stalled = [await open_unread(proc.port, b"HISTORY t 100000\n") for _ in range(6)]
    probe = await Wire.open(proc.port)
    deadline = time.monotonic() + 15
    while dropped(proc) < 6:
        assert time.monotonic() < deadline, f"only {dropped(proc)} of 6 clients were cut"
        await watch(rss, 0.1)
        assert await probe.cmd("PING") == "OK pong"  # the broker keeps answering
    # Built whole, each reply was ~56 MB: six of them were ~300 MB.
    assert rss.growth < 64 * MiB, f"RSS grew {rss.growth / MiB:.0f} MiB"
    for writer in stalled:
        writer.close()
    await probe.close()


async def test_a_thousand_unauthenticated_connections_are_bounded_and_refused_past_the_limit(
    broker_process: Callable[..., BrokerProcess], tmp_path: Path
) -> None:
    users = tmp_path / "users.toml"
    users.write_text(
        f'[[users]]\nname = "app"\ntoken_sha256 = "{hash_token(TOKEN)}"\n'
        'publish = [">"]\nsubscribe = [">"]\n'
    )
    proc = broker_process("--auth-file", str(users), "--max-unauthenticated", "500")
    assert proc.proc is not None
    admin = await Wire.open(proc.port)
    assert await admin.cmd(f"AUTH {TOKEN}") == "OK authenticated"
    rss = Rss(proc.proc.pid)
    conns: list[asyncio.StreamWriter] = []
    firsts: list[bytes] = []
    for i in range(1000):
        reader, writer = await asyncio.open_connection("127.0.0.1", proc.port)
        firsts.append(await asyncio.wait_for(reader.readline(), 5))
        if firsts[-1] == b"OK connected\n":
            # A partial line that fits the pre-AUTH limit, or one far over it: neither is held.
            writer.write(b"AUTH " + b"x" * (4000 if i % 2 else 300_000))
        conns.append(writer)
        if i % 100 == 99:
            await asyncio.gather(*(w.drain() for w in conns[-100:]))
            rss.sample()
    assert firsts.count(b"OK connected\n") == 500
    assert firsts.count(b"ERR too many unauthenticated connections\n") == 500
    await watch(rss, 0.5)
    assert await admin.cmd("PING") == "OK pong"
    # Buffered up to --max-line-bytes, 500 such lines were ~500 MB.
    assert rss.growth < 48 * MiB, f"RSS grew {rss.growth / MiB:.0f} MiB"
    for writer in conns:
        with contextlib.suppress(OSError):
            writer.close()
    await admin.close()
