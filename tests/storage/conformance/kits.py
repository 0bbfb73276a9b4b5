"""The stores the conformance suite runs against: add a backend here and it runs every test.

A ``StoreKit`` opens a store (and, for a store that keeps data, opens it again over
the same data after ``close``). A PostgreSQL store joins by adding a kit to ``KITS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from linemq.broker.storage.log_store import LogStore
from linemq.broker.storage.memory_store import MemoryStore
from linemq.broker.storage.store import FileStore


@dataclass
class StoreKit:
    name: str
    open: Callable[[], LogStore]
    reopen_skipped: str = ""  # why a store cannot be reopened over its data ("": it can)


def _file_kit(tmp: Path) -> StoreKit:
    def open_() -> LogStore:
        store = FileStore(tmp / "data", segment_bytes=4096)  # small: rolls happen in tests
        store.open()
        return store

    return StoreKit("file", open_)


def _memory_kit(tmp: Path) -> StoreKit:
    return StoreKit("memory", MemoryStore, reopen_skipped="a memory store keeps nothing")


KITS: dict[str, Callable[[Path], StoreKit]] = {"file": _file_kit, "memory": _memory_kit}
