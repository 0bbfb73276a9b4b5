"""Retention: which old segments a topic may drop, and the file work of dropping them.

Only whole sealed segments go, and only from the oldest end, so what remains is
always a contiguous range of offsets. Deciding is cheap and lock-light; the
unlinks are plain blocking calls the caller can move to a worker thread, so
publishers on the loop never wait for the filesystem to free a 64 MiB file.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pathlib
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import structlog

from linemq.broker.storage.fsio import fsync_dir
from linemq.broker.storage.records import Record
from linemq.broker.storage.segment import (
    decode_record,
    idx_path,
    log_path,
    parse_segment_name,
    read_head,
)

if TYPE_CHECKING:
    from linemq.broker.storage.index import SealedCache
    from linemq.broker.storage.tail_cache import TailCache

log = structlog.get_logger(__name__)

TAIL_CHUNK: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """A sealed segment as retention sees it: offsets [base, last_offset], bytes of .log+.idx."""

    base: int
    last_offset: int
    size_bytes: int


@dataclass(frozen=True, slots=True)
class RetentionResult:
    """What a drop removed; ``paths`` are the files still to unlink (see ``delete_files``)."""

    segments: int = 0
    records: int = 0
    bytes: int = 0
    paths: tuple[pathlib.Path, ...] = ()


def choose_expired(
    sealed: Sequence[SegmentInfo],
    total_bytes: int,
    max_bytes: int | None,
    max_age: float | None,
    now: float,
    newest_ts: Callable[[int], float | None],
) -> list[SegmentInfo]:
    """The oldest-first prefix of ``sealed`` to drop; pure apart from ``newest_ts`` lookups.

    By size: drop oldest segments until ``total_bytes`` (which includes the
    active segment) is within ``max_bytes``, or no sealed segment is left. By
    age: drop oldest segments whose newest record is older than ``now -
    max_age``, stopping at the first that is not, so offsets stay contiguous.
    ``newest_ts`` returning None means the segment holds no readable record.
    """
    if max_bytes is not None and max_bytes < 0:
        raise ValueError("max_bytes must be >= 0")
    if max_age is not None and max_age < 0:
        raise ValueError("max_age must be >= 0")
    n = 0
    if max_bytes is not None:
        over = total_bytes - max_bytes
        while n < len(sealed) and over > 0:
            over -= sealed[n].size_bytes
            n += 1
    if max_age is not None:
        cutoff = now - max_age
        while n < len(sealed):  # segments already dropped by size need no timestamp
            ts = newest_ts(sealed[n].base)
            if ts is not None and ts >= cutoff:
                break
            n += 1
    return list(sealed[:n])


def newest_record(path: pathlib.Path) -> Record | None:
    """The last valid record of a segment file, read backwards from its end.

    One small read for a healthy segment; the window doubles only while no
    complete record is found (a record longer than the window). The header line
    never decodes as a record, so a header-only segment gives None.
    """
    base = parse_segment_name(path.name) or 0  # 0: no name to check the header against
    with path.open("rb") as f:
        head = read_head(f, path, base)
        end = f.seek(0, os.SEEK_END)
        window = TAIL_CHUNK
        while True:
            start = max(end - window, 0)
            f.seek(start)
            lines = f.read(end - start).split(b"\n")
            complete = lines if start == 0 else lines[1:]  # lines[0] may be cut mid-record
            for line in reversed(complete):
                rec = decode_record(line, head.version) if line else None
                if rec is not None:
                    return rec
            if start == 0:
                return None
            window *= 2


def sealed_sizes(topic_dir: pathlib.Path, bases: Iterable[int]) -> dict[int, int]:
    """Bytes of each segment's .log + .idx at start-up: one stat each, nothing read."""
    sizes: dict[int, int] = {}
    for base in bases:
        sizes[base] = os.stat(log_path(topic_dir, base)).st_size
        with contextlib.suppress(FileNotFoundError):
            sizes[base] += os.stat(idx_path(topic_dir, base)).st_size
    return sizes


def unlink_all(topic_dir: pathlib.Path, paths: Sequence[pathlib.Path]) -> None:
    """Unlink (already gone is fine), then make the removals durable with one dir fsync.

    Callers pass each segment's .log before its .idx: a stray .idx is ignored on
    start-up, a .log without its .idx would only cost longer scans.
    """
    for path in paths:
        path.unlink(missing_ok=True)
    if paths and topic_dir.is_dir():
        fsync_dir(topic_dir)


class RetentionMixin:
    """``TopicLog``'s retention and purge, kept apart so each module stays readable.

    The active segment is always the last of ``_bases`` and is never dropped.
    Threads: ``expired_segments``, ``drop_segments``, ``apply_retention`` and
    ``delete_files`` touch only state guarded by ``_lock``, so they may run in a
    worker thread while the loop appends (the first age check after a restart
    reads one segment tail per candidate, another reason to). ``purge`` and
    ``purge_segments`` write, so they belong to the loop thread like ``write``.
    """

    name: str
    _dir: pathlib.Path
    _lock: threading.Lock
    _bases: list[int]
    _sizes: dict[int, int]
    _total: int
    _newest_ts: dict[int, float]
    _drops: int
    _tail: TailCache
    _sealed: SealedCache
    _written_last: int
    _closed: bool

    if TYPE_CHECKING:

        def write(self) -> bool: ...

        def sync(self) -> None: ...

        def _roll_empty(self, base: int) -> None: ...

    def expired_segments(
        self, max_bytes: int | None, max_age: float | None, now: float
    ) -> list[SegmentInfo]:
        """Sealed segments, oldest first, that retention would drop; changes nothing.

        See ``choose_expired`` for the rules. Sizes come from memory; an age check
        reads a segment's last record only the first time it is needed after
        start-up (segments sealed while running know it already).
        """
        with self._lock:
            bases = self._bases[:]
            total = self._total
            sealed = [
                SegmentInfo(b, nxt - 1, self._sizes[b]) for b, nxt in itertools.pairwise(bases)
            ]
        return choose_expired(sealed, total, max_bytes, max_age, now, self._newest_ts_of)

    def _newest_ts_of(self, base: int) -> float | None:
        ts = self._newest_ts.get(base)
        if ts is not None:
            return ts
        try:
            rec = newest_record(log_path(self._dir, base))
        except FileNotFoundError:
            return None  # dropped meanwhile: nothing left to keep
        if rec is None:
            return None
        with self._lock:
            if base in self._sizes:  # not for a segment dropped while we read it
                self._newest_ts[base] = rec.ts
        return rec.ts

    def drop_segments(self, segments: Iterable[SegmentInfo]) -> RetentionResult:
        """Remove segments from the log in memory; return what to unlink (``delete_files``).

        Only the oldest-first run of ``segments`` still present is dropped, never
        the active segment, so a stale list is harmless. Readers see the new
        ``first_offset`` at once; the files stay until ``delete_files`` (a crash
        before then simply leaves them as segments that are still there).
        """
        return self._drop({s.base for s in segments})

    def _drop(self, wanted: Collection[int] | None) -> RetentionResult:
        """Drop the leading sealed segments in ``wanted``, or all sealed ones for None."""
        with self._lock:
            n = 0
            while n < len(self._bases) - 1 and (wanted is None or self._bases[n] in wanted):
                n += 1
            if n == 0:
                return RetentionResult()
            dropped, self._bases = self._bases[:n], self._bases[n:]
            first = self._bases[0]
            nbytes = sum(self._sizes.pop(b) for b in dropped)
            self._total -= nbytes
            for b in dropped:
                self._newest_ts.pop(b, None)
            self._tail.drop_before(first)
            self._drops += 1
        for b in dropped:
            self._sealed.discard(b)
        paths = tuple(p for b in dropped for p in (log_path(self._dir, b), idx_path(self._dir, b)))
        result = RetentionResult(n, first - dropped[0], nbytes, paths)
        log.info(
            "segments_dropped",
            topic=self.name,
            segments=n,
            records=result.records,
            bytes=nbytes,
            first_offset=first,
        )
        return result

    def delete_files(self, paths: Sequence[pathlib.Path]) -> None:
        """Unlink dropped segments' files; blocking, so meant for a worker thread.

        It fsyncs the log first: the newest segment (a purge's empty one above
        all) must be durable before older files go, or a crash could bring
        offsets back. Thread-safe, like ``sync``.
        """
        if not paths:
            return
        self.sync()
        unlink_all(self._dir, paths)

    def apply_retention(
        self,
        max_bytes: int | None,
        max_age: float | None,
        now: float,
        *,
        delete: bool = True,
    ) -> RetentionResult:
        """``expired_segments`` + ``drop_segments``, then unlink unless ``delete=False``.

        With ``delete=False`` the caller passes ``result.paths`` to ``delete_files``
        in a worker thread, so the loop only does the in-memory part.
        """
        result = self.drop_segments(self.expired_segments(max_bytes, max_age, now))
        if delete:
            self.delete_files(result.paths)
        return result

    def purge_segments(self) -> RetentionResult:
        """Drop every record but keep offsets increasing; files are left to ``delete_files``.

        Loop thread only: pending records are written first (a failed write raises
        StorageError and purges nothing), then the log rolls to an empty segment
        at ``last_offset + 1`` so the next append, and a restart, continue there.
        """
        if self._closed:
            raise ValueError(f"topic log {self.name!r} is closed")
        self.write()
        if self._bases and self._written_last >= self._bases[-1]:  # the active one has records
            self._roll_empty(self._written_last + 1)
        return self._drop(None)

    def purge(self) -> int:
        """Empty the topic (a dead-letter topic, say); return how many records it held.

        ``purge_segments`` plus ``delete_files`` on the caller's thread; split them
        to move the unlinks off the loop. Afterwards ``first_offset == last_offset
        + 1``, on restart too.
        """
        result = self.purge_segments()
        self.delete_files(result.paths)
        return result.records
