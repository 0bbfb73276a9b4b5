"""The seam between the broker and whatever keeps its small, changing state.

Topic logs are ``LogStore``'s (log_store.py). Everything else the broker keeps is
small and rewritten often: each consumer group's events (cursor, in flight,
acked...), the durable wildcard registrations, each dead-letter topic's replay
records, the repeatable schedules, and which topics ever used publisher ids.
``StateStore`` names that state by what it is and hands out an ``EventLog`` for
each; nothing here says files, paths or fsync. ``FileStateStore`` (journal files
under the data directory, file_state.py) and ``MemoryStateStore`` (for tests,
memory_state.py) implement it and pass the same conformance suite
(tests/storage/conformance/test_state_*.py).

An ``EventLog`` is the journal the delivery code replays on start and appends to
while it runs. Entries are JSON objects; the hot paths hand over lines already
encoded and sealed (``checksum.seal``), so a store keeps or sends them as they
are. Appends are buffered: a log tells the store's ``on_pending`` (given to
``open``) when it goes from nothing buffered to something, the engine's tick then
``write``s each such log once, and ``sync``s what was written per ``--fsync``
(a store that is durable once written makes ``sync`` a no-op). Replay gives the
entries in append order; a damaged entry is reported (the store's damage report)
and replayed as ``None``, never fatal. ``rewrite_now``/``rewrite_off_loop``
replace a log by a snapshot, with appends made meanwhile kept after it.

Names: topics and groups reach the store checked already (protocol/names.py);
a store refuses any other with ``ValueError``, so no client input can name
something outside the state it means.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from linemq.broker.protocol.names import is_valid_name

Valid = Callable[[dict[str, object]], bool]
"""The owner's check that a JSON object is one of its entries (others count as damage)."""


@runtime_checkable
class EventLog(Protocol):
    """One piece of state as a log of JSON entries: appended, replayed, compacted."""

    @property
    def label(self) -> str:
        """What logs and damage reports call this log (a path, for a file)."""
        ...

    @property
    def has_pending(self) -> bool:
        """Entries are buffered that ``write`` has not handed to the store yet."""
        ...

    @property
    def size(self) -> int:
        """Bytes the log holds now (its owner compacts it when it grows)."""
        ...

    @property
    def needs_rewrite(self) -> bool:
        """The last replay found damage or an older format: the owner should write a
        fresh snapshot (``rewrite_now``)."""
        ...

    def exists(self) -> bool:
        """Whether the store holds this log at all (read, written, and not deleted)."""
        ...

    def replay(self, valid: Valid | None = None) -> list[dict[str, object]]:
        """Every intact entry, in append order (damaged ones reported and skipped)."""
        ...

    def replay_lines(self, valid: Valid | None = None) -> list[dict[str, object] | None]:
        """Every entry in append order, ``None`` where one was damaged (reported)."""
        ...

    def append(self, entry: dict[str, object]) -> None: ...

    def append_line(self, line: bytes) -> None:
        """Entries the caller encoded and sealed (``checksum.seal``), one or more lines."""
        ...

    def write(self) -> bool:
        """Hand what is buffered to the store, as one write (the tick calls it); raises
        ``StorageError`` (the entries are dropped). False: not now (a rewrite is
        finishing); ``on_pending`` is told again once it can."""
        ...

    def sync(self) -> None:
        """Make what was written durable (``StorageError`` if it cannot be)."""
        ...

    def rewrite_now(self, entries: list[dict[str, object]]) -> None:
        """Replace the log by ``entries`` at once, durably (start-up: migration, repair)."""
        ...

    async def rewrite_off_loop(self, entries: list[dict[str, object]]) -> bool:
        """Replace the log by ``entries`` (the state up to now, buffered entries included)
        while appends go on; what is appended meanwhile follows the snapshot. False if
        the log was closed or deleted meanwhile."""
        ...

    def delete(self) -> None:
        """Gone for good, at once: buffered and later appends are dropped."""
        ...

    def close(self) -> None:
        """Write and sync what is buffered; the store keeps the log."""
        ...


OnPending = Callable[[EventLog], None]


@runtime_checkable
class DedupMarkers(Protocol):
    """Which topics ever stored publisher ids: start-up reloads only those (engine/dedup.py)."""

    def mark_dedup(self, topic: str) -> None:
        """``topic`` stores publisher ids from now on (cheap when already marked)."""
        ...

    def dedup_topics(self) -> list[str]:
        """Every marked topic, sorted."""
        ...

    def unmark_dedup(self, topic: str) -> None:
        """``topic`` was deleted: nothing of its ids is left to reload."""
        ...


@runtime_checkable
class StateStore(DedupMarkers, Protocol):
    """The broker's state besides topic logs, as event logs named by what they hold."""

    def open(self, on_pending: OnPending) -> None:
        """Start handing out logs: each tells ``on_pending`` when it goes from nothing
        buffered to something, so the tick writes just those."""
        ...

    def groups(self) -> list[tuple[str, str]]:
        """(topic, group) of every group log the store holds, sorted."""
        ...

    def group_log(self, topic: str, group: str) -> EventLog:
        """The log of ``group`` on ``topic`` (empty for a new group)."""
        ...

    def delete_group(self, topic: str, group: str) -> None:
        """The group's log is gone at once (``sync_deletes`` makes that durable)."""
        ...

    async def sync_deletes(self, topics: list[str]) -> None:
        """Make the group deletions of ``topics`` so far durable (``StorageError``)."""
        ...

    async def drop_topic(self, topic: str) -> None:
        """``topic`` was deleted with its groups: make that durable, and let go of
        anything the store kept for the topic's groups (``StorageError``)."""
        ...

    def patterns_log(self) -> EventLog:
        """The durable wildcard group registrations."""
        ...

    def replay_log(self, topic: str) -> EventLog:
        """What was replayed (and removed) from ``<topic>.dlq``."""
        ...

    def delete_replay(self, topic: str) -> None:
        """``<topic>.dlq`` was deleted: its replay log goes, opened or not."""
        ...

    def schedules_log(self) -> EventLog:
        """The repeatable jobs (``SCHEDULE``)."""
        ...

    def close(self) -> None:
        """Write and sync every log still open; the store keeps them."""
        ...


def check_name(name: str) -> str:
    """``name`` if a topic or group may have it, else ``ValueError``."""
    if not is_valid_name(name):
        raise ValueError(f"not a topic or group name: {name!r}")
    return name
