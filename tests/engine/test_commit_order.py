"""The engine on a store that says later what a commit stored (a database does): only
stored records go out, each topic's in offset order, whatever order the answers come in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from linemq.broker.config import Config
from linemq.broker.engine.engine import Engine
from linemq.broker.server.deliveries import ENCODER
from linemq.broker.storage.records import Meta, Record, StorageError
from linemq.broker.storage.ticket import Ticket
from tests.engine.test_engine import Publisher, Replies, a_tick, batch
from tests.later_store import FAILED, LaterStore

Sent = list[tuple[str, list[int]]]


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    config = Config(port=0, data_dir=tmp_path / "data", fsync="never")
    made = Engine(config, Replies(), ENCODER, store=LaterStore())
    await made.open(asyncio.get_running_loop())
    yield made
    made.stop_retention()
    store(made).settle_all()
    await made.write_all()
    made.close()


def store(engine: Engine) -> LaterStore:
    assert isinstance(engine.store, LaterStore)
    return engine.store


def dispatched(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Sent:
    """What the engine hands subscribers and groups, in order: (topic, offsets)."""
    sent: Sent = []
    real = engine.router.on_written

    def on_written(topic: str, records: list[Record]) -> int:
        sent.append((topic, [r.offset for r in records]))
        return real(topic, records)

    monkeypatch.setattr(engine.router, "on_written", on_written)
    return sent


async def publish(engine: Engine, *pubs: tuple[str, str]) -> Ticket:
    ticket = engine.publish_batch(Publisher(), batch(*pubs))
    assert isinstance(ticket, Ticket)
    await a_tick()
    return ticket


async def test_nothing_goes_out_before_the_store_says_it_stored_it(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = dispatched(engine, monkeypatch)
    ticket = await publish(engine, ("a", "a1"), ("a", "a2"))
    (commit,) = store(engine).sent
    assert sent == [] and not ticket.done()
    assert engine.store.topic("a").written_offset == 0
    store(engine).settle(commit)
    assert sent == [("a", [1, 2])] and ticket.done() and not ticket.errors
    assert engine.published == {"a": 2}


async def test_a_later_commit_that_settles_first_waits_for_the_earlier_one(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = dispatched(engine, monkeypatch)
    await publish(engine, ("a", "a1"), ("b", "b1"))
    await publish(engine, ("a", "a2"), ("c", "c1"))
    await publish(engine, ("a", "a3"))
    first, second, third = store(engine).sent
    store(engine).settle(third)
    store(engine).settle(second)
    assert sent == [("c", [1])], "c has nothing earlier in flight; a waits for the first commit"
    store(engine).settle(first)
    assert sent == [("c", [1]), ("a", [1]), ("a", [2]), ("a", [3]), ("b", [1])]
    assert [r.msg for r in await engine.store.read("a", 1, 10)] == ["a1", "a2", "a3"]


async def test_a_failed_topic_is_never_dispatched_and_the_others_go_on(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = dispatched(engine, monkeypatch)
    ticket = await publish(engine, ("ok", "o1"), ("bad", "b1"))
    store(engine).settle(store(engine).sent[0], fail=frozenset({"bad"}))
    assert sent == [("ok", [1])]
    assert set(ticket.errors) == {"bad"} and str(ticket.errors["bad"]) == FAILED
    assert engine.published == {"ok": 1}
    again = await publish(engine, ("bad", "b2"), ("ok", "o2"))
    store(engine).settle(store(engine).sent[0])
    assert sent == [("ok", [1]), ("bad", [1]), ("ok", [2])], "bad's offset 1 is given again"
    assert not again.errors
    assert [r.msg for r in await engine.store.read("bad", 1, 10)] == ["b2"]


async def test_a_publisher_id_whose_commit_failed_is_not_a_duplicate(engine: Engine) -> None:
    now = 1000.0
    first = engine.append("t", "x", Meta(pid="p1"), now)
    await a_tick()
    seen = engine.duplicate("t", "p1", now)
    assert seen is first and not first.ticket.done(), "a retry waits for the original"
    store(engine).settle(store(engine).sent[0], fail=frozenset({"t"}))
    with pytest.raises(StorageError):
        await first
    assert engine.duplicate("t", "p1", now) is None, "never stored: a retry is a new publish"


async def test_durability_tickets_and_shutdown_wait_for_the_store(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = dispatched(engine, monkeypatch)
    await publish(engine, ("a", "a1"))
    durable = engine.committed()
    await a_tick()
    await asyncio.sleep(0.05)
    assert not durable.done(), "the commit made by then has not settled"
    store(engine).settle_all()
    await asyncio.wait_for(durable, 1)
    await publish(engine, ("a", "a2"))
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, store(engine).settle_all)
    await asyncio.wait_for(engine.write_all(), 1)
    assert sent == [("a", [1]), ("a", [2])]
