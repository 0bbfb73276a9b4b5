"""A whole broker on a store that says later what it stored, in any order, as a database
does: subscribers and groups get exactly the stored records, in offset order, and a
topic the store failed is answered ERR and delivered to no one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from linemq.broker.config import Config
from linemq.broker.server.app import Broker
from tests.conftest import FAST
from tests.later_store import LaterStore
from tests.server.groupwire import member, next_msg
from tests.wire import Wire


@pytest.fixture
async def later() -> AsyncIterator[LaterStore]:
    store = LaterStore()
    yield store
    store.settle_all()  # what the test left in flight, so the broker can stop


@pytest.fixture
async def broker(tmp_path: Path, later: LaterStore) -> AsyncIterator[Broker]:
    config = Config(port=0, data_dir=tmp_path / "data", **FAST)
    started = Broker(config, store=later)
    await started.start()
    yield started
    later.settle_all()
    await started.stop()


async def in_flight(store: LaterStore, n: int) -> None:
    """Wait until the broker has made ``n`` commits the store has not answered."""
    for _ in range(500):
        if len(store.sent) >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(store.sent)} commits in flight, wanted {n}")


async def test_answers_in_reverse_order_reach_subscribers_and_groups_in_offset_order(
    broker: Broker, later: LaterStore
) -> None:
    port = broker.port
    fan = await Wire.open(port)
    assert await fan.cmd("SUB jobs") == "OK subscribed jobs"
    worker = await member(port, "jobs", "workers")
    pub = await Wire.open(port)
    for i in range(3):  # one commit each: every PUB waits for its reply
        await pub.send(f"PUB jobs job-{i}\n")
        await in_flight(later, i + 1)
    assert await fan.silent(0.1) and await worker.silent(0.05), "nothing stored yet"
    for commit in reversed(list(later.sent)):
        later.settle(commit)
    assert await pub.lines(3) == ["OK published"] * 3
    assert [(await next_msg(fan)).offset for _ in range(3)] == [1, 2, 3]
    got = [await next_msg(worker) for _ in range(3)]
    assert [(d.offset, d.text) for d in got] == [(1, "job-0"), (2, "job-1"), (3, "job-2")]
    await worker.send("".join(f"ACK {d.id}\n" for d in got))
    assert await worker.lines(3) == ["OK ack_received"] * 3
    assert await fan.silent(0.1), "each record once"


async def test_a_failed_topic_gets_err_and_is_delivered_to_no_one(
    broker: Broker, later: LaterStore
) -> None:
    port = broker.port
    watchers = {}
    for topic in ("bad", "good"):
        watchers[topic] = await Wire.open(port)
        assert await watchers[topic].cmd(f"SUB {topic}") == f"OK subscribed {topic}"
    worker = await member(port, "bad", "workers")
    pub = await Wire.open(port)
    await pub.send("PUB bad lost\nPUB good kept\n")
    await in_flight(later, 1)
    later.settle(later.sent[0], fail=frozenset({"bad"}))
    replies = await pub.lines(2)
    assert replies[0].startswith("ERR storage unavailable") and replies[1] == "OK published"
    assert (await next_msg(watchers["good"])).text == "kept"
    assert await watchers["bad"].silent(0.2) and await worker.silent(0.05)
    await pub.send("PUB good later\n")  # later commits still go out
    await in_flight(later, 1)
    later.settle(later.sent[0])
    assert await pub.line() == "OK published"
    assert (await next_msg(watchers["good"])).text == "later"
    await pub.send("HISTORY bad 5\n")
    assert await pub.until("OK history end") == ["OK history end"]


async def test_dead_letters_and_replays_go_out_once_stored(
    broker: Broker, later: LaterStore
) -> None:
    port = broker.port
    worker = await member(port, "jobs", "workers")
    letters = await Wire.open(port)
    assert await letters.cmd("SUB jobs.dlq") == "OK subscribed jobs.dlq"
    pub = await Wire.open(port)
    await pub.send("PUB jobs hopeless\n")
    await in_flight(later, 1)
    later.settle_all()
    assert await pub.line() == "OK published"
    first = await next_msg(worker)
    await worker.send(f"TERM {first.id}\n")
    await in_flight(later, 1)  # the dead letter, appended while the group handled TERM
    assert await letters.silent(0.1), "not stored yet"
    assert await worker.silent(0.05), "the reply waits for the dead letter to be stored"
    later.settle_all()
    assert await worker.line() == "OK terminated"
    assert (await next_msg(letters)).offset == 1
    await pub.send("REPLAY jobs ALL\n")
    await in_flight(later, 1)
    assert await worker.silent(0.1) and await pub.silent(0.05), "the reply waits for the store"
    later.settle_all()
    assert await pub.line() == "OK replayed 1"
    again = await next_msg(worker)
    assert (again.offset, again.text) == (2, "hopeless")
