"""The store: the set of topic logs, behind an interface a networked backend could also fill."""

from __future__ import annotations

import pathlib
import threading
from typing import Final, Protocol

import structlog

from linemq.broker.storage.damage import UNOPENABLE, Damage, DamageReport
from linemq.broker.storage.handles import HandleBudget, budget_for
from linemq.broker.storage.records import StorageError
from linemq.broker.storage.tombstones import load_floors, remove_directory, write_tombstone
from linemq.broker.storage.topic_log import DEFAULT_SEGMENT_BYTES, TopicLog, check_topic_name

log = structlog.get_logger(__name__)

TOPIC_FILES_SHARE: Final = 0.5  # of the open-files limit, for active segments' .log/.idx


class Store(Protocol):
    """What the broker needs from storage, and nothing about files."""

    def topic(self, name: str) -> TopicLog:
        """Open or create."""
        ...

    def get(self, name: str) -> TopicLog | None:
        """Existing topics only; never creates anything."""
        ...

    def topics(self) -> list[str]: ...

    def close(self) -> None: ...


class TopicUnavailable(StorageError, OSError):
    """A topic whose files could not be opened at start-up: left as they are, not served."""


class FileStore:
    """Topic logs under ``<data_dir>/topics/<topic>/``."""

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
