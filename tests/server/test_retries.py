"""Ack timeouts, backoff, NACK, TOUCH, heartbeats, dead letters and replay, on fast timers."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable

from linemq.broker.storage.tail_cache import TAIL_RECORDS
from tests.conftest import BrokerFactory, BrokerProcess
from tests.server.groupwire import Delivery, member, next_msg, parse_msg
from tests.wire import Wire, group_figures


async def publish(port: int, topic: str, *texts: str) -> None:
    w = await Wire.open(port)
    for text in texts:
        assert await w.cmd(f"PUB {topic} {text}") == "OK published"
    await w.close()


async def test_unacked_message_is_redelivered_with_growing_backoff(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(
        ack_timeout=0.1, retry_backoff_base=0.1, retry_backoff_max=10, max_retries=3
    )
    m = await member(broker.port, "q", "g")
    await publish(broker.port, "q", "slow")
    times = []
    ids = set()
    for _ in range(4):
        d = await next_msg(m)
        times.append(time.monotonic())
        ids.add((d.id, d.offset))
    assert len(ids) == 1, "the same message each time"
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # timeout 0.1 + backoff 0.1, 0.2, 0.4
    for gap, expected in zip(gaps, [0.2, 0.3, 0.5], strict=True):
        assert expected - 0.02 <= gap < expected + 0.25, gaps
    assert gaps[0] < gaps[1] < gaps[2]


async def test_backoff_is_capped(brokers: BrokerFactory) -> None:
    broker = await brokers.start(
        ack_timeout=0.05, retry_backoff_base=0.05, retry_backoff_max=0.1, max_retries=5
    )
    m = await member(broker.port, "q", "g")
    await publish(broker.port, "q", "x")
    times = []
    for _ in range(5):
        await next_msg(m)
        times.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) < 0.15 + 0.1, gaps


async def test_max_retries_dead_letters_with_metadata(brokers: BrokerFactory) -> None:
    broker = await brokers.start(
        ack_timeout=0.05, retry_backoff_base=0.01, retry_backoff_max=0.02, max_retries=2
    )
    watcher = await Wire.open(broker.port)
    assert await watcher.cmd("SUB q.dlq") == "OK subscribed q.dlq"
    m = await member(broker.port, "q", "g")
    await publish(broker.port, "q", "poison pill")
    deliveries = [await next_msg(m) for _ in range(3)]  # first + 2 retries
    letter_line = parse_msg(await watcher.line())
    assert letter_line.topic == "q.dlq"
    letter = json.loads(letter_line.text)
    assert letter["topic"] == "q" and letter["group"] == "g"
    assert letter["id"] == deliveries[0].id and letter["offset"] == 1
    assert letter["msg"] == "poison pill" and letter["ts"] == deliveries[0].ts
    assert letter["attempts"] == 3 and letter["reason"] == "ack_timeout"
    assert letter["first_delivery_ts"] <= letter["last_delivery_ts"] <= letter["dead_ts"]
    assert await m.silent(0.15), "a dead letter is not delivered again"
    assert group_figures(await m.cmd("GROUPS q")) == (
        "GROUP q g members=1 inflight=0 waiting=0 lag=0 acked=0 dead=1 next_offset=2 paused=0"
    )
    assert await m.line() == "OK groups end"
    # The DLQ is a normal topic: HISTORY reads it.
    await m.send("HISTORY q.dlq 5\n")
    lines = await m.until("OK history end")
    assert len(lines) == 2 and lines[0].startswith("HISTORY q.dlq msg_")


async def test_nack_redelivers_now_and_counts_as_a_failure(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=10, max_retries=1)
    m = await member(broker.port, "q", "g")
    await publish(broker.port, "q", "task")
    d = await next_msg(m)
    assert await m.cmd(f"NACK {d.id} 0") == "OK nack_received"
    again = await next_msg(m, timeout=1)
    assert again.offset == d.offset
    dlq = await Wire.open(broker.port)
    assert await m.cmd(f"NACK {again.id} 0") == "OK nack_received"
    await dlq.send("DLQ q\n")
    lines = await dlq.until("OK dlq end")
    assert len(lines) == 2
    letter = json.loads(lines[0].split(" ", 3)[3])
    assert letter["reason"] == "nacked" and letter["attempts"] == 2


async def test_retry_and_dead_letter_of_a_message_gone_from_memory(
    brokers: BrokerFactory,
) -> None:
    # In-flight messages keep no copy of their record; by the time this one fails,
    # thousands of newer ones pushed it out of the in-memory tail, so the broker
    # reads it back from disk to redeliver it and then to dead-letter it.
    broker = await brokers.start(ack_timeout=10, max_retries=1, max_inflight=1)
    m = await member(broker.port, "q", "g")
    await publish(broker.port, "q", "old task")
    d = await next_msg(m)
    pub = await Wire.open(broker.port)
    await pub.send("".join(f"PUB q newer {i}\n" for i in range(TAIL_RECORDS + 100)))
    await pub.lines(TAIL_RECORDS + 100)
    assert await m.cmd(f"NACK {d.id}") == "OK nack_received"

    async def until_old_task() -> Delivery:
        # While it is read back, newer messages may go first (it holds no key).
        for _ in range(500):
            got = await next_msg(m, timeout=2)
            if got.id == d.id:
                return got
            assert await m.cmd(f"ACK {got.id}") == "OK ack_received"
        raise AssertionError("the old task was not redelivered")

    again = await until_old_task()
    assert (again.offset, again.text, again.ts) == (d.offset, "old task", d.ts)
    assert await pub.cmd("SUB q.dlq") == "OK subscribed q.dlq"
    assert await m.cmd(f"NACK {again.id}") == "OK nack_received"
    letter = json.loads(parse_msg(await pub.line()).text)
    assert (letter["id"], letter["msg"], letter["attempts"]) == (d.id, "old task", 2)


async def test_nack_with_delay_waits(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=10)
    m = await member(broker.port, "q", "g")
    await publish(broker.port, "q", "later")
    d = await next_msg(m)
    start = time.monotonic()
    assert await m.cmd(f"NACK {d.id} 0.3") == "OK nack_received"
    again = await next_msg(m)
    assert again.offset == d.offset
    assert time.monotonic() - start >= 0.28


async def test_touch_keeps_a_slow_message_from_redelivery(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=0.2)
    worker = await member(broker.port, "q", "g")
    await publish(broker.port, "q", "long job")
    d = await next_msg(worker)
    other = await member(broker.port, "q", "g")
    # Three ack timeouts' worth of work, touching as it goes.
    for _ in range(6):
        await asyncio.sleep(0.1)
        assert await worker.cmd(f"TOUCH {d.id}") == "OK touched"
    assert await worker.cmd(f"ACK {d.id}") == "OK ack_received"
    assert await other.silent(0.3)
    assert await worker.silent(0.05)


async def test_without_touch_the_same_work_is_redelivered(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=0.2, retry_backoff_base=0.01)
    worker = await member(broker.port, "q", "g")
    await publish(broker.port, "q", "long job")
    d = await next_msg(worker)
    again = await next_msg(worker)
    assert (again.id, again.offset, again.text) == (d.id, d.offset, d.text)
    assert await worker.cmd(f"ACK {d.id}") == "OK ack_received"


async def test_late_ack_after_timeout_says_why(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=0.1, max_retries=0)
    worker = await member(broker.port, "q", "g")
    watcher = await Wire.open(broker.port)
    assert await watcher.cmd("SUB q.dlq") == "OK subscribed q.dlq"
    await publish(broker.port, "q", "too slow")
    d = await next_msg(worker)
    await next_msg(watcher)  # dead-lettered after the timeout
    assert await worker.cmd(f"ACK {d.id}") == (
        f"ERR message {d.id} not found in pending messages (ack timeout expired)"
    )


async def test_dead_consumer_by_heartbeat_hands_messages_over(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=30, heartbeat_timeout=0.3)
    silent = await member(broker.port, "q", "g")
    await publish(broker.port, "q", "a", "b")
    held = [await next_msg(silent), await next_msg(silent)]
    alive = await member(broker.port, "q", "g")

    async def beat() -> None:
        while True:
            await alive.send("HEARTBEAT\n")
            await asyncio.sleep(0.05)

    beater = asyncio.create_task(beat())
    try:
        got = []
        while len(got) < 2:
            line = await alive.line(timeout=3)
            if line.startswith("MSG "):
                got.append(parse_msg(line))
            else:
                assert line == "OK heartbeat_received"
        assert sorted(d.offset for d in got) == [d.offset for d in held]
        assert await silent.closed(), "the dead member's connection is closed"
    finally:
        beater.cancel()


async def test_disconnect_hands_in_flight_messages_over_at_once(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=30)
    a = await member(broker.port, "q", "g")
    await publish(broker.port, "q", "x")
    d = await next_msg(a)
    b = await member(broker.port, "q", "g")
    a.writer.transport.abort()
    again = await next_msg(b, timeout=1)
    assert (again.id, again.offset) == (d.id, d.offset)


async def test_dlq_list_and_replay(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=0.05, retry_backoff_base=0.01, max_retries=0)
    m = await member(broker.port, "q", "g")
    await publish(broker.port, "q", "first", "second")
    a, b = await next_msg(m), await next_msg(m)
    ops = await Wire.open(broker.port)
    for _ in range(100):
        await ops.send("DLQ q\n")
        lines = await ops.until("OK dlq end")
        if len(lines) == 3:
            break
        await asyncio.sleep(0.02)
    letters = [json.loads(line.split(" ", 3)[3]) for line in lines[:-1]]
    assert {x["msg"] for x in letters} == {"first", "second"}
    assert all(x["replayed"] is None for x in letters)
    assert lines[0].startswith("DLQ q 1 ")
    assert await ops.cmd(f"REPLAY q {a.id}") == "OK replayed 1"
    again = await next_msg(m)
    assert again.text == "first" and again.offset == 3 and again.id != a.id
    assert await m.cmd(f"ACK {again.id}") == "OK ack_received"
    assert await ops.cmd("REPLAY q ALL") == "OK replayed 1"
    last = await next_msg(m)
    assert last.text == "second" and last.offset == 4
    assert await ops.cmd("REPLAY q ALL") == "OK replayed 0"
    assert (
        await ops.cmd("REPLAY q msg_1_nothere")
        == "ERR dead letter msg_1_nothere not found in q.dlq"
    )
    await ops.send("DLQ q 10\n")
    lines = await ops.until("OK dlq end")
    replayed = [json.loads(line.split(" ", 3)[3])["replayed"] for line in lines[:-1]]
    assert [r["offset"] for r in replayed] == [3, 4]
    del b


async def test_kill9_keeps_acks_unacked_and_attempt_counts(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    args = ("--ack-timeout", "30", "--max-retries", "2", "--max-inflight", "10")
    proc = broker_process(*args)
    m = await member(proc.port, "q", "g")
    await publish(proc.port, "q", *[f"m{i}" for i in range(6)])
    got = [await next_msg(m) for _ in range(6)]
    for d in got[:3]:
        assert await m.cmd(f"ACK {d.id}") == "OK ack_received"
    proc.kill9()
    # Restart: m3..m5 were in flight (attempt 1 each); m0..m2 acked.
    proc = broker_process(*args)
    m = await member(proc.port, "q", "g")
    again = [await next_msg(m) for _ in range(3)]
    assert [d.text for d in again] == ["m3", "m4", "m5"]
    assert await m.silent(0.2), "acked messages are never redelivered"
    proc.kill9()
    proc = broker_process(*args)  # attempt 2 was in flight at the crash
    m = await member(proc.port, "q", "g")
    third = [await next_msg(m) for _ in range(3)]
    assert [d.text for d in third] == ["m3", "m4", "m5"]
    proc.kill9()
    # Three deliveries used up (max-retries 2): the next start dead-letters them.
    proc = broker_process(*args)
    m = await member(proc.port, "q", "g")
    assert await m.silent(0.3)
    ops = await Wire.open(proc.port)
    await ops.send("DLQ q\n")
    lines = await ops.until("OK dlq end")
    letters = [json.loads(line.split(" ", 3)[3]) for line in lines[:-1]]
    assert [x["msg"] for x in letters] == ["m3", "m4", "m5"]
    assert {x["attempts"] for x in letters} == {3}
    assert {x["reason"] for x in letters} == {"broker_restart"}
