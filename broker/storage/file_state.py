"""The broker's state besides topic logs, as journal files under the data directory.

The layout (unchanged since these were files chosen by the code that used them):

- ``groups/<topic>/<group>.journal``: each consumer group's events;
- ``groups/.patterns.journal``: wildcard group registrations (``_patterns.journal``
  in linemq 0.1.0, moved once by ``migrate_patterns``);
- ``replays/<topic>.journal``: what was replayed or removed from ``<topic>.dlq``;
- ``.schedules``: the repeatable jobs;
- ``dedup/<topic>``: an empty marker per topic that ever stored publisher ids.

A leading dot marks every name the store makes itself: no topic or group name
can have one, so no client input makes a path outside its own folder. Logs are
``Journal`` objects (journal.py): their descriptors share one ``OpenFiles`` bound,
and their fsync follows ``--fsync`` (``sync_each_write`` for ``always``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import structlog

from linemq.broker.protocol.names import is_valid_name
from linemq.broker.storage.damage import DamageReport
from linemq.broker.storage.fsio import fsync_dir
from linemq.broker.storage.journal import Journal, OpenFiles
from linemq.broker.storage.records import StorageError
from linemq.broker.storage.state_store import EventLog, OnPending, check_name

log = structlog.get_logger(__name__)

GROUPS_DIR: Final = "groups"
REPLAYS_DIR: Final = "replays"
DEDUP_DIR: Final = "dedup"
SCHEDULES_FILE: Final = ".schedules"
SUFFIX: Final = ".journal"
PATTERNS_FILE: Final = ".patterns.journal"
OLD_PATTERNS_FILE: Final = "_patterns.journal"  # linemq 0.1.0: in the folder of topic names


class FileStateStore:
    """``StateStore`` on journal files; nothing touches the disk before ``open``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        sync_each_write: bool = False,
        damage: DamageReport | None = None,
        fd_limit: int | None = None,
    ) -> None:
        """``sync_each_write``: ``--fsync always`` (a rewrite fsyncs what it copies too)."""
        self.data_dir = data_dir
        self.groups_dir = data_dir / GROUPS_DIR
        self.replays_dir = data_dir / REPLAYS_DIR
        self.dedup_dir = data_dir / DEDUP_DIR
        self._sync_each_write = sync_each_write
        self._damage = damage
        self._fd_limit = fd_limit
        self.files = OpenFiles(16 if fd_limit is None else fd_limit)
        self._on_pending: OnPending | None = None
        self._groups: dict[tuple[str, str], Journal] = {}
        self._replays: dict[str, Journal] = {}
        self._others: dict[str, Journal] = {}  # the patterns' and schedules' logs
        self._marked: set[str] = set()

    def open(self, on_pending: OnPending) -> None:
        """Without an ``fd_limit``, journals get a share of the open-files limit as it
        is now (the broker raises it at start, after building its stores)."""
        self._on_pending = on_pending
        if self._fd_limit is None:
            self.files.limit = journal_fd_limit()
        migrate_patterns(self.groups_dir)

    def _journal(self, path: Path) -> Journal:
        return Journal(
            path,
            self._on_pending,
            sync_each_write=self._sync_each_write,
            files=self.files,
            damage=self._damage,
        )

    # -- groups ----------------------------------------------------------------------

    def groups(self) -> list[tuple[str, str]]:
        return [(topic, group) for topic, group, _ in _group_journals(self.groups_dir)]

    def group_log(self, topic: str, group: str) -> EventLog:
        path = self.groups_dir / check_name(topic) / (check_name(group) + SUFFIX)
        journal = self._groups[(topic, group)] = self._journal(path)
        return journal

    def delete_group(self, topic: str, group: str) -> None:
        journal = self._groups.get((topic, group))
        if journal is None:
            path = self.groups_dir / check_name(topic) / (check_name(group) + SUFFIX)
            journal = self._journal(path)
        journal.delete()  # first: if the file cannot go, the store still knows the log
        self._groups.pop((topic, group), None)

    async def sync_deletes(self, topics: list[str]) -> None:
        for topic in sorted(set(topics)):
            folder = self.groups_dir / check_name(topic)
            try:
                await asyncio.to_thread(_sync_folder, folder)
            except OSError as exc:
                raise StorageError(str(exc)) from exc

    async def drop_topic(self, topic: str) -> None:
        try:
            await asyncio.to_thread(_settle_folder, self.groups_dir / check_name(topic))
        except OSError as exc:
            raise StorageError(str(exc)) from exc

    # -- patterns, replays, schedules --------------------------------------------------

    def patterns_log(self) -> EventLog:
        # A leading dot: no topic name can make it (groups/<topic>/ are topics' folders).
        journal = self._others[PATTERNS_FILE] = self._journal(self.groups_dir / PATTERNS_FILE)
        return journal

    def replay_log(self, topic: str) -> EventLog:
        journal = self._replays[topic] = self._journal(self._replay_path(topic))
        return journal

    def delete_replay(self, topic: str) -> None:
        journal = self._replays.get(topic)
        if journal is not None:
            journal.delete()
            del self._replays[topic]
            return
        try:
            self._replay_path(topic).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(str(exc)) from exc

    def _replay_path(self, topic: str) -> Path:
        return self.replays_dir / (check_name(topic) + SUFFIX)

    def schedules_log(self) -> EventLog:
        journal = self._others[SCHEDULES_FILE] = self._journal(self.data_dir / SCHEDULES_FILE)
        return journal

    # -- dedup markers ---------------------------------------------------------------

    def mark_dedup(self, topic: str) -> None:
        if topic in self._marked:
            return
        marker = self.dedup_dir / check_name(topic)
        if not marker.exists():
            self.dedup_dir.mkdir(parents=True, exist_ok=True)
            marker.touch()
        self._marked.add(topic)

    def dedup_topics(self) -> list[str]:
        if not self.dedup_dir.is_dir():
            return []
        return sorted(p.name for p in self.dedup_dir.iterdir() if p.is_file())

    def unmark_dedup(self, topic: str) -> None:
        self._marked.discard(topic)
        with contextlib.suppress(OSError):  # a stale marker only costs a start-up read
            (self.dedup_dir / check_name(topic)).unlink(missing_ok=True)

    def close(self) -> None:
        journals = [*self._groups.values(), *self._replays.values(), *self._others.values()]
        errors = []
        for journal in journals:
            try:
                journal.close()
            except StorageError as exc:  # the others still get their last write
                errors.append(exc)
        if errors:
            raise errors[0]


@dataclass(frozen=True, slots=True)
class StateFile:
    """One journal of the layout, as ``linemq verify`` checks it."""

    path: Path
    kind: Literal["patterns", "group", "replay", "schedules"]
    topic: str | None = None
    group: str | None = None


def state_files(data_dir: Path) -> Iterator[StateFile]:
    """Every journal under ``data_dir`` in a stable order (names no topic or group can
    have are left out: nothing the broker wrote)."""
    groups_dir = data_dir / GROUPS_DIR
    for name in (PATTERNS_FILE, OLD_PATTERNS_FILE):
        if (groups_dir / name).is_file():
            yield StateFile(groups_dir / name, "patterns")
    for topic, group, path in _group_journals(groups_dir):
        yield StateFile(path, "group", topic, group)
    for path in _entries(data_dir / REPLAYS_DIR):
        topic = path.name.removesuffix(SUFFIX)
        if path.name.endswith(SUFFIX) and is_valid_name(topic):
            yield StateFile(path, "replay", topic)
    if (data_dir / SCHEDULES_FILE).is_file():
        yield StateFile(data_dir / SCHEDULES_FILE, "schedules")


def _group_journals(groups_dir: Path) -> Iterator[tuple[str, str, Path]]:
    """(topic, group, path) of every group journal, sorted."""
    for topic_dir in _entries(groups_dir):
        if topic_dir.is_dir() and is_valid_name(topic_dir.name):
            for path in _entries(topic_dir):
                group = path.name.removesuffix(SUFFIX)
                if path.name.endswith(SUFFIX) and is_valid_name(group):
                    yield topic_dir.name, group, path


def _entries(directory: Path) -> list[Path]:
    return sorted(directory.iterdir()) if directory.is_dir() else []


def migrate_patterns(groups_dir: Path) -> None:
    """Move the pattern journal of an earlier release to its new name, once."""
    old, new = groups_dir / OLD_PATTERNS_FILE, groups_dir / PATTERNS_FILE
    if old.is_file() and not new.exists():
        os.replace(old, new)
        log.info("patterns_journal_moved", old=str(old), new=str(new))


def _sync_folder(folder: Path) -> None:
    """Make the journals' removal durable (no folder: nothing of the topic's groups was
    ever written, so nothing is left to remove)."""
    if folder.is_dir():
        fsync_dir(folder)


def _settle_folder(folder: Path) -> None:
    """Make the journals' removal durable; the topic's group folder goes if it is empty."""
    if not folder.is_dir():
        return
    fsync_dir(folder)
    with contextlib.suppress(OSError):  # not empty: a group made again meanwhile
        os.rmdir(folder)
        fsync_dir(folder.parent)


def journal_fd_limit() -> int:
    """A quarter of the open-files limit for journals: the rest is for segments and sockets."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(16, min(1024, soft // 4))
