"""What one client can make the broker hold: unauthenticated connections, streamed replies."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import orjson
import pytest

from linemq.broker.auth import hash_token
from linemq.broker.protocol.replies import DLQ_END, HISTORY_END, dlq_line
from linemq.broker.server.app import Broker
from linemq.broker.server.deliveries import deliveries
from tests.conftest import BrokerFactory, eventually
from tests.wire import Wire

TOKEN = "bounds-secret-token"


def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.toml"
    path.write_text(
        f"""
[[users]]
name = "app"
token_sha256 = "{hash_token(TOKEN)}"
publish = [">"]
subscribe = [">"]
"""
    )
    return path


async def test_unauthenticated_connections_beyond_the_limit_are_refused(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    broker = await brokers.start(auth_file=users_file(tmp_path), max_unauthenticated=3)
    waiting = [await Wire.open(broker.port) for _ in range(3)]
    refused = await Wire.open(broker.port, banner=False)
    assert await refused.line() == "ERR too many unauthenticated connections"
    assert await refused.closed()
    assert await waiting[0].cmd(f"AUTH {TOKEN}") == "OK authenticated"
    admitted = await Wire.open(broker.port)  # an authenticated one no longer counts
    assert await admitted.cmd("PING") == "OK pong"
    await waiting[1].close()
    await eventually(lambda: len(broker.unauthenticated) == 2)
    again = await Wire.open(broker.port)
    assert await again.cmd(f"AUTH {TOKEN}") == "OK authenticated"
    assert await waiting[0].cmd("PUB t still-here") == "OK published"


async def test_before_auth_lines_are_short(brokers: BrokerFactory, tmp_path: Path) -> None:
    broker = await brokers.start(auth_file=users_file(tmp_path))
    w = await Wire.open(broker.port)
    await w.send(b"PUB t " + b"x" * 5000 + b"\n")
    assert await w.line() == "ERR line too long"
    await w.send(b"AUTH " + b"y" * 20_000)  # never finished: dropped, not buffered
    assert await w.line() == "ERR line too long"
    await w.send(b"\nPING\n")
    assert await w.line() == "OK pong"
    big = "z" * 100_000
    await w.send(f"AUTH {TOKEN}\nPUB t {big}\n")
    assert await w.lines(2) == ["OK authenticated", "OK published"]
    await w.send("HISTORY t 1\n")
    history = await w.until("OK history end")
    assert len(history) == 2 and history[0].endswith(big)


async def test_without_auth_file_no_unauthenticated_limit_applies(brokers: BrokerFactory) -> None:
    broker: Broker = await brokers.start(max_unauthenticated=1)
    conns = [await Wire.open(broker.port) for _ in range(5)]
    big = "z" * 100_000
    assert await conns[-1].cmd(f"PUB t {big}") == "OK published"
    assert not broker.unauthenticated


async def fill(port: int, topic: str, count: int, size: int) -> None:
    w = await Wire.open(port)
    body = "m" * size
    for start in range(0, count, 1000):
        n = min(1000, count - start)
        await w.send("".join(f"PUB {topic} {start + i} {body}\n" for i in range(n)))
        assert await w.lines(n) == ["OK published"] * n
    await w.close()


async def read_until(reader: asyncio.StreamReader, end: bytes) -> bytes:
    data = bytearray()
    while not data.endswith(end):
        chunk = await asyncio.wait_for(reader.read(1 << 16), 5)
        assert chunk, f"closed after {len(data)} bytes: {bytes(data[-300:])!r}"
        data += chunk
    return bytes(data)


@pytest.mark.parametrize("version", [1, 2])
async def test_a_streamed_history_is_byte_for_byte_the_whole_reply(
    broker: Broker, version: int
) -> None:
    await fill(broker.port, "t", 2500, 300)  # several batches of STREAM_BYTES
    w = await Wire.open(broker.port)
    await w.send(b"PUT t 5 key=k priority=high h.x=1\nhello\n")
    assert (await w.line()).startswith("OK published 2501 ")
    if version == 2:
        assert (await w.cmd("HELLO 2")).startswith("OK")
    log_ = broker.store.get("t")
    assert log_ is not None
    want = deliveries(version, "t", log_.read_last(2400), 0, "HISTORY") + HISTORY_END
    await w.send("HISTORY t 2400\nPING\n")
    got = await read_until(w.reader, HISTORY_END + b"OK pong\n")  # what follows keeps its place
    assert got == want + b"OK pong\n"


async def test_a_streamed_history_keeps_its_place_among_replies(broker: Broker) -> None:
    await fill(broker.port, "t", 3000, 100)
    w = await Wire.open(broker.port)
    await w.send("PUB t last\nHISTORY t 3001\nPUB t after\nHISTORY t 1\n")
    assert await w.line() == "OK published"
    lines = await w.until("OK history end")
    assert len(lines) == 3002 and lines[0].startswith("HISTORY t ") and " 1 " in lines[0]
    assert lines[-2].endswith(" last")
    assert await w.line() == "OK published"
    assert (await w.line()).endswith(" after")  # written after the first HISTORY: not in it
    assert await w.line() == "OK history end"


async def test_a_streamed_dead_letter_list_is_byte_for_byte_the_whole_reply(
    broker: Broker,
) -> None:
    for i in range(1500):
        letter = {"topic": "q", "id": f"id{i}", "offset": i + 1, "msg": "x" * 200, "attempts": 3}
        broker.engine.publish_internal("q.dlq", orjson.dumps(letter).decode())
    w = await Wire.open(broker.port)
    assert await w.cmd("PING") == "OK pong"  # the letters are written
    letters = await broker.dead_letters.list("q", 1400)
    want = b"".join(dlq_line("q", o, text) for o, text in letters) + DLQ_END
    await w.send("DLQ q 1400\n")
    assert await read_until(w.reader, DLQ_END) == want
    assert await w.cmd("DLQ nothing 5") == "OK dlq end"


async def not_reading(port: int, line: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    writer.write(line)
    await writer.drain()
    return reader, writer


async def test_a_client_that_never_reads_its_history_is_dropped(brokers: BrokerFactory) -> None:
    broker = await brokers.start(write_timeout=0.3)
    await fill(broker.port, "t", 12_000, 1000)  # 12 MB: more than the sockets buffer
    _r, stalled = await not_reading(broker.port, b"HISTORY t 100000\n")
    reader = await Wire.open(broker.port)
    await reader.send("HISTORY t 100000\n")
    assert len(await reader.until("OK history end", timeout=10)) == 12_001
    await eventually(lambda: len(broker.connections) == 1)  # the stalled one was cut
    assert await reader.cmd("PING") == "OK pong"
    stalled.close()


async def test_a_client_that_never_reads_its_catch_up_is_dropped(brokers: BrokerFactory) -> None:
    broker = await brokers.start(write_timeout=0.3)
    await fill(broker.port, "t", 12_000, 1000)
    _r, stalled = await not_reading(broker.port, b"SUB t from=earliest\n")
    await eventually(lambda: not broker.connections)
    stalled.close()


async def test_pushes_queued_behind_a_stalled_history_count_as_pending(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(write_timeout=30, max_pending_bytes=256 * 1024)
    await fill(broker.port, "t", 12_000, 1000)
    _r, stalled = await not_reading(broker.port, b"SUB live\nHISTORY t 100000\n")
    pub = await Wire.open(broker.port)
    for _ in range(5):
        await pub.send("".join(f"PUB live {'p' * 1000}\n" for _ in range(100)))
        assert await pub.lines(100) == ["OK published"] * 100
    await eventually(lambda: len(broker.connections) == 1)  # long before --write-timeout
    stalled.close()


async def test_a_streamed_history_reaches_a_client_that_closed_its_side(broker: Broker) -> None:
    """``printf 'HISTORY t 3000\\n' | nc``: the reply is sent whole, then the connection closes."""
    await fill(broker.port, "t", 3000, 300)
    reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
    writer.write(b"HISTORY t 3000\nQUIT\n")
    writer.write_eof()
    data = await asyncio.wait_for(reader.read(), 10)
    lines = data.decode().splitlines()
    assert lines[0] == "OK connected"
    assert len(lines) == 3003 and lines[-2:] == ["OK history end", "OK bye"]
    writer.close()
