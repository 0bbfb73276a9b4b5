"""The store: the set of topic logs, behind an interface a networked backend could also fill."""

from __future__ import annotations

import pathlib
import threading
from typing import Protocol

import structlog

from broker.storage.topic_log import DEFAULT_SEGMENT_BYTES, TopicLog, check_topic_name

log = structlog.get_logger(__name__)


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


class FileStore:
    """Topic logs under ``<data_dir>/topics/<topic>/``."""

    def __init__(self, data_dir: pathlib.Path, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        if segment_bytes <= 0:
            raise ValueError("segment_bytes must be positive")
        self.data_dir = data_dir
        self.topics_dir = data_dir / "topics"
        self._segment_bytes = segment_bytes
        self._logs: dict[str, TopicLog] = {}
        self._lock = threading.Lock()  # topic() may be reached from worker threads too

    def open(self) -> None:
        """Recover every topic; each costs a look at its last segment, not its whole log."""
        self.topics_dir.mkdir(parents=True, exist_ok=True)
        for entry in sorted(self.topics_dir.iterdir()):
            if not entry.is_dir():
                continue
            try:
                name = check_topic_name(entry.name)
            except ValueError:
                log.warning("store_ignored_directory", path=str(entry))
                continue
            self._logs[name] = TopicLog.open(self.topics_dir, name, self._segment_bytes)
        log.info("store_opened", data_dir=str(self.data_dir), topics=len(self._logs))

    def topic(self, name: str) -> TopicLog:
        existing = self._logs.get(name)  # the per-publish path: no lock for a known topic
        if existing is not None:
            return existing
        with self._lock:
            existing = self._logs.get(name)
            if existing is not None:
                return existing
            created = TopicLog.open(self.topics_dir, name, self._segment_bytes)
            self._logs[name] = created
            return created

    def get(self, name: str) -> TopicLog | None:
        return self._logs.get(name)

    def topics(self) -> list[str]:
        return sorted(self._logs)

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
