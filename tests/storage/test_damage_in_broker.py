"""Damage on disk as a user of a real broker sees it: served around, reported, never fatal."""

from __future__ import annotations

import pathlib

import orjson

from linemq.broker.storage.checksum import seal
from tests.conftest import BrokerFactory
from tests.ops.http import Http
from tests.server.groupwire import member, next_msg, parse_msg
from tests.wire import Wire


def _segments(data: pathlib.Path, topic: str) -> list[pathlib.Path]:
    return sorted((data / "topics" / topic).glob("*.log"))


def _rewrite_line(path: pathlib.Path, n: int, change: bytes) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    lines[n] = change
    path.write_bytes(b"".join(lines))


async def _publish(port: int, topic: str, n: int) -> None:
    pub = await Wire.open(port)
    await pub.send("".join(f"PUB {topic} m{i}\n" for i in range(1, n + 1)))
    assert await pub.lines(n) == ["OK published"] * n


async def _consume(m: Wire, n: int) -> list[tuple[int, str]]:
    """``n`` deliveries, each acked, and the acks' replies."""
    got: list[tuple[int, str]] = []
    acked = 0
    while len(got) < n or acked < n:
        line = await m.line()
        if line == "OK ack_received":
            acked += 1
            continue
        d = parse_msg(line)
        got.append((d.offset, d.text))
        await m.send(f"ACK {d.id}\n")
    return got


async def _history(port: int, topic: str, n: int) -> list[tuple[int, str]]:
    w = await Wire.open(port)
    await w.send(f"HISTORY {topic} {n}\n")
    lines = await w.until("OK history end")
    return [(int(p[3]), p[5]) for p in (line.split(" ", 5) for line in lines[:-1])]


async def test_damaged_record_and_sealed_header_do_not_stop_history_or_groups(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(segment_bytes=1000)
    await _publish(broker.port, "t", 60)
    data = broker.config.data_dir
    await brokers.stop(broker)
    segs = _segments(data, "t")
    assert len(segs) >= 3
    _rewrite_line(segs[0], 0, b'{"linemq_segment":2,"base_offset":1,"c":1}\n')  # header
    _rewrite_line(segs[1], 2, segs[1].read_bytes().splitlines(keepends=True)[2][:-9] + b"XX\n")
    damaged = int(segs[1].name[:20]) + 1
    broker = await brokers.start(segment_bytes=1000)
    want = [(o, f"m{o}") for o in range(1, 61) if o != damaged]
    assert await _history(broker.port, "t", 100) == want
    m = await Wire.open(broker.port)
    assert await m.cmd("SUB t g from=earliest") == "OK subscribed t in group g"
    got = await _consume(m, 59)
    assert sorted(got) == want
    stats = await Wire.open(broker.port)
    await stats.send("STATS\n")
    broker_line = (await stats.until("OK stats end"))[0]
    assert "damage_record=1" in broker_line and "damage_segment=1" in broker_line


async def test_a_topic_that_cannot_be_opened_leaves_the_rest_served(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(http_port=0)
    await _publish(broker.port, "good", 3)
    await _publish(broker.port, "bad", 3)
    data = broker.config.data_dir
    await brokers.stop(broker)
    bad = _segments(data, "bad")[0]
    _rewrite_line(bad, 0, seal(orjson.dumps({"linemq_segment": 7, "base_offset": 1})))
    before = bad.read_bytes()
    broker = await brokers.start(http_port=0)
    assert await _history(broker.port, "good", 10) == [(1, "m1"), (2, "m2"), (3, "m3")]
    pub = await Wire.open(broker.port)
    reply = await pub.cmd("PUB bad more")
    assert reply.startswith("ERR storage unavailable: topic bad could not be opened")
    assert await pub.cmd("PUB good more") == "OK published"
    reply = await pub.cmd("SUB bad g")
    assert reply.startswith("ERR storage unavailable: topic bad could not be opened")
    assert await pub.cmd("PING") == "OK pong"
    await pub.send("STATS\n")
    assert "damage_unopenable=1" in (await pub.until("OK stats end"))[0]
    http = Http(broker)
    status, body = await http.get("/readyz")
    assert status == 200 and body.startswith("ready\n") and "unopenable topic bad:" in body
    _, metrics = await http.get("/metrics")
    assert 'linemq_storage_damage_total{kind="unopenable"} 1.0' in metrics
    await brokers.stop(broker)
    assert bad.read_bytes() == before  # left for an operator, never rewritten


async def test_offsets_never_repeat_after_the_log_loses_its_tail(brokers: BrokerFactory) -> None:
    broker = await brokers.start()
    m = await member(broker.port, "t", "g")
    await _publish(broker.port, "t", 20)
    assert [o for o, _ in await _consume(m, 20)] == list(range(1, 21))
    data = broker.config.data_dir
    await brokers.stop(broker)
    seg = _segments(data, "t")[-1]
    raw = seg.read_bytes()
    seg.write_bytes(raw[: len(raw) - 200])  # what a power loss under --fsync interval leaves
    broker = await brokers.start()
    lost = [d for d in broker.damage.recent() if d.kind == "lost_offsets"]
    assert len(lost) == 1 and lost[0].last == 20 and lost[0].first is not None
    assert "group g" in lost[0].reason
    m = await member(broker.port, "t", "g")
    pub = await Wire.open(broker.port)
    await pub.send(b"PUT t 3\nnew\n")
    reply = (await pub.line()).split()
    assert reply[:2] == ["OK", "published"] and int(reply[2]) == 21
    d = await next_msg(m)
    assert (d.offset, d.text) == (21, "new")
    broker = await brokers.restart(broker)  # the new base is durable: still no reuse
    pub = await Wire.open(broker.port)
    await pub.send(b"PUT t 4\nnext\n")
    assert (await pub.line()).split()[2] == "22"
