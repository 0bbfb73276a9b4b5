"""What the memory and PostgreSQL event logs share: the journal's line format kept
somewhere other than a file.

Entries are sealed journal lines, buffered until the tick's ``write`` hands them to
the store; replay reads what the store holds with the journal's own scanner
(``scan_journal``), so entries come back as they would from a file and a damaged
line costs that line. How lines are stored and read back is each store's own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping
from typing import Generic, Protocol, TypeVar, cast

import orjson

from linemq.broker.storage.checksum import seal
from linemq.broker.storage.damage import JOURNAL_LINE, Damage, DamageReport
from linemq.broker.storage.journal import scan_journal
from linemq.broker.storage.state_store import EventLog, Valid

K = TypeVar("K", bound=Hashable)


def sealed(entries: list[dict[str, object]]) -> bytes:
    """``entries`` as the journal lines a snapshot is made of."""
    return b"".join(seal(orjson.dumps(e)) for e in entries)


class Sized(Protocol):
    @property
    def size(self) -> int: ...


class Holder(Protocol[K]):
    """The store a log belongs to, as its logs see it."""

    damage: DamageReport

    @property
    def kept(self) -> Mapping[K, Sized]: ...

    def pending(self, log: EventLog) -> None: ...


class BufferedLog(ABC, Generic[K]):
    def __init__(self, store: Holder[K], key: K) -> None:
        self._holder = store
        self._key = key
        self._pending: list[bytes] = []
        self._closed = False
        self._deleted = False
        self._damaged = 0

    @property
    @abstractmethod
    def label(self) -> str: ...

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    @property
    def size(self) -> int:
        kept = self._holder.kept.get(self._key)
        return 0 if kept is None else kept.size

    @property
    def needs_rewrite(self) -> bool:
        return self._damaged > 0

    def exists(self) -> bool:
        return self._key in self._holder.kept

    def replay(self, valid: Valid | None = None) -> list[dict[str, object]]:
        return [e for e in self.replay_lines(valid) if e is not None]

    @abstractmethod
    def replay_lines(self, valid: Valid | None = None) -> list[dict[str, object] | None]: ...

    def _scan(self, data: bytes, valid: Valid | None) -> list[dict[str, object] | None]:
        """The entries of ``data`` (journal bytes, header first); damaged lines reported."""
        scan = scan_journal(data, valid)
        self._damaged = len(scan.damaged)
        for position, reason in scan.damaged:
            self._holder.damage.report(Damage(JOURNAL_LINE, self.label, position, reason=reason))
        return scan.entries

    def append(self, entry: dict[str, object]) -> None:
        self.append_line(seal(orjson.dumps(entry)))

    def append_line(self, line: bytes) -> None:
        if not self._pending:
            self._holder.pending(cast(EventLog, self))  # a subclass is one
        self._pending.append(line)
