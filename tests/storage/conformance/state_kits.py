"""The state stores the state conformance suite runs against (storage/state_store.py).

A ``StateKit`` opens a store over its data and opens it again as a restarted
broker would: the file store from its folder, the memory store as the same
object (it outlives ``close``: it is the data). ``Opened`` plays the engine's
part: it collects the logs that said they have something buffered and writes and
syncs them at each ``tick``, as the commit tick does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from linemq.broker.storage.damage import DamageReport
from linemq.broker.storage.file_state import FileStateStore
from linemq.broker.storage.memory_state import MemoryStateStore
from linemq.broker.storage.state_store import EventLog, StateStore


@dataclass
class Opened:
    """A store opened with the tick's bookkeeping."""

    store: StateStore
    dirty: dict[EventLog, None] = field(default_factory=dict)
    told: int = 0  # how many times a log said it went from nothing buffered to something

    def __post_init__(self) -> None:
        self.store.open(self._pending)

    def _pending(self, log: EventLog) -> None:
        self.told += 1
        self.dirty[log] = None

    def tick(self) -> None:
        """Write each dirty log once, then make it durable (``--fsync always``)."""
        while self.dirty:
            dirty, self.dirty = self.dirty, {}
            for log in dirty:
                assert log.write()
                log.sync()


@dataclass
class StateKit:
    name: str
    make: Callable[[], StateStore]
    """A store over the kit's data: the same data each call."""
    damage: DamageReport
    path_of: Callable[[EventLog], Path] | None = None
    """Where a log keeps its bytes, for a store whose data a test can damage."""

    def open(self) -> Opened:
        return Opened(self.make())


def _file_kit(request: pytest.FixtureRequest, tmp: Path) -> StateKit:
    damage = DamageReport()

    def make() -> StateStore:
        return FileStateStore(tmp / "data", sync_each_write=True, damage=damage, fd_limit=4)

    return StateKit("file", make, damage, path_of=lambda log: Path(log.label))


def _memory_kit(request: pytest.FixtureRequest, tmp: Path) -> StateKit:
    damage = DamageReport()
    store = MemoryStateStore(damage)
    return StateKit("memory", lambda: store, damage)


def _postgres_kit(request: pytest.FixtureRequest, tmp: Path) -> StateKit:
    from linemq.broker.storage.postgres_state import PostgresStateStore

    dsn = request.getfixturevalue("pg_cluster").create_database()
    damage = DamageReport()
    opened: list[PostgresStateStore] = []

    def make() -> StateStore:
        store = PostgresStateStore(dsn, damage)
        opened.append(store)
        return store

    def close_all() -> None:  # the stores a test "crashed" (never closed): let go of them
        for store in opened:
            store.stop()

    request.addfinalizer(close_all)
    return StateKit("postgresql", make, damage)


STATE_KITS: dict[str, Callable[[pytest.FixtureRequest, Path], StateKit]] = {
    "file": _file_kit,
    "memory": _memory_kit,
    "postgresql": _postgres_kit,
}
