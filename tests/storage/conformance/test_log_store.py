"""What every ``LogStore`` promises, whatever keeps the records (see log_store.py)."""

from __future__ import annotations

import asyncio
import random

import pytest

from linemq.broker.storage.log_store import LogStore
from linemq.broker.storage.records import Meta, Record, StorageError
from tests.storage.conformance.kits import StoreKit


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}_{i}" for i in range(n)]


async def publish(store: LogStore, topic: str, msgs: list[str], ts: float = 1.0) -> list[Record]:
    appended = store.append(topic, msgs, ts, ids(topic, len(msgs)))
    store.commit()
    return await appended


def test_every_store_implements_the_seam(store: LogStore) -> None:
    assert isinstance(store, LogStore)


async def test_offsets_start_at_1_and_have_no_gaps_in_each_topic(store: LogStore) -> None:
    sent: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    for round_ in range(5):
        batch = {t: [f"{t}{round_}-{i}" for i in range(round_ + 1)] for t in ("a", "b", "c")}
        total = sum(map(len, batch.values()))
        ticket = store.append_batch(batch, 10.0 + round_, ids(f"r{round_}", total))
        for t, msgs in batch.items():
            sent[t] += msgs
        store.commit()
        await ticket
        assert not ticket.errors
    for t, msgs in sent.items():
        assert store.last_offset(t) == len(msgs) == 15
        got = await store.read(t, 1, 100)
        assert [r.offset for r in got] == list(range(1, 16))
        assert [r.msg for r in got] == msgs
    assert store.last_offset("never") == 0
    assert store.first_offset("never") == 1
    assert store.topics() == ["a", "b", "c"]


async def test_an_append_resolves_to_its_records_in_order(store: LogStore) -> None:
    first = await publish(store, "t", ["x", "y"])
    appended = store.append("t", ["one", "two", "three"], 5.0, ["i1", "i2", "i3"])
    assert not appended.ticket.done(), "nothing is durable before the commit"
    store.commit()
    records = await appended
    assert [(r.offset, r.id, r.ts, r.msg) for r in records] == [
        (3, "i1", 5.0, "one"),
        (4, "i2", 5.0, "two"),
        (5, "i3", 5.0, "three"),
    ]
    assert [r.offset for r in first] == [1, 2]


async def test_appends_to_one_topic_in_one_tick_resolve_to_their_own_records(
    store: LogStore,
) -> None:
    first = store.append("t", ["a"], 1.0, ["i1"])
    second = store.append("t", ["b", "c"], 1.0, ["i2", "i3"])
    store.commit()
    assert [r.msg for r in await first] == ["a"]
    assert [r.msg for r in await second] == ["b", "c"]
    assert [r.offset for r in await second] == [2, 3]


async def test_appends_before_a_commit_share_its_ticket(store: LogStore) -> None:
    a = store.append("t", ["a"], 1.0, ["ia"])
    batch_ticket = store.append_batch({"t": ["b"], "u": ["c"]}, 1.0, ["ib", "ic"])
    assert a.ticket is batch_ticket is store.ticket
    done = store.commit()
    assert done.ticket is batch_ticket
    await batch_ticket  # a networked store resolves it once the database has committed
    assert batch_ticket.done()
    assert {t: [r.msg for r in rs] for t, rs in done.written.items()} == {
        "t": ["a", "b"],
        "u": ["c"],
    }
    assert store.ticket is not batch_ticket, "the next appends wait for the next commit"


async def test_metadata_is_kept(store: LogStore) -> None:
    meta = Meta(key="k1", priority=3, headers={"h": "v"}, pid="p1")
    appended = store.append("m", ["with meta"], 2.0, ["im"], meta)
    store.commit()
    (record,) = await appended
    (read,) = await store.read("m", 1, 10)
    assert read.meta == record.meta == meta


async def test_reads_see_committed_records_only(store: LogStore, kit: StoreKit) -> None:
    await publish(store, "t", ["a", "b"])
    pending = store.append("t", ["pending"], 1.0, ["ip"])
    if kit.offsets_at_append:
        assert store.last_offset("t") == 3, "the offset is given at append"
    else:
        assert store.last_offset("t") == 2, "the offset is given at commit"
    assert [r.msg for r in await store.read("t", 1, 10)] == ["a", "b"]
    assert [r.msg for r in await store.read_last("t", 5)] == ["a", "b"]
    done = store.commit()
    await done.ticket  # a networked store: read once it has said what it stored
    assert done.settled and [r.msg for r in done.written["t"]] == ["pending"]
    assert [r.msg for r in await store.read("t", 1, 10)] == ["a", "b", "pending"]
    assert [r.offset for r in await pending] == [3] and store.last_offset("t") == 3


async def test_a_view_shows_a_commit_once_the_store_says_it_stored_it(store: LogStore) -> None:
    await publish(store, "t", ["a"])
    view = store.get("t")
    assert view is not None
    store.append("t", ["b"], 1.0, ["ib"])
    done = store.commit()
    assert view.written_offset == (2 if done.settled else 1), "files and memory know at once"
    told = []
    done.on_settled(told.append)
    await done.ticket
    assert told == [done] and done.settled and view.written_offset == 2
    assert [(r.offset, r.msg) for r in done.written["t"]] == [(2, "b")] and not done.failed


async def test_reads_by_offset_range(store: LogStore) -> None:
    await publish(store, "t", [f"m{i}" for i in range(1, 201)])
    assert [r.offset for r in await store.read("t", 50, 3)] == [50, 51, 52]
    assert [r.offset for r in await store.read("t", 0, 2)] == [1, 2]
    assert [r.offset for r in await store.read("t", 199, 10)] == [199, 200]
    assert await store.read("t", 201, 10) == []
    assert await store.read("t", 1, 0) == []
    assert await store.read("nothing", 1, 10) == []
    small = await store.read("t", 1, 100, max_bytes=10)
    assert [r.msg for r in small] == ["m1", "m2", "m3", "m4", "m5"]
    assert len(await store.read("t", 1, 100, max_bytes=0)) == 1, "the first record always goes"


async def test_reads_by_time(store: LogStore) -> None:
    for ts in (100.0, 200.0, 300.0):
        await publish(store, "t", [f"at {ts}", f"also {ts}"], ts)
    assert await store.offset_at("t", 50.0) == 1
    assert await store.offset_at("t", 100.0) == 1
    assert await store.offset_at("t", 150.0) == 3
    assert await store.offset_at("t", 300.0) == 5
    assert await store.offset_at("t", 301.0) == 7, "one past the last record"
    assert await store.offset_at("none", 1.0) == 1
    start = await store.offset_at("t", 200.0)
    assert [r.msg for r in await store.read("t", start, 2)] == ["at 200.0", "also 200.0"]


async def test_reads_of_the_last_n(store: LogStore) -> None:
    await publish(store, "t", [f"m{i}" for i in range(1, 51)])
    assert [r.offset for r in await store.read_last("t", 3)] == [48, 49, 50]
    assert len(await store.read_last("t", 500)) == 50
    assert await store.read_last("t", 0) == []
    assert await store.read_last("none", 5) == []


async def test_a_topic_that_cannot_be_stored_fails_alone(store: LogStore) -> None:
    bad = store.append("../escape", ["x"], 1.0, ["ix"])
    with pytest.raises(StorageError):
        await bad
    ticket = store.append_batch({"ok": ["a"], "bad/name": ["b"]}, 1.0, ["ia", "ib"])
    store.commit()
    await ticket
    assert set(ticket.errors) == {"bad/name"}
    assert [r.msg for r in await store.read("ok", 1, 10)] == ["a"]
    assert "bad/name" not in store.topics()


async def test_concurrent_appends_to_many_topics(store: LogStore) -> None:
    """Writers interleave appends over shared topics while a committer runs: every
    topic ends up gap-free, holding each writer's messages in the order it sent them."""
    topics = [f"t{i}" for i in range(40)]
    rng = random.Random(7)
    stop = asyncio.Event()

    async def writer(w: int) -> list[tuple[str, str]]:
        sent = []
        for i in range(150):
            topic = rng.choice(topics)
            msg = f"w{w}-{i}"
            if i % 3:
                store.append_batch({topic: [msg]}, float(i), [f"id{w}-{i}"])
            else:
                store.append(topic, [msg], float(i), [f"id{w}-{i}"])
            sent.append((topic, msg))
            if rng.random() < 0.3:
                await asyncio.sleep(0)
        return sent

    async def committer() -> None:
        while not stop.is_set():
            store.commit()
            await asyncio.sleep(0)

    task = asyncio.create_task(committer())
    sent = await asyncio.gather(*(writer(w) for w in range(6)))
    stop.set()
    await task
    await store.commit().ticket
    stored = {t: await store.read(t, 1, 10_000) for t in topics}
    for records in stored.values():
        assert [r.offset for r in records] == list(range(1, len(records) + 1))
    for w, mine in enumerate(sent):
        for t in topics:
            got = [r.msg for r in stored[t] if r.msg.startswith(f"w{w}-")]
            assert got == [m for topic, m in mine if topic == t]
    assert sum(map(len, stored.values())) == 6 * 150


async def test_a_reopened_store_keeps_every_committed_record(kit: StoreKit) -> None:
    if kit.reopen_skipped:
        pytest.skip(kit.reopen_skipped)
    store = kit.open()
    await publish(store, "a", [f"a{i}" for i in range(300)], 1.0)  # several segments
    await publish(store, "b", ["b0"], 2.0)
    store.close()
    again = kit.open()
    try:
        assert again.topics() == ["a", "b"]
        assert again.last_offset("a") == 300
        assert [r.msg for r in await again.read("a", 1, 1000)] == [f"a{i}" for i in range(300)]
        assert [r.offset for r in await publish(again, "a", ["next"])] == [301]
        assert [r.msg for r in await again.read_last("b", 1)] == ["b0"]
    finally:
        again.close()
