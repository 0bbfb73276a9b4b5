"""Time lookups: the offset of the first record published at or after a moment.

Records carry their publish time, which increases only roughly (a clock can step
back), so the lookup bisects as if it always did, then scans forward a little:
over segments by each one's first record (cached per segment, since a written
first record never changes), over the chosen segment's sparse index by the
record each entry points at, then along at most one index interval. So it reads
O(log segments + log entries) records plus a few KiB, however long the log is.
"""

from __future__ import annotations

import math
import pathlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Final

from linemq.broker.storage.segment import decode_record, iter_lines, log_path, read_head

if TYPE_CHECKING:
    from linemq.broker.storage.index import SealedCache, SegmentIndex
    from linemq.broker.storage.log_state import Active
    from linemq.broker.storage.records import Record

PROBE_CHUNK: Final = 512

FirstRecord = tuple[int, float] | None  # (offset, ts) of a segment's first record, None: none


class _Dropped(Exception):
    """Retention or a purge dropped segments during a lookup: start it again."""


@dataclass(frozen=True, slots=True)
class _ActiveView:
    """The active segment as it was when a lookup began; later writes are not seen."""

    base: int
    header_end: int
    size: int
    index: SegmentIndex
    entries: int
    version: int


def line_at(f: BinaryIO, pos: int, end: int | None) -> bytes | None:
    """The complete line starting at ``pos`` (ending before ``end``), or None."""
    f.seek(pos)
    buf = b""
    chunk = PROBE_CHUNK
    while True:
        want = chunk if end is None else min(chunk, end - pos - len(buf))
        data = f.read(want) if want > 0 else b""
        if not data:
            return None
        nl = data.find(b"\n")
        if nl >= 0:
            return buf + data[: nl + 1]
        buf += data
        chunk *= 2


def first_record(path: pathlib.Path, base: int, end: int | None) -> Record | None:
    """A segment's first valid record within [header, end); usually one small read."""
    with path.open("rb") as f:
        head = read_head(f, path, base)
        line = line_at(f, head.end, end)
        rec = decode_record(line, head.version) if line is not None else None
        if rec is not None or line is None:
            return rec
        for _pos, line in iter_lines(f, head.end, end):  # a damaged first line
            rec = decode_record(line, head.version)
            if rec is not None:
                return rec
    return None


class TimeLookupMixin:
    """``TopicLog.offset_at``, kept apart like ``RetentionMixin``.

    Thread-safe like ``read``: it takes ``_lock`` only for short looks at shared
    state and does its blocking file reads outside it.
    """

    _dir: pathlib.Path
    _lock: threading.Lock
    _bases: list[int]
    _sizes: dict[int, int]
    _drops: int
    _sealed: SealedCache
    _active: Active | None
    _written_last: int

    # base -> first record of sealed segments (and of the active one once it has one);
    # created on first use so TopicLog.__init__ need not know about it. Guarded by _lock.
    _first_records: dict[int, FirstRecord] | None = None
    _first_records_drops = 0

    def offset_at(self, ts: float) -> int:
        """The offset of the first written record whose ts is >= ``ts``.

        Timestamps are assumed to rise roughly: the search bisects segments by
        their first record and the chosen segment's index entries by the record
        each points at, then scans forward from the last sample below ``ts`` and
        returns the first record it meets with ts >= ``ts``. With non-decreasing
        timestamps that is exactly the first such record in the log; if a clock
        stepped back it is still one whose predecessor is older than ``ts``.
        ``first_offset`` for a ``ts`` at or before the oldest stored record;
        ``written_offset + 1`` if no written record is that recent (pending
        records do not count). Blocking file I/O: meant for a worker thread.
        """
        if math.isnan(ts):
            raise ValueError("ts must not be NaN")
        while True:
            try:
                return self._offset_at(ts)
            except _Dropped:
                continue

    def _offset_at(self, target: float) -> int:
        with self._lock:
            if self._first_records is None:
                self._first_records = {}
            if self._first_records_drops != self._drops:  # forget dropped segments
                self._first_records = {
                    b: r for b, r in self._first_records.items() if b in self._sizes
                }
                self._first_records_drops = self._drops
            drops, n, written = self._drops, len(self._bases), self._written_last
            first = self._bases[0] if self._bases else 1
            seg = self._active
            active = None
            if seg is not None:
                active = _ActiveView(
                    seg.base, seg.header_end, seg.size, seg.index, len(seg.index), seg.version
                )
        if n == 0 or written < first:
            return written + 1
        # Segments: the first whose first record is >= target (none: n).
        # Every index below lo was probed and found older (or empty); lo itself, if < n, newer.
        probed: dict[int, tuple[int, FirstRecord]] = {}
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi) // 2
            probed[mid] = self._first_of(mid, drops, active)
            rec = probed[mid][1]
            if rec is not None and rec[1] >= target:
                hi = mid
            else:
                lo = mid + 1
        found: int | None = None
        if lo > 0:
            found = self._scan_segment(probed[lo - 1][0], target, drops, active)
        if found is None:  # the next segment's first record, or nothing recent enough
            after = probed[lo][1] if lo < n else None
            found = after[0] if after is not None else written + 1
        self._check(drops)  # nothing below the answer was dropped meanwhile
        return found

    def _check(self, drops: int) -> None:
        with self._lock:
            if self._drops != drops:
                raise _Dropped

    def _first_of(self, i: int, drops: int, active: _ActiveView | None) -> tuple[int, FirstRecord]:
        with self._lock:
            if self._drops != drops:  # only drops shift the list; appends add at the end
                raise _Dropped
            base = self._bases[i]
            cache = self._first_records
            assert cache is not None
            if base in cache:
                return base, cache[base]
        is_active = active is not None and active.base == base
        end = active.size if active is not None and is_active else None
        rec: Record | None = None
        if active is None or not is_active or active.size > active.header_end:  # has records
            try:
                rec = first_record(log_path(self._dir, base), base, end)
            except FileNotFoundError:
                self._check(drops)
                raise
        first = None if rec is None else (rec.offset, rec.ts)
        if first is not None or not is_active:  # the active one may still get its first
            with self._lock:
                if base in self._sizes:  # not for a segment dropped while we read it
                    cache[base] = first
        return base, first

    def _scan_segment(
        self, base: int, target: float, drops: int, active: _ActiveView | None
    ) -> int | None:
        """The first record >= target after the last index sample below it, in one segment."""
        try:
            if active is not None and active.base == base:
                header_end, end = active.header_end, active.size
                index, entries, version = active.index, active.entries, active.version
            else:
                sealed = self._sealed.get(base)
                header_end, end, index, entries = sealed.header_end, None, sealed.index, None
                version = sealed.version
            with log_path(self._dir, base).open("rb") as f:
                start = self._bisect_index(f, index, entries, header_end, end, target, version)
                for _pos, line in iter_lines(f, start, end):
                    rec = decode_record(line, version)
                    if rec is not None and rec.ts >= target:
                        return rec.offset
        except FileNotFoundError:
            self._check(drops)
            if active is None or active.base != base:
                self._sealed.discard(base)
            raise
        return None

    def _bisect_index(
        self,
        f: BinaryIO,
        index: SegmentIndex,
        entries: int | None,
        header_end: int,
        end: int | None,
        target: float,
        version: int,
    ) -> int:
        """Where to scan from: the last indexed record below ``target``, else the header's end.

        ``entries`` bounds the active segment's index to what existed when the
        lookup began (it only grows, under ``_lock``). An entry that does not
        point at its record means a damaged index: the whole segment is scanned.
        """
        with self._lock:
            n = len(index) if entries is None else entries
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi) // 2
            with self._lock:
                offset, pos = index.offsets[mid], index.positions[mid]
            line = line_at(f, pos, end) if pos >= header_end else None
            rec = decode_record(line, version) if line is not None else None
            if rec is None or rec.offset != offset:
                return header_end
            if rec.ts >= target:
                hi = mid
            else:
                lo = mid + 1
        if lo == 0:
            return header_end
        with self._lock:
            return index.positions[lo - 1]
