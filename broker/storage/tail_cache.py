"""The most recently written records, kept in memory.

Subscribers that keep up read only the tail, so serving it from memory keeps the
common path off the disk and off worker threads.
"""

from __future__ import annotations

import itertools
from collections import deque
from operator import attrgetter
from typing import Final

from linemq.broker.storage.records import Record

TAIL_RECORDS: Final = 4096
TAIL_MSG_BYTES: Final = 4 * 1024 * 1024

_msg = attrgetter("msg")


class TailCache:
    """Contiguous written records ending at ``next_offset - 1``; bounded by count and text size."""

    def __init__(
        self, next_offset: int, max_records: int = TAIL_RECORDS, max_bytes: int = TAIL_MSG_BYTES
    ) -> None:
        self.next_offset = next_offset
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._records: deque[Record] = deque()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._records)

    def extend(self, records: list[Record]) -> None:
        if not records:
            return
        held = self._records
        held.extend(records)
        if len(records) == 1:  # a lone publish
            self._bytes += len(records[0].msg)
        else:
            self._bytes += sum(map(len, map(_msg, records)))
        self.next_offset = records[-1].offset + 1
        while len(held) > self._max_records or (held and self._bytes > self._max_bytes):
            self._bytes -= len(held.popleft().msg)

    def drop_before(self, offset: int) -> None:
        """Forget records below ``offset``: retention or a purge deleted them from disk."""
        while self._records and self._records[0].offset < offset:
            self._bytes -= len(self._records.popleft().msg)

    def get(self, start: int, max_count: int, max_bytes: int) -> list[Record] | None:
        """Records from ``start`` if the cache covers it; None means "go to disk"."""
        if start >= self.next_offset:
            return []
        if not self._records or start < self._records[0].offset:
            return None
        first = start - self._records[0].offset
        out = _slice(self._records, first, first + max_count)
        if len(out) > 1 and sum(map(len, map(_msg, out))) > max_bytes:
            total = 0
            for n, rec in enumerate(out):  # the first record goes whatever its size
                total += len(rec.msg)
                if n and total > max_bytes:
                    del out[n:]
                    break
        return out

    def last(self, n: int, first_offset: int) -> list[Record] | None:
        """The last ``n`` records, if the cache holds them (or holds everything stored)."""
        have = len(self._records)
        if have >= n:
            return _slice(self._records, have - n, have)
        if (self._records and self._records[0].offset <= first_offset) or (
            not self._records and self.next_offset <= first_offset
        ):
            return list(self._records)
        return None


def _slice(records: deque[Record], start: int, stop: int) -> list[Record]:
    """``records[start:stop]`` in one pass from the nearer end: a deque has no slicing,
    indexing walks its blocks for every item, and a subscriber that keeps up reads
    the last few of thousands."""
    have = len(records)
    stop = min(stop, have)
    if start <= have - stop:
        return list(itertools.islice(records, start, stop))
    out = list(itertools.islice(reversed(records), have - stop, have - start))
    out.reverse()
    return out
