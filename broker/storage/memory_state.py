"""The broker's state besides topic logs, in memory: the ``StateStore`` seam for tests.

A log keeps the sealed lines a journal file would hold, and replays them with the
journal's own scanner (``scan_journal``), so entries come back as they would
from a file, in the same order and shape. ``write`` is what stores an entry:
what was only buffered when a test drops the log is lost, as a crash loses it.
Nothing survives the process, but the store outlives ``close``: a broker opened
again on the same ``MemoryStateStore`` finds its groups, replays and schedules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from linemq.broker.storage.buffered_log import BufferedLog, sealed
from linemq.broker.storage.damage import DamageReport
from linemq.broker.storage.journal import HEADER
from linemq.broker.storage.state_store import EventLog, OnPending, Valid, check_name

Key = tuple[str, ...]


@dataclass(slots=True)
class _Kept:
    """What the store holds of one log: its sealed lines, as one file would."""

    lines: list[bytes] = field(default_factory=list)
    size: int = 0

    def add(self, data: bytes) -> None:
        if not self.size:
            self.lines.append(HEADER)
            self.size = len(HEADER)
        self.lines.append(data)
        self.size += len(data)


class MemoryLog(BufferedLog[Key]):
    """One ``EventLog`` of a ``MemoryStateStore``."""

    def __init__(self, store: MemoryStateStore, key: Key) -> None:
        super().__init__(store, key)
        self._store = store

    @property
    def label(self) -> str:
        return "memory:" + "/".join(self._key)

    def replay_lines(self, valid: Valid | None = None) -> list[dict[str, object] | None]:
        kept = self._store.kept.setdefault(self._key, _Kept())  # as a file is made by opening
        return self._scan(b"".join(kept.lines), valid)

    def write(self) -> bool:
        if self._deleted:
            self._pending = []
        if not self._pending:
            return True
        data, self._pending = b"".join(self._pending), []
        self._store.kept.setdefault(self._key, _Kept()).add(data)
        return True

    def sync(self) -> None:
        """Written is kept: nothing more to do."""

    def rewrite_now(self, entries: list[dict[str, object]]) -> None:
        self.write()
        self._replace(entries)

    async def rewrite_off_loop(self, entries: list[dict[str, object]]) -> bool:
        """At once: nothing can be appended between the snapshot and the swap."""
        self.write()
        if self._closed or self._deleted:
            return False
        self._replace(entries)
        return True

    def _replace(self, entries: list[dict[str, object]]) -> None:
        kept = self._store.kept[self._key] = _Kept()
        kept.add(sealed(entries))
        self._damaged = 0

    def delete(self) -> None:
        self._store.kept.pop(self._key, None)
        self._deleted = self._closed = True
        self._pending = []

    def close(self) -> None:
        self._closed = True
        self.write()


class MemoryStateStore:
    """``StateStore`` in memory; see the module's docstring."""

    def __init__(self, damage: DamageReport | None = None) -> None:
        self.damage = DamageReport() if damage is None else damage
        self.kept: dict[Key, _Kept] = {}
        self._open: dict[Key, MemoryLog] = {}
        self._on_pending: OnPending | None = None
        self._marked: set[str] = set()

    def open(self, on_pending: OnPending) -> None:
        self._on_pending = on_pending

    def pending(self, log: EventLog) -> None:
        if self._on_pending is not None:
            self._on_pending(log)

    def _log(self, key: Key) -> MemoryLog:
        log = self._open[key] = MemoryLog(self, key)
        return log

    def groups(self) -> list[tuple[str, str]]:
        return sorted((k[1], k[2]) for k in self.kept if k[0] == "group")

    def group_log(self, topic: str, group: str) -> EventLog:
        return self._log(("group", check_name(topic), check_name(group)))

    def delete_group(self, topic: str, group: str) -> None:
        self._delete(("group", check_name(topic), check_name(group)))

    async def sync_deletes(self, topics: list[str]) -> None:
        """A deletion is kept as soon as it is made."""

    async def drop_topic(self, topic: str) -> None:
        """The group logs went one by one (``delete_group``): nothing else is kept."""

    def patterns_log(self) -> EventLog:
        return self._log(("patterns",))

    def replay_log(self, topic: str) -> EventLog:
        return self._log(("replay", check_name(topic)))

    def delete_replay(self, topic: str) -> None:
        self._delete(("replay", check_name(topic)))

    def schedules_log(self) -> EventLog:
        return self._log(("schedules",))

    def _delete(self, key: Key) -> None:
        log = self._open.pop(key, None)
        if log is not None:
            log.delete()
        self.kept.pop(key, None)

    def mark_dedup(self, topic: str) -> None:
        self._marked.add(check_name(topic))

    def dedup_topics(self) -> list[str]:
        return sorted(self._marked)

    def unmark_dedup(self, topic: str) -> None:
        self._marked.discard(check_name(topic))

    def close(self) -> None:
        for log in self._open.values():
            log.close()
