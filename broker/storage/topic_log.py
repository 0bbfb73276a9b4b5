"""A topic's append-only log: offsets, batching, segment rolls, durable writes, reads.

``append`` only encodes into memory so the event loop never waits on the disk;
``write`` hands each batch to the OS in one call per segment and undoes it whole
if that fails; ``sync`` runs in a worker thread to make it durable. Reads open
their own file handles and only see bytes that ``write`` finished, so they can
run in threads while the loop keeps appending.
"""

from __future__ import annotations

import os
import pathlib
import sys
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Final

import structlog

from linemq.broker.storage.damage import LOST_OFFSETS, RECORD, SEGMENT, Damage, DamageReport
from linemq.broker.storage.fsio import fsync_dir, rollback, write_all
from linemq.broker.storage.handles import HandleBudget
from linemq.broker.storage.index import (
    INDEX_ENTRY,
    SealedCache,
    SealedSegment,
    SegmentIndex,
    encode_entries,
    index_due,
)
from linemq.broker.storage.log_state import Active, Batch
from linemq.broker.storage.log_state import check_topic_name as check_topic_name
from linemq.broker.storage.records import Meta, Record, StorageError
from linemq.broker.storage.recovery import recover_last_segment
from linemq.broker.storage.retention import RetentionMixin, newest_record, sealed_sizes
from linemq.broker.storage.segment import (
    encode_header,
    encode_record,
    encode_run,
    idx_path,
    list_segments,
    log_path,
)
from linemq.broker.storage.segment_scan import LineScan, Report, read_segment
from linemq.broker.storage.tail_cache import TailCache
from linemq.broker.storage.time_index import TimeLookupMixin
from linemq.broker.storage.wal import frame_header

log = structlog.get_logger(__name__)

DEFAULT_SEGMENT_BYTES: Final = 64 * 1024 * 1024
DEFAULT_READ_BYTES: Final = 1 << 20
_OPEN_FLAGS: Final = os.O_RDWR | os.O_CLOEXEC


class TopicLog(RetentionMixin, TimeLookupMixin):
    """One topic's records, offsets counting from 1.

    ``first_offset`` is the base of the oldest segment; for a log that has never
    been written it is 1 while ``last_offset`` is 0, so [first, last] is empty.
    Retention and ``purge`` (see ``RetentionMixin``) raise ``first_offset``;
    ``last_offset`` only ever grows.
    """

    def __init__(
        self,
        topics_dir: pathlib.Path,
        name: str,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        damage: DamageReport | None = None,
        handles: HandleBudget | None = None,
    ) -> None:
        """No disk access: a topic's directory appears with its first write.

        With ``handles``, the active segment's files are closed while the topic is
        idle and others need the file descriptors (see ``release_handles``).
        """
        self.name = check_topic_name(name)
        self._dir = topics_dir / self.name
        self._segment_bytes = segment_bytes
        self.damage = damage if damage is not None else DamageReport()
        self._handles = handles
        self.handle_recent = False  # set by each write: see HandleBudget
        self._lock = threading.Lock()  # guards what readers and sync() share with the loop
        self._bases: list[int] = []
        self._active: Active | None = None
        self._last = 0
        self._written_last = 0
        self._meta_last = 0  # see meta_last_offset
        self._pending: list[Batch] = []
        self._unflushed: list[Batch] = []  # in the write-ahead log, not yet in a segment
        self._unflushed_bytes = 0
        self._name_bytes = self.name.encode()
        self._failing = False  # the last write to the segment failed
        self._tail = TailCache(1)
        self._sealed = SealedCache(self._dir, on_header_damage=self._header_damaged)
        self._unsynced_fds: list[int] = []  # sealed segments' fds, owned until fsynced
        self._unsynced_paths: set[pathlib.Path] = set()  # written, then closed by release_handles
        self._dirs_to_sync: set[pathlib.Path] = set()
        self._dirty = False
        self._closed = False
        self._sizes = {}  # base -> bytes of .log + .idx, all segments
        self._total = 0  # sum of _sizes, kept running so size_bytes never stats files
        self._newest_ts = {}  # sealed base -> ts of its last record
        self._active_ts: float | None = None  # ts of the active segment's last written record
        self._drops = 0  # bumped by each drop, so a read can tell segments vanished under it

    @classmethod
    def open(
        cls,
        topics_dir: pathlib.Path,
        name: str,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        damage: DamageReport | None = None,
        handles: HandleBudget | None = None,
    ) -> TopicLog:
        """Recover an existing topic by looking only at its last segment."""
        topic = cls(topics_dir, name, segment_bytes, damage, handles)
        if topic._dir.is_dir():
            topic._recover()
        return topic

    def _recover(self) -> None:
        bases = list_segments(self._dir)
        if not bases:
            return
        seg = recover_last_segment(self._dir, self.name, bases[-1])
        if seg.header_damage:
            self._header_damaged(seg.base, seg.header_damage)
        sizes = sealed_sizes(self._dir, bases[:-1])
        log_fd = os.open(log_path(self._dir, seg.base), _OPEN_FLAGS)
        idx_fd = os.open(idx_path(self._dir, seg.base), _OPEN_FLAGS | os.O_CREAT, 0o644)
        os.lseek(log_fd, seg.size, os.SEEK_SET)
        os.lseek(idx_fd, seg.idx_size, os.SEEK_SET)
        self._active = Active(
            seg.base, seg.header_end, log_fd, idx_fd, seg.size, seg.idx_size,
            seg.last_offset, seg.index, seg.version,
        )  # fmt: skip
        if self._handles is not None:
            self._handles.opened(self)
        self._bases = bases
        self._sizes = sizes
        self._sizes[seg.base] = seg.size + seg.idx_size
        self._total = sum(self._sizes.values())
        self._last = self._written_last = seg.last_offset
        self._meta_last = seg.last_offset  # not known without a scan: assume the worst
        self._tail = TailCache(seg.last_offset + 1)
        if seg.last_offset < seg.base and len(bases) > 1:
            self._written_last = self._readable_last(seg.last_offset)
        if seg.cut_records:  # records written whole, then damaged: their offsets stay used
            first, last = seg.last_offset + 1, seg.last_offset + seg.cut_records
            why = "failed its check: cut with the tail at start-up"
            self._record_report(seg.base)(seg.size, first, last, why)
            self.advance_to(last + 1, f"records {first}..{last} failed their check at the tail")
            return
        if seg.version < 2:  # never mix formats in one file: new lines go to a new segment
            if seg.last_offset >= seg.base:
                self._roll_empty(seg.last_offset + 1)
            else:
                self._rewrite_empty_header()

    def _readable_last(self, last: int) -> int:
        """The newest offset a read can serve, when the active segment holds no record.

        Readers that wait for ``written_offset`` to pass their position would
        otherwise wait on offsets whose records were damaged or lost (and read
        nothing, again and again): the next record written wakes them instead.
        """
        for base in reversed(self._bases[:-1]):
            try:
                rec = newest_record(log_path(self._dir, base))
            except OSError:
                continue
            if rec is not None:
                return min(rec.offset, last)
        return self._bases[0] - 1

    def _rewrite_empty_header(self) -> None:
        """An empty version-1 active segment gets a version-2 header in place."""
        seg = self._active
        assert seg is not None
        header = encode_header(seg.base)
        os.ftruncate(seg.log_fd, 0)
        os.lseek(seg.log_fd, 0, os.SEEK_SET)
        write_all(seg.log_fd, header)
        os.ftruncate(seg.idx_fd, 0)
        os.lseek(seg.idx_fd, 0, os.SEEK_SET)
        os.fsync(seg.log_fd)
        self._total += len(header) - seg.size - seg.idx_size
        self._sizes[seg.base] = len(header)
        seg.size = seg.header_end = len(header)
        seg.idx_size = 0
        seg.index = SegmentIndex()
        seg.version = 2

    # -- file handles ------------------------------------------------------------------------

    def release_handles(self) -> None:
        """Close the active segment's files while the topic is idle; the next write reopens
        them. Bytes not yet fsynced stay owed: ``sync`` fsyncs those files by path in its
        worker thread, so an eviction never waits for the disk on the event loop."""
        with self._lock:
            seg = self._active
            if seg is None or seg.log_fd < 0:
                return
            fds = (seg.log_fd, seg.idx_fd)
            seg.log_fd = seg.idx_fd = -1
            if self._dirty:
                self._dirty = False
                self._unsynced_paths.add(log_path(self._dir, seg.base))
                self._unsynced_paths.add(idx_path(self._dir, seg.base))
        for fd in fds:
            os.close(fd)

    def _reopen(self, seg: Active) -> None:
        """Reopen the active segment's files that ``release_handles`` closed."""
        log_fd = os.open(log_path(self._dir, seg.base), _OPEN_FLAGS)
        try:
            idx_fd = os.open(idx_path(self._dir, seg.base), _OPEN_FLAGS | os.O_CREAT, 0o644)
        except OSError:
            os.close(log_fd)
            raise
        os.lseek(log_fd, seg.size, os.SEEK_SET)
        os.lseek(idx_fd, seg.idx_size, os.SEEK_SET)
        with self._lock:
            seg.log_fd, seg.idx_fd = log_fd, idx_fd
        if self._handles is not None:
            self._handles.opened(self)

    # -- damage ------------------------------------------------------------------------------

    def _header_damaged(self, base: int, why: str) -> None:
        path = str(log_path(self._dir, base))
        self.damage.report(Damage(SEGMENT, path, 0, self.name, reason=why))

    def _record_report(self, base: int) -> Report:
        path = str(log_path(self._dir, base))

        def report(pos: int, first: int | None, last: int | None, why: str) -> None:
            self.damage.report(Damage(RECORD, path, pos, self.name, None, first, last, why))

        return report

    def advance_to(self, next_offset: int, reason: str) -> bool:
        """Make ``next_offset`` the next offset appended, if it is above ``last_offset + 1``.

        For a log that lost its tail while something kept a trace of the offsets it
        had handed out: they are never handed out again. The log rolls to an empty
        segment at ``next_offset`` (as a purge does), so a restart continues there,
        and the gap is reported once as lost offsets. Loop thread only, like ``write``.
        """
        first_lost = self._last + 1
        if next_offset <= first_lost:
            return False
        self.write()
        self._roll_empty(next_offset)
        with self._lock:
            self._last = next_offset - 1
            self._tail = TailCache(next_offset)
        where = str(log_path(self._dir, next_offset))
        lost = Damage(LOST_OFFSETS, where, 0, self.name, None, first_lost, next_offset - 1, reason)
        self.damage.report(lost)
        return True

    def continue_from(self, next_offset: int) -> None:
        """A new log under a deleted topic's name starts at ``next_offset`` (above every
        offset the deleted one handed out), with an empty segment there, as a purge leaves.
        Loop thread only, like ``write``."""
        if next_offset <= self._last + 1:
            return
        self.write()
        self._roll_empty(next_offset)
        with self._lock:
            self._last = self._written_last = next_offset - 1
            self._tail = TailCache(next_offset)

    @property
    def last_offset(self) -> int:
        return self._last

    @property
    def first_offset(self) -> int:
        return self._bases[0] if self._bases else 1

    @property
    def meta_last_offset(self) -> int:
        """The last offset appended with metadata (key, priority, delay, TTL, headers...),
        or higher: after a restart it is the last offset recovered. Records above it are
        plain, which lets a consumer group skip its scheduler for them."""
        return self._meta_last

    @property
    def written_offset(self) -> int:
        """The highest offset handed to the OS, i.e. what reads can see."""
        return self._written_last

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    @property
    def size_bytes(self) -> int:
        """Bytes of every segment's .log and .idx, from a running total (no file is touched),
        with the lines the write-ahead log holds for them."""
        return self._total + self._unflushed_bytes

    @property
    def segment_count(self) -> int:
        return len(self._bases)

    def loggable(self, limit: int) -> bool:
        """Whether the pending records go to the write-ahead log: fewer than ``limit`` bytes,
        only extending the active segment (a new topic's first records and a roll write
        their files at once, so segment files, their names and count are always current)."""
        pending = self._pending
        if not pending or self._active is None or self._failing:
            return False  # (a segment that cannot be written fails its publishes at once)
        if len(pending) == 1:  # nearly always: a commit's records, one batch
            batch = pending[0]
            return batch.nbytes < limit and not batch.new_segment
        if sum(b.nbytes for b in pending) >= limit:
            return False
        return not any(b.new_segment for b in pending)

    @property
    def unflushed_bytes(self) -> int:
        """Bytes in the write-ahead log that are not in a segment file yet (see ``flush``)."""
        return self._unflushed_bytes

    # -- appending ---------------------------------------------------------------------------

    def append(self, msg: str, ts: float, id: str, meta: Meta | None = None) -> Record:
        offset = self._last + 1
        line = encode_record(offset, id, ts, msg, meta)
        record = Record(offset, id, ts, msg, meta)
        self._place_one(self._pending[-1] if self._pending else None, line, record)
        self._last = offset
        if meta is not None:
            self._meta_last = offset
        return record

    def append_many(
        self, msgs: Sequence[str], ts: float, ids: Sequence[str], meta: Meta | None = None
    ) -> list[Record]:
        """Buffer records published together (pipelined publishes arrive in runs).

        The run is encoded and its records built first; then it is placed in the
        pending batch, in one step when it fits the segment (nearly always).
        """
        if len(msgs) == 1:  # a lone publish: the run's machinery would cost more
            return [self.append(msgs[0], ts, ids[0], meta)]
        first = self._last + 1
        lines = encode_run(first, ids, ts, msgs, meta)
        n = len(lines)
        records = list(map(Record, range(first, first + n), ids, repeat(ts, n), msgs, repeat(meta)))
        batch = self._pending[-1] if self._pending else self._batch_for_active(first)
        sizes = list(map(len, lines))
        if batch.start_size + batch.nbytes + sum(sizes) > self._segment_bytes:
            for line, record in zip(lines, records, strict=True):
                batch = self._place_one(batch, line, record)
        else:
            batch.add_run(lines, records, sizes)
        self._last = first + n - 1
        if meta is not None:
            self._meta_last = self._last
        return records

    def _place_one(self, batch: Batch | None, line: bytes, record: Record) -> Batch:
        """Add one record, in a new segment if it would not fit; returns the batch it is in."""
        if batch is None:
            batch = self._batch_for_active(record.offset)
        if batch.has_records and batch.start_size + batch.nbytes + len(line) > self._segment_bytes:
            batch = self._new_segment_batch(record.offset)
        batch.add(line, record)
        return batch

    def _batch_for_active(self, offset: int) -> Batch:
        if self._unflushed:  # the segment ends where the logged lines will end
            last = self._unflushed[-1]
            end = last.start_size + last.nbytes
            batch = Batch(last.base, False, end, last.last_index_pos, True)
            self._pending.append(batch)
            return batch
        seg = self._active
        if seg is None:
            return self._new_segment_batch(offset)
        batch = Batch(
            seg.base, False, seg.size, seg.index.last_position, seg.last_offset >= seg.base
        )
        self._pending.append(batch)
        return batch

    def _new_segment_batch(self, offset: int) -> Batch:
        header = encode_header(offset)
        batch = Batch(offset, True, 0, None, False, [header], len(header))
        self._pending.append(batch)
        return batch

    # -- writing -----------------------------------------------------------------------------

    def write_one(
        self, msg: str, ts: float, id: str, written: Callable[[], None] | None = None
    ) -> Record | None:
        """Append one plain record and hand it to the OS at once; None if this needs ``append``.

        A publisher that waits for each reply sends one record at a time, with
        nothing pending; this does for it what ``append`` and ``write`` do, without
        the batch they build for runs and segment rolls. ``written`` runs as ``write``'s
        does: once the OS has the record, before the bookkeeping.
        """
        seg = self._active
        if self._pending or self._unflushed or seg is None:
            return None
        if seg.log_fd < 0:
            self._reopen(seg)
        self.handle_recent = True
        offset = self._last + 1
        line = encode_record(offset, id, ts, msg)
        pos = seg.size
        if pos + len(line) > self._segment_bytes and seg.last_offset >= seg.base:
            return None  # the record opens a new segment
        positions = seg.index.positions
        due = index_due(pos, positions[-1] if positions else None)
        entries = INDEX_ENTRY.pack(offset, pos) if due else b""
        try:
            write_all(seg.log_fd, line)
            if entries:
                write_all(seg.idx_fd, entries)
        except OSError as exc:
            self._undo(seg.log_fd, seg.size, seg.idx_fd, seg.idx_size)
            log.error("topic_write_failed", topic=self.name, error=str(exc), records_dropped=1)
            self._failing = True  # until a write succeeds: see ``loggable``
            raise StorageError(str(exc)) from exc
        record = Record(offset, id, ts, msg)
        self._last = offset
        index = [(offset, pos)] if due else []
        self._commit(seg, [record], index, len(line), len(entries), written)
        return record

    def write(self, written: Callable[[], None] | None = None) -> bool:
        """Hand every pending record to the OS; on failure nothing of the failed batch remains.

        ``written`` runs once every pending byte is with the OS and before the last
        batch's bookkeeping: a lone publish's reply leaves without waiting for it.
        What the write-ahead log holds for the segments goes first (``flush``).
        """
        try:
            self.flush()
        except StorageError:
            self.drop_pending()
            raise
        batches, self._pending = self._pending, []
        last = batches[-1] if batches else None
        for batch in batches:
            if not batch.records:  # opened for the active segment, then rolled past at once
                continue
            then = written if batch is last else None
            try:
                if batch.new_segment:
                    self._write_new_segment(batch, then)
                else:
                    self._write_active(batch, then)
            except OSError as exc:
                log.error(
                    "topic_write_failed",
                    topic=self.name,
                    error=str(exc),
                    records_dropped=self._last - self._written_last,
                )
                self._last = self._written_last
                self._failing = True  # until a write succeeds: see ``loggable``
                raise StorageError(str(exc)) from exc
        if written is not None and (last is None or not last.records):
            written()  # the last batch wrote nothing: all there is already went out
        return True

    def _write_active(self, batch: Batch, written: Callable[[], None] | None = None) -> None:
        seg = self._active
        assert seg is not None and seg.base == batch.base and seg.size == batch.start_size
        if seg.log_fd < 0:
            self._reopen(seg)
        self.handle_recent = True
        entries = encode_entries(batch.index) if batch.index else b""  # one entry per ~4 KiB
        try:
            write_all(seg.log_fd, b"".join(batch.chunks))
            if entries:
                write_all(seg.idx_fd, entries)
        except OSError:
            self._undo(seg.log_fd, seg.size, seg.idx_fd, seg.idx_size)
            raise
        self._commit(
            seg, batch.records, batch.index, batch.nbytes, len(entries), written, batch.shown
        )

    def _undo(self, log_fd: int, size: int, idx_fd: int, idx_size: int) -> None:
        for fd, keep in ((log_fd, size), (idx_fd, idx_size)):
            try:
                rollback(fd, keep)
            except OSError as exc:  # the recovery scan is the last line of defence
                log.error("topic_rollback_failed", topic=self.name, error=str(exc))

    def _write_new_segment(self, batch: Batch, written: Callable[[], None] | None = None) -> None:
        if not self._dir.is_dir():
            self._dir.mkdir(parents=True, exist_ok=True)
            self._dirs_to_sync.update((self._dir.parent, self._dir.parent.parent))
        lpath, ipath = log_path(self._dir, batch.base), idx_path(self._dir, batch.base)
        fds: list[int] = []
        try:
            # O_TRUNC: a file at this base can only hold a failed earlier attempt.
            fds.append(os.open(lpath, _OPEN_FLAGS | os.O_CREAT | os.O_TRUNC, 0o644))
            fds.append(os.open(ipath, _OPEN_FLAGS | os.O_CREAT | os.O_TRUNC, 0o644))
            entries = encode_entries(batch.index)
            write_all(fds[0], b"".join(batch.chunks))
            write_all(fds[1], entries)
        except OSError:
            for fd in fds:
                os.close(fd)
            for path in (lpath, ipath):
                path.unlink(missing_ok=True)
            raise
        header_end = len(batch.chunks[0])
        seg = Active(batch.base, header_end, fds[0], fds[1], 0, 0, batch.base - 1, SegmentIndex())
        with self._lock:
            old = self._active
            if old is not None and old.log_fd >= 0:
                self._unsynced_fds += (old.log_fd, old.idx_fd)
            if old is not None:
                self._sealed.put(SealedSegment(old.base, old.header_end, old.index, old.version))
                if self._active_ts is not None:  # saves retention a read of its tail
                    self._newest_ts[old.base] = self._active_ts
            self._active = seg
            self._active_ts = None
            self._bases.append(seg.base)
            self._sizes[seg.base] = 0
            self._dirs_to_sync.add(self._dir)
        if self._handles is not None:
            self.handle_recent = True
            self._handles.opened(self)
        self._commit(
            seg, batch.records, batch.index, batch.nbytes, len(entries), written, batch.shown
        )

    def _roll_empty(self, base: int) -> None:
        """Start a header-only segment at ``base``: where a purged log's offsets go on."""
        header = encode_header(base)
        try:
            self._write_new_segment(Batch(base, True, 0, None, False, [header], len(header)))
        except OSError as exc:
            raise StorageError(str(exc)) from exc

    def _commit(
        self,
        seg: Active,
        records: list[Record],
        index: list[tuple[int, int]],
        nbytes: int,
        idx_bytes: int,
        written: Callable[[], None] | None = None,
        shown: bool = False,
    ) -> None:
        """Account for records (and index entries) the OS has; ``written`` first (see
        ``write``), and the accounting even if it raises. ``shown``: reads saw them
        already, from the write-ahead log (``logged``)."""
        try:
            if written is not None:
                written()
        finally:
            with self._lock:
                for offset, pos in index:
                    seg.index.add(offset, pos)
                seg.size += nbytes
                seg.idx_size += idx_bytes
                self._sizes[seg.base] += nbytes + idx_bytes
                self._total += nbytes + idx_bytes
                self._dirty = True
                self._failing = False
                if records:  # a purge's fresh segment is committed with its header only
                    seg.last_offset = records[-1].offset
                    self._active_ts = records[-1].ts
                    if not shown:
                        self._written_last = seg.last_offset
                        self._tail.extend(records)

    # -- the write-ahead log (wal.py): lines logged now, written to segments later -----------

    def wal_frame(self) -> list[bytes]:
        """The pending records as one frame of the write-ahead log: its header, then the
        lines the segments will get (``logged`` once it is written, ``drop_pending`` if not)."""
        chunks: list[bytes] = []
        first = nbytes = 0
        for batch in self._pending:  # never a new segment's: see ``loggable``
            if batch.records:
                first = first or batch.records[0].offset
                chunks += batch.chunks
                nbytes += batch.nbytes
        return [frame_header(self._name_bytes, first, self._last - first + 1, nbytes), *chunks]

    def logged(self) -> None:
        """The write-ahead log has the pending records: reads see them now, and they wait
        for ``flush`` (one write per segment however many commits logged them)."""
        batches, self._pending = self._pending, []
        unflushed = self._unflushed
        if len(batches) == 1 and unflushed:  # nearly always: more lines for the same write
            batch = batches[0]
            records = batch.records
            if records:
                self._unflushed_bytes += batch.nbytes
                unflushed[-1].absorb(batch)
                with self._lock:
                    self._written_last = records[-1].offset
                    self._tail.extend(records)
            return
        shown: list[Record] = []
        for batch in batches:
            if not batch.records:
                continue
            shown += batch.records
            self._unflushed_bytes += batch.nbytes
            if unflushed:  # the same segment: see ``loggable``
                unflushed[-1].absorb(batch)
            else:
                batch.shown = True
                batch.records = batch.records[-1:]
                unflushed.append(batch)
        if shown:
            with self._lock:
                self._written_last = shown[-1].offset
                self._tail.extend(shown)

    def drop_pending(self) -> None:
        """Forget the pending records (their write failed): their offsets are given out again."""
        first = next((b.records[0].offset for b in self._pending if b.records), 0)
        self._pending = []
        if first:
            self._last = first - 1

    def flush(self) -> bool:
        """Write what the write-ahead log holds to the segment files (loop thread, like
        ``write``); True if anything was written. On failure what was not written stays
        to be written again: the log still has it."""
        wrote = False
        while self._unflushed:
            batch = self._unflushed[0]
            try:
                self._write_active(batch)
            except OSError as exc:
                log.error("topic_flush_failed", topic=self.name, error=str(exc))
                self._failing = True  # until a write succeeds: see ``loggable``
                raise StorageError(str(exc)) from exc
            del self._unflushed[0]
            self._unflushed_bytes -= batch.nbytes
            wrote = True
        return wrote

    def restore(self, records: Sequence[tuple[bytes, Record]], last: int, reason: str) -> None:
        """Recovery: records the write-ahead log holds past this log's end, placed as appends
        place them (``write`` then writes them). Offsets missing before a record, and up to
        ``last`` (the last the log handed out), are never given out again (``advance_to``)."""
        batch = self._pending[-1] if self._pending else None
        for line, record in records:
            offset = record.offset
            if offset <= self._last:
                continue
            if offset > self._last + 1:
                self.advance_to(offset, reason)
                batch = None
            batch = self._place_one(batch, line, record)
            self._last = self._meta_last = offset
        if last > self._last:
            self.advance_to(last + 1, reason)

    def sync(self) -> None:
        """fsync what was written; safe in a worker thread while the loop appends and writes.

        It works on duplicated or handed-over fds, so a segment roll on the loop
        thread cannot close a descriptor under a running fsync.
        """
        fds: list[int] = []
        with self._lock:
            fds, self._unsynced_fds = self._unsynced_fds, []
            if self._active is not None and self._dirty and self._active.log_fd >= 0:
                fds += (os.dup(self._active.log_fd), os.dup(self._active.idx_fd))
                self._dirty = False
            dirs, self._dirs_to_sync = self._dirs_to_sync, set()
            paths, self._unsynced_paths = self._unsynced_paths, set()
        try:
            for path in sorted(paths):  # fsync covers the file, whichever fd wrote it
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue  # deleted by retention or a purge since
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            for fd in fds:
                os.fsync(fd)
            for d in sorted(dirs, key=lambda p: len(p.parts)):
                fsync_dir(d)
        except OSError as exc:
            log.error("topic_sync_failed", topic=self.name, error=str(exc))
            raise StorageError(f"fsync failed: {exc}") from exc
        finally:
            for fd in fds:
                os.close(fd)

    def close(self) -> None:
        """Write what is pending, fsync, release the fds; safe to call twice."""
        if self._closed:
            return
        try:
            self.write()
        finally:
            try:
                self.sync()
            finally:
                self._closed = True
                with self._lock:
                    seg, self._active = self._active, None
                if self._handles is not None:
                    self._handles.closed(self)
                if seg is not None and seg.log_fd >= 0:
                    os.close(seg.log_fd)
                    os.close(seg.idx_fd)

    # -- reading -----------------------------------------------------------------------------

    def read_cached(
        self, start_offset: int, max_count: int, max_bytes: int = DEFAULT_READ_BYTES
    ) -> list[Record] | None:
        """Serve from memory or say None; never blocks, so the loop can call it directly.

        Like ``read``, a start below ``first_offset`` (deleted) begins at ``first_offset``.
        """
        if max_count <= 0:
            return []
        with self._lock:
            return self._tail.get(max(start_offset, self.first_offset), max_count, max_bytes)

    def read(
        self, start_offset: int, max_count: int, max_bytes: int = DEFAULT_READ_BYTES
    ) -> list[Record]:
        """Written records from ``start_offset``; blocking file I/O, meant for a worker thread.

        Offsets below ``first_offset`` were deleted by retention or a purge, so a
        start there begins at ``first_offset``: readers get the oldest records that
        still exist. Segments dropped while this read runs are skipped the same
        way (never FileNotFoundError), and one result never jumps over a gap.
        """
        if max_count <= 0:
            return []
        with self._lock:
            start_offset = max(start_offset, self.first_offset)
            cached = self._tail.get(start_offset, max_count, max_bytes)
            if cached is not None:
                return cached
            i = max(bisect_right(self._bases, start_offset) - 1, 0)
            drops = self._drops
        out: list[Record] = []
        out_bytes = 0
        while True:
            with self._lock:
                if i >= len(self._bases):
                    return out
                base = self._bases[i]
                if out and self._drops != drops and base > out[-1].offset + 1:
                    return out  # what followed ``out`` was deleted under us
                seg = self._active
                limit: int | None = None  # a sealed segment's last offset is not known
                if seg is not None and seg.base == base:
                    end: int | None = seg.size
                    header_end, version = seg.header_end, seg.version
                    seek = seg.index.seek_point(start_offset)
                    limit = seg.last_offset
                else:
                    end = None
            try:
                if end is None:
                    sealed = self._sealed.get(base)
                    header_end, version = sealed.header_end, sealed.version
                    seek = sealed.index.seek_point(start_offset)
                scan = LineScan(base, version, limit, self._record_report(base))
                full, out_bytes = read_segment(
                    log_path(self._dir, base), scan, header_end, end, seek,
                    start_offset, max_count, max_bytes, out, out_bytes,
                )  # fmt: skip
            except FileNotFoundError:
                if self._has_segment(base):
                    raise
                self._sealed.discard(base)  # a reader may have cached it after the drop
            else:
                if full:
                    return out
            with self._lock:  # by base, not i += 1: a drop shifts the list's indexes
                i = bisect_right(self._bases, base)

    def _has_segment(self, base: int) -> bool:
        with self._lock:
            i = bisect_left(self._bases, base)
            return i < len(self._bases) and self._bases[i] == base

    def read_last(self, n: int) -> list[Record]:
        """The last ``n`` written records, or fewer if fewer still exist."""
        if n <= 0:
            return []
        with self._lock:
            cached = self._tail.last(n, self.first_offset)
            written = self._written_last
        if cached is not None:
            return cached
        start = max(written - n + 1, self.first_offset)
        return self.read(start, n, max_bytes=sys.maxsize)
