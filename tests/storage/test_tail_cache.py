"""The tail cache serves the same records a plain walk over its window would."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from linemq.broker.storage.records import Record
from linemq.broker.storage.tail_cache import TailCache


def walk(records: list[Record], start: int, max_count: int, max_bytes: int) -> list[Record]:
    """Whole records from ``start`` while the count and text size allow; the first always."""
    out: list[Record] = []
    total = 0
    for rec in records:
        if rec.offset < start:
            continue
        if len(out) >= max_count or (out and total + len(rec.msg) > max_bytes):
            break
        out.append(rec)
        total += len(rec.msg)
    return out


@given(
    st.lists(st.integers(0, 50), min_size=1, max_size=80),  # message sizes
    st.integers(1, 12),  # the cache's record bound, so old records fall out
    st.integers(1, 100),
    st.integers(1, 30),
    st.integers(0, 200),
)
def test_get_and_last_match_a_walk_over_what_is_kept(
    sizes: list[int], keep: int, start: int, max_count: int, max_bytes: int
) -> None:
    records = [Record(i + 1, f"id{i}", 1.0, "x" * n) for i, n in enumerate(sizes)]
    cache = TailCache(1, max_records=keep)
    for i in range(0, len(records), 5):
        cache.extend(records[i : i + 5])
    kept = records[-keep:]
    got = cache.get(start, max_count, max_bytes)
    if start > len(records):
        assert got == []
    elif start < kept[0].offset:
        assert got is None
    else:
        assert got == walk(kept, start, max_count, max_bytes)
    n = min(max_count, len(records))
    if n <= len(kept):
        assert cache.last(n, 1) == kept[len(kept) - n :]
