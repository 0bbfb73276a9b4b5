"""Bad input, hostile names and slow readers: clear ERR lines, nothing on disk, server healthy."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import weakref
from pathlib import Path

import pytest

from linemq.broker.engine import durability
from linemq.broker.engine.durability import Syncable
from linemq.broker.server.app import Broker
from linemq.broker.server.connection import Connection
from tests.conftest import BrokerFactory, eventually
from tests.wire import Wire


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")} if path.exists() else set()


@pytest.mark.parametrize(
    "name", ["../x", "/etc/x", "a/b", "..", ".hidden", "a" * 201, "a\x00b", "x..y", "é"]
)
async def test_invalid_topic_names_are_rejected_and_create_nothing(
    broker: Broker, name: str
) -> None:
    before = files_under(broker.config.data_dir)
    w = await Wire.open(broker.port)
    for line in (f"PUB {name} hi", f"SUB {name}", f"SUB {name} g", f"HISTORY {name} 5"):
        reply = await w.cmd(line)
        assert reply == ("ERR invalid NUL byte" if "\x00" in name else "ERR invalid topic name")
    assert await w.cmd("PUB ok lfine") == "OK published"
    after = files_under(broker.config.data_dir)
    assert all(name not in f for f in after - before)
    assert not any(p.name == "x" for p in Path("/etc").parent.glob("x"))


async def test_empty_topic_name_is_a_usage_error(broker: Broker) -> None:
    w = await Wire.open(broker.port)
    assert await w.cmd("PUB  hi") == "ERR usage: PUB <topic> <message>"
    assert await w.cmd("SUB ") == "ERR usage: SUB <topic> [group_id]"


async def test_dlq_topic_name_is_valid(broker: Broker) -> None:
    w = await Wire.open(broker.port)
    assert await w.cmd("SUB orders.dlq") == "OK subscribed orders.dlq"
    assert (
        await w.cmd("PUB orders.dlq by-hand") == "ERR dead-letter topics are written by the broker"
    )


async def test_over_long_line_gets_err_and_the_rest_is_discarded(brokers: BrokerFactory) -> None:
    broker = await brokers.start(max_line_bytes=1024)
    w = await Wire.open(broker.port)
    await w.send(b"PUB chat " + b"x" * 5000)
    assert await w.line() == "ERR line too long"
    await w.send(b"y" * 5000 + b"\nPING\n")
    assert await w.line() == "OK pong"
    other = await Wire.open(broker.port)
    assert await other.cmd("PUB chat fine") == "OK published"
    assert broker.store.get("chat").last_offset == 1  # type: ignore[union-attr]


async def test_random_binary_garbage_leaves_the_server_answering(broker: Broker) -> None:
    rng = __import__("random").Random(1234)
    for _ in range(5):
        _reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
        writer.write(bytes(rng.getrandbits(8) for _ in range(20_000)))
        await writer.drain()
        writer.close()
    w = await Wire.open(broker.port)
    await w.send(bytes(range(256)) * 4 + b"\n")
    assert await w.cmd("PING") in ("OK pong",) or True
    # Whatever the garbage produced, the connection still answers in order.
    await w.send("PING\n")
    while (line := await w.line()) != "OK pong":
        assert line.startswith("ERR ")


async def test_slow_subscriber_is_disconnected_and_publishers_keep_going(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(max_pending_bytes=64 * 1024)
    _reader, writer = await asyncio.open_connection("127.0.0.1", broker.port, limit=1024)
    writer.write(b"SUB firehose\n")
    await writer.drain()
    pub = await Wire.open(broker.port)
    payload = "x" * 1000
    for _ in range(20):
        await pub.send("".join(f"PUB firehose {payload}\n" for _ in range(200)))
        assert await pub.lines(200) == ["OK published"] * 200
    await eventually(lambda: len(broker.connections) == 1)
    assert await pub.cmd("PING") == "OK pong"
    writer.close()


async def test_connections_dropped_mid_line_leak_nothing(broker: Broker) -> None:
    fds_before = len(os.listdir("/proc/self/fd"))
    for _ in range(200):
        _reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
        writer.write(b"PUB chat half a li")
        await writer.drain()
        writer.transport.abort()
    await eventually(lambda: not broker.connections)
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 2
    assert broker.store.get("chat") is None or broker.store.get("chat").last_offset == 0  # type: ignore[union-attr]


async def test_closed_connections_are_freed_without_the_cycle_collector(
    brokers: BrokerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory of a closed connection comes back at once, whatever it was doing: the
    daemon runs full GC passes rarely (``linemq serve``)."""
    broker = await brokers.start(fsync="always")
    made: list[weakref.ref[Connection]] = []
    original = Connection.connection_made

    def track(self: Connection, transport: asyncio.BaseTransport) -> None:
        made.append(weakref.ref(self))
        original(self, transport)

    monkeypatch.setattr(Connection, "connection_made", track)
    fsync_may_finish = threading.Event()
    sync_all = durability._sync_all

    def slow_sync_all(files: list[Syncable]) -> None:
        fsync_may_finish.wait(5)
        sync_all(files)

    monkeypatch.setattr(durability, "_sync_all", slow_sync_all)
    gc.disable()
    try:
        for i in range(20):
            w = await Wire.open(broker.port)
            await w.send("SUB t g\nSUB t\nPUB t x\nPUB t y\n" if i % 2 else "PUB u z\n")
            if i % 4:  # some leave politely once answered
                fsync_may_finish.set()
                await w.line()
                await w.close()
            else:  # others reset the connection while their replies wait for an fsync
                fsync_may_finish.clear()
                await eventually(lambda: any(c.holds_replies for c in broker.connections))
                w.writer.transport.abort()
        fsync_may_finish.set()
        await eventually(lambda: all(ref() is None for ref in made))
    finally:
        fsync_may_finish.set()
        gc.enable()
