"""Sparse segment indexes: (offset, byte position) every ~4 KiB of log.

A read bisects the segment list, then the index, then scans at most a few KiB,
so its cost does not grow with the log. Only the active segment's index lives in
memory for good; sealed ones are loaded on demand into a small LRU so memory does
not grow with the number of stored messages.
"""

from __future__ import annotations

import pathlib
import struct
import threading
from array import array
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from linemq.broker.storage.segment import SEGMENT_VERSION, idx_path, log_path, read_head

INDEX_ENTRY: Final = struct.Struct("<QQ")
INDEX_INTERVAL: Final = 4096
SEALED_CACHE_SEGMENTS: Final = 16


def index_due(pos: int, last_indexed_pos: int | None) -> bool:
    """The one rule for when a record gets an entry, used by appends and by recovery alike."""
    return last_indexed_pos is None or pos - last_indexed_pos >= INDEX_INTERVAL


def encode_entries(entries: Iterable[tuple[int, int]]) -> bytes:
    return b"".join(INDEX_ENTRY.pack(off, pos) for off, pos in entries)


class SegmentIndex:
    """Parallel arrays rather than tuples: 16 bytes an entry instead of ~100."""

    __slots__ = ("offsets", "positions")

    def __init__(self) -> None:
        self.offsets = array("Q")
        self.positions = array("Q")

    def __len__(self) -> int:
        return len(self.offsets)

    def add(self, offset: int, pos: int) -> None:
        self.offsets.append(offset)
        self.positions.append(pos)

    @property
    def last_position(self) -> int | None:
        return self.positions[-1] if self.positions else None

    def truncate(self, n: int) -> None:
        del self.offsets[n:]
        del self.positions[n:]

    def seek_point(self, offset: int) -> tuple[int, int] | None:
        """The last entry at or before ``offset``: where a scan for it should start."""
        i = bisect_right(self.offsets, offset) - 1
        if i < 0:
            return None
        return self.offsets[i], self.positions[i]

    @classmethod
    def parse_prefix(cls, raw: bytes, base: int, header_end: int, end: int) -> SegmentIndex:
        """The longest valid prefix of an index file.

        Entries must increase strictly and point inside [header_end, end); anything
        after the first bad entry (torn write, zeroed block) is ignored.
        """
        index = cls()
        whole = len(raw) - len(raw) % INDEX_ENTRY.size
        prev_off, prev_pos = base - 1, header_end - 1
        for off, pos in INDEX_ENTRY.iter_unpack(raw[:whole]):
            if off <= prev_off or pos <= prev_pos or pos >= end:
                break
            index.add(off, pos)
            prev_off, prev_pos = off, pos
        return index


@dataclass(frozen=True, slots=True)
class SealedSegment:
    """What a read needs to seek in a segment that no longer changes."""

    base: int
    header_end: int
    index: SegmentIndex
    version: int = SEGMENT_VERSION


# on_header_damage(base, why): a sealed segment whose header could not be trusted
HeaderReport = Callable[[int, str], None]


def load_sealed(
    topic_dir: pathlib.Path, base: int, on_header_damage: HeaderReport | None = None
) -> SealedSegment:
    """Read the header and load the index; a missing index only means longer scans.

    A damaged header is reported and costs only itself: records after it are
    still read (and checked one by one) from the first line that follows it.
    """
    path = log_path(topic_dir, base)
    with path.open("rb") as f:
        head = read_head(f, path, base)
        end = f.seek(0, 2)
    if head.damage and on_header_damage is not None:
        on_header_damage(base, head.damage)
    try:
        raw = idx_path(topic_dir, base).read_bytes()
    except FileNotFoundError:
        raw = b""
    index = SegmentIndex.parse_prefix(raw, base, head.end, end)
    return SealedSegment(base, head.end, index, head.version)


class SealedCache:
    """A small LRU of sealed segments' indexes, shared by reader threads."""

    def __init__(
        self,
        topic_dir: pathlib.Path,
        capacity: int = SEALED_CACHE_SEGMENTS,
        on_header_damage: HeaderReport | None = None,
    ) -> None:
        self._dir = topic_dir
        self._on_header_damage = on_header_damage
        self._capacity = capacity
        self._items: OrderedDict[int, SealedSegment] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, seg: SealedSegment) -> None:
        with self._lock:
            self._items[seg.base] = seg
            self._items.move_to_end(seg.base)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def get(self, base: int) -> SealedSegment:
        with self._lock:
            seg = self._items.get(base)
            if seg is not None:
                self._items.move_to_end(base)
                return seg
        # Loaded outside the lock so one slow disk read does not stall other readers.
        seg = load_sealed(self._dir, base, self._on_header_damage)
        self.put(seg)
        return seg

    def discard(self, base: int) -> None:
        """Forget a deleted segment so its index does not hold memory until evicted."""
        with self._lock:
            self._items.pop(base, None)

    def __len__(self) -> int:
        return len(self._items)
