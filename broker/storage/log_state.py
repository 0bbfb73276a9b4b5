"""The in-memory state of a topic log's active segment and pending batches, and name rules.

Kept out of ``topic_log`` so that module stays about behaviour, not bookkeeping.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Final

from linemq.broker.storage.index import INDEX_INTERVAL, SegmentIndex, index_due
from linemq.broker.storage.records import Record

_TOPIC_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,255}")


def check_topic_name(name: str) -> str:
    """Refuse names that could leave the topics directory: a backstop, callers validate too."""
    if "/" in name or "\0" in name or name.startswith(".") or ".." in name:
        raise ValueError(f"invalid topic name: {name!r}")
    if not _TOPIC_NAME.fullmatch(name):
        raise ValueError(f"invalid topic name: {name!r}")
    return name


@dataclass(slots=True)
class Active:
    """The segment being appended to. Its fds belong to the loop thread."""

    base: int
    header_end: int
    log_fd: int
    idx_fd: int
    size: int
    idx_size: int
    last_offset: int
    index: SegmentIndex
    version: int = 2  # of its lines; a version-1 segment is never appended to


@dataclass(slots=True)
class Batch:
    """Pending records for one segment; ``new_segment`` batches create their file on write."""

    base: int
    new_segment: bool
    start_size: int
    last_index_pos: int | None
    has_records: bool
    chunks: list[bytes] = field(default_factory=list)
    nbytes: int = 0
    records: list[Record] = field(default_factory=list)
    index: list[tuple[int, int]] = field(default_factory=list)
    shown: bool = False  # its records are in the write-ahead log, and visible to reads

    def add(self, line: bytes, record: Record) -> None:
        """One record's line, with an index entry if ``index_due`` says so."""
        pos = self.start_size + self.nbytes
        if index_due(pos, self.last_index_pos):
            self.index.append((record.offset, pos))
            self.last_index_pos = pos
        self.chunks.append(line)
        self.nbytes += len(line)
        self.records.append(record)
        self.has_records = True

    def add_run(self, lines: list[bytes], records: list[Record], sizes: list[int]) -> None:
        """What ``add`` would do for each line, with index entries found by bisecting
        the lines' start positions: the cost is per entry (one per ~4 KiB), not per line."""
        starts = list(accumulate(sizes, initial=self.start_size + self.nbytes))
        last = self.last_index_pos
        i = 0
        while True:
            if last is not None:
                i = bisect_left(starts, last + INDEX_INTERVAL, i, len(lines))
            if i >= len(lines):
                break
            assert index_due(starts[i], last)
            last = starts[i]
            self.index.append((records[i].offset, last))
            i += 1
        self.last_index_pos = last
        self.chunks += lines
        self.records += records
        self.nbytes = starts[-1] - self.start_size
        self.has_records = self.has_records or bool(records)

    def absorb(self, later: Batch) -> None:
        """Take ``later``'s lines (the next ones of this segment): one write for both.

        Only the last record is kept: a batch in the write-ahead log already gave its
        records to reads, and writing it needs only where it ends."""
        self.chunks += later.chunks
        self.nbytes += later.nbytes
        self.index += later.index
        self.last_index_pos = later.last_index_pos
        self.records = later.records[-1:]
