"""What every store's ``TopicView`` promises: delivery's hot path reads it without waiting."""

from __future__ import annotations

import pytest

from linemq.broker.storage.log_store import Footprint, LogStore, Store
from linemq.broker.storage.records import Meta
from tests.storage.conformance.kits import StoreKit
from tests.storage.conformance.test_log_store import ids, publish


def test_every_store_implements_the_whole_seam(store: Store) -> None:
    assert isinstance(store, Store)


async def test_a_topic_is_opened_or_made_and_got_without_making_it(store: LogStore) -> None:
    assert store.get("t") is None
    assert store.topics() == [], "get makes nothing"
    view = store.topic("t")
    assert (view.first_offset, view.last_offset, view.written_offset) == (1, 0, 0)
    assert store.topics() == ["t"], "an opened topic counts, records or not"
    assert store.get("t") is view is store.topic("t"), "one view per topic, kept current"
    assert view.read_cached(1, 10) == []
    assert store.footprint("t") == Footprint()
    with pytest.raises(ValueError):
        store.topic("../escape")


async def test_a_view_follows_appends_and_commits(store: LogStore, kit: StoreKit) -> None:
    view = store.topic("t")
    appended = store.append("t", ["a", "b"], 1.0, ["ia", "ib"])
    given = 2 if kit.offsets_at_append else 0  # else given at commit
    assert (view.last_offset, view.written_offset) == (given, 0), "not written yet"
    assert view.read_cached(1, 10) == [], "nothing written from there yet"
    store.commit()
    records = await appended
    assert (view.first_offset, view.last_offset, view.written_offset) == (1, 2, 2)
    assert view.read_cached(1, 10) == records, "what was just written is served from memory"
    assert view.read_cached(2, 10) == records[1:]
    assert view.read_cached(3, 10) == []
    assert store.footprint("t").bytes > 0


async def test_cached_reads_are_bounded_like_reads(store: LogStore) -> None:
    view = store.topic("t")
    await publish(store, "t", [f"m{i}" for i in range(1, 21)])
    assert [r.offset for r in view.read_cached(5, 3) or []] == [5, 6, 7]
    assert view.read_cached(5, 0) == []
    small = view.read_cached(1, 100, max_bytes=10)
    assert [r.msg for r in small or []] == ["m1", "m2", "m3", "m4", "m5"]
    assert len(view.read_cached(1, 100, max_bytes=0) or []) == 1, "the first record always goes"
    assert [r.offset for r in view.read_cached(0, 2) or []] == [1, 2]


async def test_records_above_meta_last_offset_are_plain(store: LogStore, kit: StoreKit) -> None:
    view = store.topic("t")
    await publish(store, "t", ["plain 1", "plain 2"])
    assert view.meta_last_offset < 1, "a topic of plain records only"
    appended = store.append("t", ["keyed"], 1.0, ["ik"], Meta(key="k"))
    if kit.offsets_at_append:
        assert view.meta_last_offset >= 3
    store.commit()
    await appended
    assert view.meta_last_offset >= 3, "at the latest once its offset is given"
    await publish(store, "t", ["plain 4", "plain 5"])
    records = await store.read("t", 1, 100)
    assert all(r.meta is None for r in records if r.offset > view.meta_last_offset)
    assert all(r.offset <= view.meta_last_offset for r in records if r.meta is not None)


async def test_views_of_many_topics_stay_apart(store: LogStore) -> None:
    views = {t: store.topic(t) for t in ("a", "b")}
    ticket = store.append_batch({"a": ["a1", "a2"], "b": ["b1"]}, 1.0, ids("x", 3))
    store.commit()
    await ticket
    assert [r.msg for r in views["a"].read_cached(1, 10) or []] == ["a1", "a2"]
    assert [r.msg for r in views["b"].read_cached(1, 10) or []] == ["b1"]
    assert (views["a"].written_offset, views["b"].written_offset) == (2, 1)
