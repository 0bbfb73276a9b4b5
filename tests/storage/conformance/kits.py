"""The stores the conformance suite runs against: add a backend here and it runs every test.

A ``StoreKit`` opens a store (and, for a store that keeps data, opens it again over
the same data after ``close``). A kit gets the test's fixture request, so a store
that needs a server (PostgreSQL) starts it only when its kit runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from linemq.broker.storage.log_store import Store
from linemq.broker.storage.memory_store import MemoryStore
from linemq.broker.storage.store import FileStore


@dataclass
class StoreKit:
    name: str
    open: Callable[[], Store]
    reopen_skipped: str = ""  # why a store cannot be reopened over its data ("": it can)
    offsets_at_append: bool = True  # False: the store gives offsets when a commit settles


def _file_kit(request: pytest.FixtureRequest, tmp: Path) -> StoreKit:
    def open_() -> Store:
        store = FileStore(tmp / "data", segment_bytes=4096)  # small: rolls happen in tests
        store.open()
        return store

    return StoreKit("file", open_)


def _memory_kit(request: pytest.FixtureRequest, tmp: Path) -> StoreKit:
    return StoreKit("memory", MemoryStore, reopen_skipped="a memory store keeps nothing")


def _postgres_kit(request: pytest.FixtureRequest, tmp: Path) -> StoreKit:
    dsn = request.getfixturevalue("pg_cluster").create_database()

    def open_() -> Store:
        from linemq.broker.storage.postgres import PostgresStore

        store = PostgresStore(dsn)
        store.open()
        return store

    return StoreKit("postgresql", open_, offsets_at_append=False)


KITS: dict[str, Callable[[pytest.FixtureRequest, Path], StoreKit]] = {
    "file": _file_kit,
    "memory": _memory_kit,
    "postgresql": _postgres_kit,
}
