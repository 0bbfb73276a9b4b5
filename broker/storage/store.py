"""The file store: the set of topic logs under the data directory, behind ``log_store.Store``."""

from __future__ import annotations

import asyncio
import itertools
import pathlib
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final

import structlog

from linemq.broker.storage.damage import UNOPENABLE, Damage, DamageReport
from linemq.broker.storage.handles import HandleBudget, budget_for
from linemq.broker.storage.log_store import READ_BYTES, Commit, Footprint
from linemq.broker.storage.records import Meta, Record, StorageError
from linemq.broker.storage.ticket import Appended, Ticket, failed_ticket
from linemq.broker.storage.tombstones import load_floors, remove_directory, write_tombstone
from linemq.broker.storage.topic_log import DEFAULT_SEGMENT_BYTES, TopicLog, check_topic_name

log = structlog.get_logger(__name__)

TOPIC_FILES_SHARE: Final = 0.5  # of the open-files limit, for active segments' .log/.idx


class TopicUnavailable(StorageError, OSError):
    """A topic whose files could not be opened at start-up: left as they are, not served."""


SyncPolicy = Callable[[list[TopicLog], "Ticket | None"], None]
"""Told which logs a commit wrote (``ticket``: the commit's) or a write-through wrote
(``ticket`` None); it fsyncs them per --fsync and resolves the ticket once that is done."""


def resolve_when_written(logs: list[TopicLog], ticket: Ticket | None) -> None:
    """The policy of a store used alone (tests, tools): written to the OS counts as durable."""
    if ticket is not None:
        ticket.resolve()


def as_storage_error(exc: Exception) -> StorageError:
    return exc if isinstance(exc, StorageError) else StorageError(str(exc))


class FileStore:
    """Topic logs under ``<data_dir>/topics/<topic>/``; implements ``log_store.Store``."""

    def __init__(
        self,
        data_dir: pathlib.Path,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        damage: DamageReport | None = None,
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
        log.info(
            "store_opened",
            data_dir=str(self.data_dir),
            topics=len(self._logs),
            unopenable=len(self._broken),
        )

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
            return self._logs.pop(name, None)

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
            self._appended[log_] = records
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
        """Write what was appended since the last commit: one write per touched segment
        file, however many appends and topics; then the sync policy resolves the ticket.

        A topic whose write fails keeps nothing of it (see ``TopicLog.write``) and has
        its error in the ticket; the other topics are written all the same.
        """
        appended, self._appended = self._appended, {}
        done = Commit(self._ticket)
        self._ticket = Ticket()
        logs: list[TopicLog] = []
        for log_, records in appended.items():
            try:
                log_.write()
            except StorageError as exc:
                done.ticket.failed(log_.name, exc)
                done.failed[log_.name] = records
            else:
                done.written[log_.name] = records
                logs.append(log_)
        self.sync_policy(logs, done.ticket)
        return done

    def write_through(
        self, topic: str, msg: str, ts: float, id: str, written: Callable[[], None]
    ) -> Record | None:
        """Write one plain record at once, ``written`` called as soon as the OS has it; None
        when it must take ``append`` (nothing known of the topic, appends pending, a roll)."""
        log_ = self._logs.get(topic)
        if log_ is None or log_ in self._appended:
            return None
        try:
            record = log_.write_one(msg, ts, id, written)
        except (OSError, StorageError, ValueError) as exc:
            raise as_storage_error(exc) from exc
        if record is not None:
            self.sync_policy([log_], None)
        return record

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
        return await asyncio.to_thread(log_.read, start, max_count, max_bytes)

    async def read_last(self, topic: str, n: int) -> list[Record]:
        log_ = self._logs.get(topic)
        return [] if log_ is None else await asyncio.to_thread(log_.read_last, n)

    async def offset_at(self, topic: str, ts: float) -> int:
        log_ = self._logs.get(topic)
        return 1 if log_ is None else await asyncio.to_thread(log_.offset_at, ts)

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
