"""Group files on disk: internal names no client can reach, damage that stops nothing,
and a bounded number of open journals however many groups there are."""

from __future__ import annotations

import asyncio
import functools
import os
import resource
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from linemq.broker.protocol.names import is_valid_topic
from linemq.broker.storage.damage import UNOPENABLE
from linemq.broker.storage.records import Record
from linemq.broker.storage.topic_log import TopicLog
from tests.conftest import BrokerFactory, BrokerProcess
from tests.server.groupwire import member, next_msg
from tests.wire import Wire


async def make_every_internal_file(port: int) -> None:
    """Traffic that leaves every kind of file the broker keeps under data/."""
    w = await Wire.open(port)
    assert await w.cmd("SUB jobs.* billing") == "OK subscribed jobs.* in group billing"
    assert await w.cmd("PUB jobs.a work") == "OK published"
    assert (await w.line()).startswith("MSG jobs.a ")
    await w.send("HELLO 2\nPUT jobs.b 2 id=p1\nhi\n")
    assert await w.line() == "OK hello 2"
    assert (await w.line()).startswith("OK ")
    d = await member(port, "t", "g")
    assert await d.cmd("PUB t poison") == "OK published"
    got = await next_msg(d)
    assert await d.cmd(f"NACK {got.id}") == "OK nack_received"
    for _ in range(100):  # the letter is written at the next tick
        if await w.cmd("REPLAY t ALL") == "OK replayed 1":
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the dead letter never came")
    await w.close()


async def reply(w: Wire, command: str) -> str:
    await w.send(command + "\n")
    while (line := await w.line()).startswith("MSG "):
        pass
    return line


def names_under(data_dir: Path) -> set[str]:
    """Every file and folder name in the data dir, and the parts of each."""
    found: set[str] = set()
    for _, dirs, files in os.walk(data_dir):
        for name in [*dirs, *files]:
            found.add(name)
            found.update(name.split("."))
            found.add(name.removesuffix(".journal"))
    return found


async def test_internal_names_used_as_topics_and_groups_stop_nothing(
    brokers: BrokerFactory,
) -> None:
    """``SUB _patterns.journal g`` made every later start fail with "Is a directory"."""
    broker = await brokers.start(max_retries=0)
    await make_every_internal_file(broker.port)
    names = names_under(brokers.data_dir)
    names |= {"_patterns.journal", "topics", "groups", "dedup", "replays", "g.journal.tmp"}
    names = {n for n in names if is_valid_topic(n)}
    assert {"_patterns.journal", "t.journal", "t.dlq"} <= names
    w = await Wire.open(broker.port)
    for name in sorted(names):  # members get messages meanwhile: skip them
        if name.endswith(".dlq"):  # only the broker writes dead-letter topics
            broker.engine.publish_internal(name, f"m-{name}")
        else:
            assert await reply(w, f"PUB {name} m-{name}") == "OK published"
        assert await reply(w, f"SUB {name} {name}") == f"OK subscribed {name} in group {name}"
        assert await reply(w, f"SUB t {name}") == f"OK subscribed t in group {name}"
    await w.close()
    broker = await brokers.restart(broker)
    assert broker.damage.counts() == dict.fromkeys(broker.damage.counts(), 0)
    w = await Wire.open(broker.port)
    for name in sorted(names):
        assert set(broker.router.groups[name]) >= {name}
        assert name in broker.router.groups["t"]
        await w.send(f"HISTORY {name} 1\n")
        line, end = await w.lines(2)
        assert line.startswith(f"HISTORY {name} ") and end == "OK history end"
    await w.close()
    assert ("jobs.*", "billing") in broker.router.patterns.groups


async def test_a_pattern_journal_of_the_earlier_layout_is_moved_once(
    brokers: BrokerFactory,
) -> None:
    groups = brokers.data_dir / "groups"
    groups.mkdir(parents=True)
    (groups / "_patterns.journal").write_bytes(b'{"p":"jobs.*","g":"billing"}\n')
    broker = await brokers.start()
    assert ("jobs.*", "billing") in broker.router.patterns.groups
    assert not (groups / "_patterns.journal").exists()
    w = await Wire.open(broker.port)
    assert await w.cmd("SUB _patterns.journal g") == "OK subscribed _patterns.journal in group g"
    await w.close()
    broker = await brokers.restart(broker)
    assert ("jobs.*", "billing") in broker.router.patterns.groups
    assert "g" in broker.router.groups["_patterns.journal"]


async def test_a_group_that_cannot_be_opened_stops_nothing_else(brokers: BrokerFactory) -> None:
    broker = await brokers.start()
    m = await member(broker.port, "t", "ok")
    await m.close()
    for name in ("broken", "garbage"):
        w = await member(broker.port, "t", name)
        await w.close()
    w = await Wire.open(broker.port)
    assert await w.cmd("PUB t m1") == "OK published"
    await w.close()
    await brokers.stop(broker)
    groups = brokers.data_dir / "groups"
    (groups / "t" / "broken.journal").unlink()
    (groups / "t" / "broken.journal").mkdir()  # unreadable as a file
    (groups / "t" / "garbage.journal").write_bytes(os.urandom(300) + b"\n")
    (groups / ".patterns.journal").mkdir()
    broker = await brokers.start()
    unopenable = broker.damage.unopenable()
    assert {(d.topic, d.group) for d in unopenable} == {("t", "broken"), (None, None)}
    assert all(d.kind == UNOPENABLE for d in unopenable)
    assert set(broker.router.groups["t"]) == {"ok", "garbage"}
    for name in ("ok", "garbage"):  # each gets the message it never acked
        m = await member(broker.port, "t", name)
        assert (await next_msg(m)).text == "m1"
        await m.close()


def test_thousands_of_groups_restart_under_a_small_open_files_limit(
    broker_process: Callable[..., BrokerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every group journal held a descriptor: 1,500 groups could not start under 1,024."""
    n = 1500
    b = broker_process("--max-subscriptions", "5000")

    async def subscribe_all(port: int, ack: bool) -> None:
        w = await Wire.open(port)
        await w.send("".join(f"SUB t g{i}\n" for i in range(n)))
        oks = 0
        ids: list[str] = []
        while oks < n or len(ids) < (n if ack else 0):
            line = await w.line(30)
            if line.startswith("OK subscribed"):
                oks += 1
            elif line.startswith("MSG t "):
                ids.append(line.split(" ")[2])
        if ack:
            await w.send("".join(f"ACK {id}\n" for id in ids))
            for _ in ids:
                assert await w.line(30) == "OK ack_received"
        await w.close()

    asyncio.run(subscribe_all(b.port, ack=False))
    b.terminate()

    def small_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    limited = functools.partial(subprocess.Popen, preexec_fn=small_limit)
    monkeypatch.setattr(subprocess, "Popen", limited)
    b = broker_process("--max-subscriptions", "5000")
    monkeypatch.undo()

    async def publish_and_serve(port: int) -> None:
        w = await Wire.open(port)
        assert await w.cmd("PUB t hello") == "OK published"
        await w.close()
        await subscribe_all(port, ack=True)  # every group gets it, and 1,500 acks are written

    asyncio.run(publish_and_serve(b.port))
    assert b.fd_count() < 256
    assert not [e for e in b.events() if e.get("event") == "storage_damage"]
    b.terminate()


async def test_a_topic_whose_ids_cannot_be_reloaded_stops_nothing(
    brokers: BrokerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = await brokers.start()
    w = await Wire.open(broker.port)
    await w.send("HELLO 2\nPUT a 2 id=p1\nhi\nPUT b 2 id=p1\nhi\n")
    assert (await w.lines(3))[0] == "OK hello 2"
    await w.close()
    await brokers.stop(broker)
    real_read = TopicLog.read

    def read(self: TopicLog, offset: int, n: int, max_bytes: int = 1 << 20) -> list[Record]:
        if self.name == "a":
            raise OSError(5, "Input/output error")
        return real_read(self, offset, n, max_bytes)

    monkeypatch.setattr(TopicLog, "read", read)
    broker = await brokers.start()
    monkeypatch.undo()
    assert broker.ready
    w = await Wire.open(broker.port)
    await w.send("HELLO 2\nPUT b 2 id=p1\nhi\n")
    assert (await w.lines(2))[1].startswith("OK duplicate 1 ")  # b's ids were reloaded
    await w.close()
