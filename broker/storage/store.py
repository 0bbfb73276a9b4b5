"""The file store: the set of topic logs under the data directory, behind ``log_store.Store``."""

from __future__ import annotations

import asyncio
import itertools
import pathlib
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final, Protocol

import structlog

from linemq.broker.storage.checkpoint import DIRECT_BYTES, Checkpointer, replay
from linemq.broker.storage.damage import UNOPENABLE, Damage, DamageReport
from linemq.broker.storage.handles import HandleBudget, budget_for
from linemq.broker.storage.log_store import READ_BYTES, Commit, Footprint
from linemq.broker.storage.records import Meta, Record, StorageError
from linemq.broker.storage.ticket import Appended, Ticket, failed_ticket
from linemq.broker.storage.tombstones import load_floors, remove_directory, write_tombstone
from linemq.broker.storage.topic_log import DEFAULT_SEGMENT_BYTES, TopicLog, check_topic_name
from linemq.broker.storage.wal import WAL_DIR

log = structlog.get_logger(__name__)

TOPIC_FILES_SHARE: Final = 0.5  # of the open-files limit, for active segments' .log/.idx


class TopicUnavailable(StorageError, OSError):
    """A topic whose files could not be opened at start-up: left as they are, not served."""


class Syncable(Protocol):
    """A file written to the OS that an fsync (in a worker thread) makes durable."""

    def sync(self) -> None: ...


SyncPolicy = Callable[[Sequence[Syncable], "Ticket | None"], None]
"""Told which files a commit wrote (``ticket``: the commit's: the write-ahead log, and
segments written directly) or a write-through wrote (``ticket`` None); it fsyncs them
per --fsync and resolves the ticket once that is done."""


def resolve_when_written(logs: Sequence[Syncable], ticket: Ticket | None) -> None:
    """The policy of a store used alone (tests, tools): written to the OS counts as durable."""
    if ticket is not None:
        ticket.resolve()


def as_storage_error(exc: Exception) -> StorageError:
    return exc if isinstance(exc, StorageError) else StorageError(str(exc))


class FileStore:
    """Topic logs under ``<data_dir>/topics/<topic>/``; implements ``log_store.Store``.

    With ``wal`` (the default) a commit's small appends go to the shared write-ahead
    log in one write and reach the segments later (checkpoint.py); without it each
    touched segment is written at once. Either way a log left by a crash is replayed.
    """

    def __init__(
        self,
        data_dir: pathlib.Path,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        damage: DamageReport | None = None,
        wal: bool = True,
    ) -> None:
        if segment_bytes <= 0:
            raise ValueError("segment_bytes must be positive")
        self.data_dir = data_dir
        self.topics_dir = data_dir / "topics"
        self.damage = damage if damage is not None else DamageReport()
        self._segment_bytes = segment_bytes
        self._logs: dict[str, TopicLog] = {}
        self._broken: dict[str, str] = {}  # topic -> why it could not be opened
        # Topic logs keep two files open each; idle ones close theirs past this budget.
        self.handles = HandleBudget(budget_for(TOPIC_FILES_SHARE, 2))
        self._lock = threading.Lock()  # topic() may be reached from worker threads too
        self._floors: dict[str, int] = {}  # deleted topics' next offsets (tombstones.py)
        self._deleting: set[str] = set()
        self.sync_policy: SyncPolicy = resolve_when_written
        self._ticket = Ticket()
        self._appended: dict[TopicLog, list[Record]] = {}  # since the last commit
        self._use_wal = wal
        self._wal: Checkpointer | None = None  # set by open

    def open(self) -> None:
        """Recover every topic; each costs a look at its last segment, not its whole log.

        A topic that cannot be opened (a later format, a file the OS refuses) is
        reported and left untouched on disk; every other topic is served.
        """
        self.topics_dir.mkdir(parents=True, exist_ok=True)
        self.handles.capacity = budget_for(TOPIC_FILES_SHARE, 2)  # the limit may have been raised
        self._floors = load_floors(self.data_dir)
        for entry in sorted(self.topics_dir.iterdir()):
            if not entry.is_dir():
                continue
            try:
                name = check_topic_name(entry.name)
            except ValueError:
                log.warning("store_ignored_directory", path=str(entry))
                continue
            try:
                self._logs[name] = self._open_log(name)
            except (OSError, StorageError, ValueError) as exc:
                self._broken[name] = str(exc)
                self.damage.report(Damage(UNOPENABLE, str(entry), topic=name, reason=str(exc)))
        folder = self.data_dir / WAL_DIR
        kept, seq = replay(folder, self.damage, self._log_for_replay, self._replay_failed)
        if self._use_wal:
            self._wal = Checkpointer(folder, kept)
            self._wal.wal.start(seq)
        log.info(
            "store_opened",
            data_dir=str(self.data_dir),
            topics=len(self._logs),
            unopenable=len(self._broken),
        )

    def _log_for_replay(self, name: str, last: int) -> TopicLog | bool:
        """The log to put a frame's records back into; False: they must not come back
        (a deleted topic's, a name no topic has); True: keep them for a later start."""
        if name in self._broken:
            return True
        existing = self._logs.get(name)
        if existing is not None:
            return existing
        try:
            check_topic_name(name)
        except ValueError:
            return False
        if last < self._floors.get(name, 1):  # a deleted topic's records
            return False
        try:
            return self.topic(name)
        except (OSError, StorageError) as exc:
            self._broken[name] = str(exc)
            return True

    def _replay_failed(self, topic_log: TopicLog, exc: Exception) -> None:
        """A topic that could not take the log's records is not served: they stay in it."""
        name = topic_log.name
        self._logs.pop(name, None)
        self._broken[name] = f"write-ahead log replay failed: {exc}"
        where = str(self.topics_dir / name)
        self.damage.report(Damage(UNOPENABLE, where, topic=name, reason=self._broken[name]))

    def _open_log(self, name: str) -> TopicLog:
        return TopicLog.open(self.topics_dir, name, self._segment_bytes, self.damage, self.handles)

    def unopenable(self) -> dict[str, str]:
        """Topics that could not be opened at start-up, and why."""
        return dict(self._broken)

    def topic(self, name: str) -> TopicLog:
        existing = self._logs.get(name)  # the per-publish path: no lock for a known topic
        if existing is not None:
            return existing
        with self._lock:
            existing = self._logs.get(name)
            if existing is not None:
                return existing
            if name in self._broken:
                raise TopicUnavailable(f"topic {name} could not be opened: {self._broken[name]}")
            if name in self._deleting:
                raise TopicUnavailable(f"topic {name} is being deleted")
            created = self._open_log(name)
            floor = self._floors.get(name)
            if floor is not None:  # a deleted topic's name: its offsets never come back
                created.continue_from(floor)
            self._logs[name] = created
            return created

    def get(self, name: str) -> TopicLog | None:
        return self._logs.get(name)

    def topics(self) -> list[str]:
        return sorted(self._logs)

    def detach(self, name: str) -> TopicLog | None:
        """Start deleting ``name``: it is no longer served, and cannot be made again until
        ``bury`` has removed its files. Nothing may append to the log returned."""
        with self._lock:
            self._deleting.add(name)
            detached = self._logs.pop(name, None)
        if detached is not None and self._wal is not None:
            self._wal.forget(detached)
        return detached

    def bury(self, name: str, topic_log: TopicLog | None) -> None:
        """Close a detached log, record its next offset, remove its files (blocking: a worker
        thread). A topic made later under ``name`` goes on from that offset."""
        try:
            next_offset = self._floors.get(name, 1)
            if topic_log is not None:
                topic_log.close()
                next_offset = max(next_offset, topic_log.last_offset + 1)
            if next_offset > 1:  # a topic that never held a message leaves no trace
                write_tombstone(self.data_dir, name, next_offset)
                with self._lock:
                    self._floors[name] = next_offset
            remove_directory(self.topics_dir, name)
        except OSError as exc:
            raise StorageError(f"could not delete topic {name}: {exc}") from exc
        finally:
            with self._lock:
                self._deleting.discard(name)
        log.warning("topic_files_deleted", topic=name, next_offset=next_offset)

    def pending_logs(self) -> list[TopicLog]:
        return [t for t in self._logs.values() if t.has_pending]

    # -- the log seam (see log_store.LogStore) -----------------------------------------------

    @property
    def ticket(self) -> Ticket:
        """The ticket the next ``commit`` settles: what an append made now waits for."""
        return self._ticket

    def append(
        self,
        topic: str,
        msgs: Sequence[str],
        ts: float,
        ids: Sequence[str],
        meta: Meta | None = None,
    ) -> Appended:
        """Buffer records for the next ``commit``; offsets are assigned now, in order."""
        try:
            log_ = self.topic(topic)
            records = log_.append_many(msgs, ts, ids, meta)
        except (OSError, StorageError, ValueError) as exc:
            log.error("append_failed", topic=topic, error=str(exc))
            return failed_ticket(topic, as_storage_error(exc))
        appended = self._appended.get(log_)
        if appended is None:
            self._appended[log_] = records[:]  # the Appended keeps its own list
        else:
            appended += records
        return Appended(topic, records, self._ticket)

    def append_batch(
        self, batch: Mapping[str, Sequence[str]], ts: float, ids: Sequence[str]
    ) -> Ticket:
        """Plain records for many topics (``ids`` in the batch's order): one call per read."""
        ticket, pending = self._ticket, self._appended
        start = 0
        for topic, msgs in batch.items():
            end = start + len(msgs)
            try:
                log_ = self.topic(topic)
                records = log_.append_many(msgs, ts, ids[start:end])
            except (OSError, StorageError, ValueError) as exc:
                log.error("append_failed", topic=topic, error=str(exc))
                ticket.failed(topic, as_storage_error(exc))
            else:
                appended = pending.get(log_)
                if appended is None:
                    pending[log_] = records
                else:
                    appended += records
            start = end
        return ticket

    def commit(self) -> Commit:
        """Write what was appended since the last commit, then the sync policy resolves
        the ticket: every topic's small appends in one write to the write-ahead log, and
        a topic with ``DIRECT_BYTES`` or more in one write to its own segment.

        A topic whose write fails keeps nothing of it (see ``TopicLog.write``) and has
        its error in the ticket; the other topics are written all the same.
        """
        appended, self._appended = self._appended, {}
        done = Commit(self._ticket)
        self._ticket = Ticket()
        wal = self._wal
        direct: list[Syncable] = []
        to_log: list[TopicLog] = []
        failed: dict[TopicLog, StorageError] = {}
        for log_ in appended:
            if wal is not None and log_.loggable(DIRECT_BYTES):
                to_log.append(log_)
                continue
            try:
                log_.write()
            except StorageError as exc:
                failed[log_] = exc
            else:
                direct.append(log_)
                if wal is not None:
                    wal.wrote(log_)
        if to_log:
            assert wal is not None
            try:
                wal.log(to_log)
            except StorageError as exc:
                log.error("wal_write_failed", error=str(exc), topics=len(to_log))
                for log_ in to_log:
                    log_.drop_pending()
                    failed[log_] = exc
            else:
                for log_ in to_log:
                    wal.logged(log_)
                direct.append(wal.wal)
        for log_, records in appended.items():
            error = failed.get(log_)
            if error is None:
                done.written[log_.name] = records
            else:
                done.ticket.failed(log_.name, error)
                done.failed[log_.name] = records
        self.sync_policy(direct, done.ticket)
        if wal is not None:
            wal.maybe_checkpoint()
        return done

    def write_through(
        self, topic: str, msg: str, ts: float, id: str, written: Callable[[], None]
    ) -> Record | None:
        """Write one plain record at once, ``written`` called as soon as the OS has it; None
        when it must take ``append`` (nothing known of the topic, appends pending, a roll)."""
        log_ = self._logs.get(topic)
        if log_ is None or log_ in self._appended:
            return None
        wal = self._wal
        if wal is not None and log_.unflushed_bytes and not wal.flush(log_):
            return None
        try:
            record = log_.write_one(msg, ts, id, written)
        except (OSError, StorageError, ValueError) as exc:
            raise as_storage_error(exc) from exc
        if record is not None:
            if wal is not None:
                wal.wrote(log_)
            self.sync_policy([log_], None)
        return record

    def _on_disk(self, log_: TopicLog) -> None:
        """Before a read of ``log_``'s segment files: they get what the write-ahead log has."""
        if self._wal is not None:
            self._wal.flush_before_read(log_)

    def last_offset(self, topic: str) -> int:
        log_ = self._logs.get(topic)
        return 0 if log_ is None else log_.last_offset

    def first_offset(self, topic: str) -> int:
        log_ = self._logs.get(topic)
        return 1 if log_ is None else log_.first_offset

    async def read(
        self, topic: str, start: int, max_count: int, max_bytes: int = READ_BYTES
    ) -> list[Record]:
        log_ = self._logs.get(topic)
        if log_ is None:
            return []
        cached = log_.read_cached(start, max_count, max_bytes)
        if cached is not None:
            return cached
        self._on_disk(log_)
        return await asyncio.to_thread(log_.read, start, max_count, max_bytes)

    async def read_last(self, topic: str, n: int) -> list[Record]:
        log_ = self._logs.get(topic)
        if log_ is None:
            return []
        self._on_disk(log_)
        return await asyncio.to_thread(log_.read_last, n)

    async def offset_at(self, topic: str, ts: float) -> int:
        log_ = self._logs.get(topic)
        if log_ is None:
            return 1
        self._on_disk(log_)
        return await asyncio.to_thread(log_.offset_at, ts)

    def footprint(self, topic: str) -> Footprint:
        log_ = self._logs.get(topic)
        return Footprint() if log_ is None else Footprint(log_.size_bytes, log_.segment_count)

    # -- upkeep (see log_store.LogUpkeep): whole sealed segments, unlinked off the loop ---

    async def expire(
        self, topic: str, max_bytes: int | None, max_age: float | None, now: float
    ) -> int:
        log_ = self._logs.get(topic)
        if log_ is None:
            return 0
        self._on_disk(log_)
        result = log_.apply_retention(max_bytes, max_age, now, delete=False)
        if result.paths:
            await asyncio.to_thread(log_.delete_files, list(result.paths))
        return result.records

    async def drop_before(
        self, topic: str, floor: int, now: float, max_age: float | None = None
    ) -> int:
        log_ = self._logs.get(topic)
        if log_ is None:
            return 0
        self._on_disk(log_)
        by_size = None if max_age else 0  # 0 bytes allowed: every sealed segment is a candidate
        candidates = await asyncio.to_thread(log_.expired_segments, by_size, max_age, now)
        prefix = list(itertools.takewhile(lambda s: s.last_offset < floor, candidates))
        if not prefix:
            return 0
        result = log_.drop_segments(prefix)
        if result.paths:
            await asyncio.to_thread(log_.delete_files, list(result.paths))
        return result.records

    async def purge(self, topic: str) -> int:
        log_ = self._logs.get(topic)
        if log_ is None:
            return 0
        self._on_disk(log_)
        result = log_.purge_segments()
        await asyncio.to_thread(log_.delete_files, list(result.paths))
        return result.records

    def delete_topics(self, names: Sequence[str]) -> Awaitable[None]:
        """Detach now; the awaitable buries them in worker threads (tombstone, then files)."""
        detached = [(name, self.detach(name)) for name in names]

        async def bury() -> None:
            for name, topic_log in detached:
                await asyncio.to_thread(self.bury, name, topic_log)

        return bury()

    def skip_to(self, topic: str, next_offset: int, reason: str) -> bool:
        log_ = self._logs.get(topic)
        return log_ is not None and log_.advance_to(next_offset, reason)

    def close(self) -> None:
        """Close every log (each writes and fsyncs what it holds), then drop the
        write-ahead log: an older broker reads the data dir as it finds it."""
        if self._wal is None:
            self._close_logs()
        else:
            self._wal.close(self._close_logs)

    def _close_logs(self) -> None:
        """Close every log, reporting the first failure only after trying them all."""
        first: BaseException | None = None
        for t in list(self._logs.values()):
            try:
                t.close()
            except Exception as exc:
                log.error("store_close_failed", topic=t.name, error=str(exc))
                first = first or exc
        if first is not None:
            raise first
