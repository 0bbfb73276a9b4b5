"""The most recently written records, kept in memory.

Subscribers that keep up read only the tail, so serving it from memory keeps the
common path off the disk and off worker threads.
"""

from __future__ import annotations

from collections import deque
from operator import attrgetter
from typing import Final

from broker.storage.records import Record

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
        self._records.extend(records)
        self._bytes += sum(map(len, map(_msg, records)))
        if records:
            self.next_offset = records[-1].offset + 1
        while self._records and (
            len(self._records) > self._max_records or self._bytes > self._max_bytes
        ):
            self._bytes -= len(self._records.popleft().msg)

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
        out: list[Record] = []
        total = 0
        for i in range(start - self._records[0].offset, len(self._records)):
            rec = self._records[i]
            if len(out) >= max_count or (out and total + len(rec.msg) > max_bytes):
                break
            out.append(rec)
            total += len(rec.msg)
        return out

    def last(self, n: int, first_offset: int) -> list[Record] | None:
        """The last ``n`` records, if the cache holds them (or holds everything stored)."""
        have = len(self._records)
        if have >= n:
            return [self._records[i] for i in range(have - n, have)]
        if (self._records and self._records[0].offset <= first_offset) or (
            not self._records and self.next_offset <= first_offset
        ):
            return list(self._records)
        return None
