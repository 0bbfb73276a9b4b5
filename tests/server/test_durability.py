"""Restarts, kill -9 and torn tails, on real files, with the broker as a subprocess."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from linemq.broker.server.app import Broker
from tests.conftest import BrokerFactory, BrokerProcess
from tests.wire import Wire


async def history(port: int, topic: str, n: int) -> list[str]:
    w = await Wire.open(port)
    await w.send(f"HISTORY {topic} {n}\n")
    lines = await w.until("OK history end", timeout=30)
    await w.close()
    return lines[:-1]


async def test_offsets_persist_across_a_graceful_restart(brokers: BrokerFactory) -> None:
    broker = await brokers.start()
    w = await Wire.open(broker.port)
    for i in range(5):
        assert await w.cmd(f"PUB chat m{i}") == "OK published"
    await w.close()
    broker = await brokers.restart(broker)
    w = await Wire.open(broker.port)
    assert await w.cmd("PUB chat after") == "OK published"
    lines = await history(broker.port, "chat", 10)
    assert [line.split(" ")[3] for line in lines] == ["1", "2", "3", "4", "5", "6"]
    assert lines[-1].endswith(" after")


async def test_segments_roll_and_history_reads_across_them(brokers: BrokerFactory) -> None:
    broker = await brokers.start(segment_bytes=4096)
    w = await Wire.open(broker.port)
    await w.send("".join(f"PUB chat message-{i:04d}-{'x' * 80}\n" for i in range(300)))
    assert await w.lines(300) == ["OK published"] * 300
    segments = sorted((broker.config.data_dir / "topics" / "chat").glob("*.log"))
    assert len(segments) > 5
    assert segments[0].name == "00000000000000000001.log"
    broker = await brokers.restart(broker)
    lines = await history(broker.port, "chat", 300)
    assert [int(line.split(" ")[3]) for line in lines] == list(range(1, 301))


async def test_segments_roll_under_a_publisher_waiting_for_each_reply(
    brokers: BrokerFactory,
) -> None:
    """One PUB per read is written at once unless it opens a segment; those wait
    for the tick. Both kinds must be stored, in order, and answered once."""
    broker = await brokers.start(segment_bytes=4096)
    w = await Wire.open(broker.port)
    for i in range(150):
        assert await w.cmd(f"PUB chat message-{i:04d}-{'x' * 80}") == "OK published"
    assert len(list((broker.config.data_dir / "topics" / "chat").glob("*.log"))) > 3
    assert await w.silent(0.05)
    broker = await brokers.restart(broker)
    lines = await history(broker.port, "chat", 300)
    assert [int(line.split(" ")[3]) for line in lines] == list(range(1, 151))
    assert [line.split(" ")[5][:12] for line in lines] == [f"message-{i:04d}" for i in range(150)]


async def test_sigterm_flushes_and_exits_zero(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    proc = broker_process("--fsync", "never")
    w = await Wire.open(proc.port)
    await w.send("".join(f"PUB chat {i}\n" for i in range(100)))
    assert await w.lines(100) == ["OK published"] * 100
    assert proc.terminate() == 0
    assert await w.line() == "ERR server shutting down"
    proc = broker_process("--fsync", "never")
    assert len(await history(proc.port, "chat", 1000)) == 100


async def publish_until_killed(port: int, conn_id: int, acked: list[str]) -> None:
    """Pipeline publishes, recording each message whose OK came back."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await reader.readline() == b"OK connected\n"
        i = 0
        while True:
            batch = [f"c{conn_id}-{i + j}" for j in range(50)]
            writer.write("".join(f"PUB crash {m}\n" for m in batch).encode())
            for m in batch:
                line = await reader.readline()
                if line != b"OK published\n":
                    return
                acked.append(m)
            i += 50
    except (ConnectionError, OSError):
        return


async def test_kill9_during_pipelined_publishing_loses_nothing_acknowledged(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    proc = broker_process()
    acked: list[str] = []
    tasks = [asyncio.create_task(publish_until_killed(proc.port, c, acked)) for c in range(4)]
    while len(acked) < 3000:
        await asyncio.sleep(0.01)
    proc.kill9()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    proc = broker_process()
    lines = await history(proc.port, "crash", 100_000)
    offsets = [int(line.split(" ")[3]) for line in lines]
    assert offsets == list(range(1, len(offsets) + 1)), "offsets must be gap-free"
    stored = [line.split(" ", 5)[5] for line in lines]
    assert len(stored) == len(set(stored)), "nothing stored twice"
    missing = set(acked) - set(stored)
    assert not missing, f"{len(missing)} acknowledged messages lost"
    # And the log goes on from there without a gap.
    w = await Wire.open(proc.port)
    assert await w.cmd("PUB crash next") == "OK published"
    last = await history(proc.port, "crash", 1)
    assert int(last[0].split(" ")[3]) == len(offsets) + 1


async def publish_one_at_a_time(port: int, acked: list[str]) -> None:
    """Window 1: each publish waits for its OK, the path where the reply leaves at once."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await reader.readline() == b"OK connected\n"
        for i in range(1_000_000):
            writer.write(f"PUB lone m{i}\n".encode())
            if await reader.readline() != b"OK published\n":
                return
            acked.append(f"m{i}")
    except (ConnectionError, OSError):
        return


async def test_kill9_loses_no_publish_acknowledged_one_at_a_time(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    proc = broker_process()
    acked: list[str] = []
    task = asyncio.create_task(publish_one_at_a_time(proc.port, acked))
    while len(acked) < 300:
        await asyncio.sleep(0.005)
    proc.kill9()
    await asyncio.wait_for(task, 10)
    proc = broker_process()
    lines = await history(proc.port, "lone", 100_000)
    stored = [line.split(" ", 5)[5] for line in lines]
    assert stored[: len(acked)] == acked, "every acknowledged publish, in order"
    assert [int(line.split(" ")[3]) for line in lines] == list(range(1, len(lines) + 1))


async def test_torn_tail_is_truncated_at_startup(
    broker_process: Callable[..., BrokerProcess], tmp_path: Path
) -> None:
    proc = broker_process()
    w = await Wire.open(proc.port)
    for i in range(3):
        assert await w.cmd(f"PUB chat m{i}") == "OK published"
    proc.kill9()
    segment = tmp_path / "data" / "topics" / "chat" / "00000000000000000001.log"
    with segment.open("ab") as f:
        f.write(b'{"id":"msg_1_00000000","offset":4,"ts":1.0,"msg":"half a rec')
    proc = broker_process()
    assert any(e.get("level") == "warning" for e in proc.events()), "the repair is logged"
    lines = await history(proc.port, "chat", 10)
    assert [line.split(" ", 5)[5] for line in lines] == ["m0", "m1", "m2"]
    w = await Wire.open(proc.port)
    assert await w.cmd("PUB chat m3") == "OK published"
    lines = await history(proc.port, "chat", 10)
    assert [int(line.split(" ")[3]) for line in lines] == [1, 2, 3, 4]
    records = [json.loads(x) for x in segment.read_bytes().splitlines()[1:]]
    assert [r["msg"] for r in records] == ["m0", "m1", "m2", "m3"]


async def test_fsync_always_acknowledges_after_group_commit(brokers: BrokerFactory) -> None:
    broker: Broker = await brokers.start(fsync="always")
    conns = [await Wire.open(broker.port) for _ in range(4)]
    for c in conns:
        await c.send("".join(f"PUB chat {i}\nPING\n" for i in range(200)))
    for c in conns:
        assert await c.lines(400) == ["OK published", "OK pong"] * 200
    assert broker.store.get("chat").last_offset == 800  # type: ignore[union-attr]


async def test_subprocess_leaks_no_fds_for_dropped_connections(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    proc = broker_process()
    w = await Wire.open(proc.port)
    assert await w.cmd("PING") == "OK pong"
    baseline = proc.fd_count()
    for _ in range(200):
        _reader, writer = await asyncio.open_connection("127.0.0.1", proc.port)
        writer.write(b"SUB chat\nPUB chat half-writ")
        await writer.drain()
        writer.transport.abort()
    assert await w.cmd("PING") == "OK pong"
    deadline = asyncio.get_running_loop().time() + 5
    while proc.fd_count() > baseline and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    assert proc.fd_count() <= baseline
