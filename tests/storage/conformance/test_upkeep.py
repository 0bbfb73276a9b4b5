"""What every store's drops promise (log_store.LogUpkeep): oldest first, contiguous, offsets
never given twice. A store may keep more than asked (whole segments), never less."""

from __future__ import annotations

import pytest

from linemq.broker.storage.log_store import Store
from linemq.broker.storage.records import StorageError
from tests.storage.conformance.kits import StoreKit
from tests.storage.conformance.test_log_store import publish

TEXT = "x" * 90  # with the file kit's 4 KiB segments: about 30 records a segment


async def fill(store: Store, topic: str, n: int, ts: float = 1.0, start: int = 0) -> None:
    await publish(store, topic, [f"{i:05d}{TEXT}" for i in range(start, start + n)], ts)


async def assert_contiguous_to(store: Store, topic: str, last: int) -> int:
    """The records left run from the first offset to ``last``; returns that first offset."""
    first = store.first_offset(topic)
    records = await store.read(topic, 1, 10_000, max_bytes=1 << 30)
    assert [r.offset for r in records] == list(range(first, last + 1))
    view = store.get(topic)
    assert view is not None and view.first_offset == first
    cached = view.read_cached(1, 5)
    assert cached is None or cached == [] or cached[0].offset == first
    return first


async def test_drop_before_drops_the_oldest_records_below_the_floor(store: Store) -> None:
    await fill(store, "t", 300)
    dropped = await store.drop_before("t", 150, 10.0)
    first = await assert_contiguous_to(store, "t", 300)
    assert 1 < first <= 150
    assert dropped == first - 1
    assert await store.drop_before("t", first, 10.0) == 0, "nothing below the first offset"
    await store.drop_before("t", 10**9, 10.0)
    assert [r.offset for r in await store.read_last("t", 1)] == [300], "the newest stays"
    assert [r.offset for r in await publish(store, "t", ["next"])] == [301]


async def test_drop_before_with_an_age_drops_only_older_records(store: Store) -> None:
    await fill(store, "t", 100, ts=100.0)
    await fill(store, "t", 100, ts=1000.0, start=100)
    await store.drop_before("t", 10**9, 1000.0, max_age=500.0)
    first = await assert_contiguous_to(store, "t", 200)
    assert 1 < first <= 101, "every record older than 500 s may go, no newer one"


async def test_retention_by_size_and_by_age(store: Store) -> None:
    await fill(store, "t", 200, ts=100.0)
    before = store.footprint("t").bytes
    dropped = await store.expire("t", before // 2, None, 1000.0)
    first = await assert_contiguous_to(store, "t", 200)
    assert dropped == first - 1 > 0
    assert store.footprint("t").bytes < before
    await fill(store, "u", 100, ts=100.0)
    await fill(store, "u", 100, ts=1000.0, start=100)
    assert await store.expire("u", None, 5000.0, 1000.0) == 0, "nothing that old"
    await store.expire("u", None, 500.0, 1000.0)
    assert 1 < await assert_contiguous_to(store, "u", 200) <= 101
    await store.expire("u", 0, 0.0, 10**6)
    assert [r.offset for r in await store.read_last("u", 1)] == [200], "the newest stays"


async def test_a_purged_topic_is_empty_and_its_offsets_go_on(store: Store) -> None:
    await fill(store, "t", 50)
    view = store.topic("t")
    assert await store.purge("t") == 50
    assert await store.read("t", 1, 100) == []
    assert await store.read_last("t", 5) == []
    assert view.read_cached(1, 10) in ([], None)
    assert view.first_offset == store.first_offset("t") == 51
    assert "t" in store.topics()
    assert [r.offset for r in await publish(store, "t", ["again"])] == [51]
    assert await store.purge("never") == 0


async def test_a_deleted_topic_is_gone_at_once_and_its_name_goes_on(store: Store) -> None:
    await fill(store, "gone", 10)
    await fill(store, "gone.dlq", 3)
    removed = store.delete_topics(["gone", "gone.dlq"])
    assert store.get("gone") is None and store.get("gone.dlq") is None
    assert store.topics() == []
    refused = store.append("gone", ["meanwhile"], 1.0, ["im"])
    store.commit()
    with pytest.raises(StorageError):
        await refused
    await removed
    assert store.topics() == []
    assert [r.offset for r in await publish(store, "gone", ["back"])] == [11]
    assert [r.msg for r in await store.read("gone", 1, 100)] == ["back"]


async def test_skip_to_gives_out_no_offset_below_it(store: Store) -> None:
    await fill(store, "t", 3)
    assert store.skip_to("t", 10, "test: lost offsets")
    assert not store.skip_to("t", 5, "test: already past")
    assert store.last_offset("t") == 9
    assert [r.offset for r in await publish(store, "t", ["after"])] == [10]
    assert [r.offset for r in await store.read("t", 1, 100)] == [1, 2, 3, 10]


async def test_drops_and_deletions_hold_after_a_reopen(kit: StoreKit) -> None:
    if kit.reopen_skipped:
        pytest.skip(kit.reopen_skipped)
    store = kit.open()
    await fill(store, "kept", 300)
    await store.drop_before("kept", 150, 10.0)
    first = store.first_offset("kept")
    await fill(store, "deleted", 7)
    await store.delete_topics(["deleted"])
    await fill(store, "skipped", 2)
    store.skip_to("skipped", 20, "test: lost offsets")
    await publish(store, "skipped", ["at 20"])
    store.close()
    again = kit.open()
    try:
        assert again.topics() == ["kept", "skipped"]
        assert await assert_contiguous_to(again, "kept", 300) == first
        assert [r.offset for r in await publish(again, "deleted", ["back"])] == [8]
        assert [r.offset for r in await publish(again, "skipped", ["next"])] == [21]
    finally:
        again.close()
