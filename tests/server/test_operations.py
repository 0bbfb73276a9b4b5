"""STATS, PAUSE/RESUME, PURGE of a dead-letter topic, and retention with groups behind it."""

from __future__ import annotations

import asyncio
import time

from linemq.broker.config import parse_age, parse_size, parse_topic_retention
from linemq.broker.server.app import Broker
from tests.conftest import BrokerFactory, eventually
from tests.server.groupwire import member, next_msg
from tests.wire import Wire, group_figures


def fields(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split() if "=" in part)


async def test_stats_reports_broker_topics_and_groups(broker: Broker) -> None:
    m = await member(broker.port, "jobs", "workers")
    w = await Wire.open(broker.port)
    for i in range(3):
        assert await w.cmd(f"PUB jobs j{i}") == "OK published"
    for _ in range(3):
        d = await next_msg(m)
        await m.send(f"ACK {d.id}\n")
    await m.lines(3)
    await w.send("STATS\n")
    lines = await w.until("OK stats end")
    broker_line, topic_line, group_line = lines[0], lines[1], lines[2]
    assert broker_line.startswith("STAT broker ")
    b = fields(broker_line)
    assert b["published"] == "3" and b["acked"] == "3" and b["connections"] == "2"
    assert float(b["uptime_seconds"]) >= 0 and int(b["bytes_on_disk"]) > 0
    assert topic_line.startswith("STAT topic jobs ")
    t = fields(topic_line)
    assert t["published"] == "3" and t["last_offset"] == "3" and t["groups"] == "1"
    assert group_line.startswith("STAT group jobs workers ")
    g = fields(group_line)
    assert g["delivered"] == "3" and g["acked"] == "3" and g["lag"] == "0"
    await w.send("STATS jobs\n")
    one = await w.until("OK stats end")
    assert len(one) == 4 and one[1].startswith("STAT topic jobs ")


async def test_pause_holds_deliveries_until_resume_even_across_restart(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start()
    m = await member(broker.port, "jobs", "workers")
    assert await m.cmd("PAUSE jobs workers") == "OK paused jobs workers"
    assert await m.cmd("PAUSE jobs nobody") == "ERR no group nobody on jobs"
    pub = await Wire.open(broker.port)
    assert await pub.cmd("PUB jobs held") == "OK published"
    assert await m.silent(0.2)
    broker = await brokers.restart(broker)
    m = await member(broker.port, "jobs", "workers")
    assert await m.silent(0.2), "paused survives a restart"
    assert group_figures(await m.cmd("GROUPS jobs")) == (
        "GROUP jobs workers members=1 inflight=0 waiting=0 lag=1 acked=0 dead=0 "
        "next_offset=1 paused=1"
    )
    assert await m.line() == "OK groups end"
    assert await m.cmd("RESUME jobs workers") == "OK resumed jobs workers"
    assert (await next_msg(m)).text == "held"


async def test_purge_empties_a_dlq_and_offsets_go_on(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=0.05, max_retries=0)
    m = await member(broker.port, "pay", "g")
    ops = await Wire.open(broker.port)
    assert await ops.cmd("SUB pay.dlq") == "OK subscribed pay.dlq"
    assert await ops.cmd("PUB pay a") == "OK published"
    assert await ops.cmd("PUB pay b") == "OK published"
    await next_msg(m)
    await next_msg(m)
    # Two dead letters arrive (interleaved with our replies).
    got = 0
    while got < 2:
        got += (await ops.line()).startswith("MSG pay.dlq ")
    assert await ops.cmd("PURGE pay") == "ERR only dead-letter topics (<topic>.dlq) can be purged"
    assert await ops.cmd("PURGE pay.dlq") == "OK purged 2"
    assert await ops.cmd("HISTORY pay.dlq 10") == "OK history end"
    await ops.send("DLQ pay\n")
    assert await ops.until("OK dlq end") == ["OK dlq end"]
    assert await ops.cmd("PUB pay c") == "OK published"
    await next_msg(m)
    while not (await ops.line()).startswith("MSG pay.dlq "):
        pass
    await ops.send("HISTORY pay.dlq 10\n")
    lines = await ops.until("OK history end")
    assert lines[-2].split(" ")[3] == "3", "offsets continue after a purge"
    broker = await brokers.restart(broker)
    w = await Wire.open(broker.port)
    await w.send("HISTORY pay.dlq 10\n")
    lines = await w.until("OK history end")
    assert [line.split(" ")[3] for line in lines[:-1]] == ["3"]


async def test_retention_by_bytes_deletes_old_segments_and_groups_skip_them(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(
        segment_bytes=4096, retention_bytes=16384, retention_check_ms=20, max_inflight=1000
    )
    m = await member(broker.port, "logs", "slow")
    assert await m.cmd("UNSUB logs slow") == "OK unsubscribed logs from group slow"
    pub = await Wire.open(broker.port)
    await pub.send("".join(f"PUB logs line-{i:05d}-{'x' * 100}\n" for i in range(1000)))
    assert await pub.lines(1000) == ["OK published"] * 1000
    log = broker.store.get("logs")
    assert log is not None
    await eventually(lambda: log.size_bytes <= 16384 + 4096 * 2)
    first = log.first_offset
    assert first > 1 and log.last_offset == 1000
    await pub.send("HISTORY logs 100000\n")
    lines = await pub.until("OK history end")
    assert int(lines[0].split(" ")[3]) == first
    back = await member(broker.port, "logs", "slow")
    d = await next_msg(back)
    assert d.offset >= first, "a group behind retention resumes at the oldest kept message"
    await back.send("GROUPS logs\n")
    while not (line := await back.line()).startswith("GROUP "):
        pass
    g = fields(line)
    assert int(g["lag"]) <= 1000 - first + 1


async def test_retention_by_age(brokers: BrokerFactory) -> None:
    broker = await brokers.start(segment_bytes=4096, retention_age=0.3, retention_check_ms=20)
    pub = await Wire.open(broker.port)
    await pub.send("".join(f"PUB old {i}-{'x' * 200}\n" for i in range(100)))
    await pub.lines(100)
    log = broker.store.get("old")
    assert log is not None
    segments = log.segment_count
    await asyncio.sleep(0.4)
    assert await pub.cmd("PUB old fresh") == "OK published"
    await eventually(lambda: log.segment_count < segments)
    assert log.last_offset == 101


def test_size_age_and_topic_rule_parsing() -> None:
    assert parse_size("1048576") == 1048576
    assert parse_size("64MiB") == 64 * 1024 * 1024
    assert parse_size("1GB") == 10**9
    assert parse_age("90") == 90 and parse_age("15m") == 900 and parse_age("7d") == 604800
    rule = parse_topic_retention("orders.*=bytes:1GiB,age:12h")
    assert (rule.pattern, rule.max_bytes, rule.max_age) == ("orders.*", 1 << 30, 43200)


async def test_topic_retention_override_wins(brokers: BrokerFactory) -> None:
    broker = await brokers.start(
        segment_bytes=4096,
        retention_bytes=0,
        topic_retention=(parse_topic_retention("tmp.*=bytes:8KiB"),),
        retention_check_ms=20,
    )
    pub = await Wire.open(broker.port)
    for topic in ("tmp.a", "keep"):
        await pub.send("".join(f"PUB {topic} {i}-{'x' * 200}\n" for i in range(200)))
        await pub.lines(200)
    tmp, keep = broker.store.get("tmp.a"), broker.store.get("keep")
    assert tmp is not None and keep is not None
    await eventually(lambda: tmp.first_offset > 1)
    started = time.monotonic()
    while time.monotonic() - started < 0.1:
        await asyncio.sleep(0.02)
    assert keep.first_offset == 1


async def test_pausing_twice_still_answers(broker: Broker) -> None:
    m = await member(broker.port, "jobs", "workers")
    assert await m.cmd("PAUSE jobs workers") == "OK paused jobs workers"
    assert await m.cmd("PAUSE jobs workers") == "OK paused jobs workers"
    assert await m.cmd("RESUME jobs workers") == "OK resumed jobs workers"
