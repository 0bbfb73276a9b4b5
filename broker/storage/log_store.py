"""The seam between the broker and whatever keeps its topic logs.

``LogStore`` says what the broker needs of topic logs and nothing about how they
are kept: no files, no handles, no fsync. ``FileStore`` (segment files) and
``MemoryStore`` (for tests) implement it and pass the same conformance suite
(tests/storage/conformance/); a networked store (PostgreSQL) would too.

Appending is two steps, like statements and a commit: ``append``/``append_batch``
hand records over and give back a ``Ticket``, shared by every append until the
next ``commit``; the broker commits once per tick, so a store writes (or sends)
one batch however many publishes and topics it holds. The ticket resolves once
the batch is durable per the store's policy; a topic that could not be stored
has its error in it. Offsets count from 1 in each topic, without gaps, in the
order of the appends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol, runtime_checkable

from linemq.broker.storage.records import Meta, Record
from linemq.broker.storage.ticket import Appended, Ticket

READ_BYTES: Final = 1 << 20
"""What one read returns at most, by message text (the first record goes whatever its size)."""


@dataclass(slots=True)
class Commit:
    """What one ``commit`` stored, by topic, and the ticket its appends share."""

    ticket: Ticket
    written: dict[str, list[Record]] = field(default_factory=dict)
    failed: dict[str, list[Record]] = field(default_factory=dict)


@runtime_checkable
class LogStore(Protocol):
    """Topic logs: batched appends that resolve when durable, and reads by position."""

    @property
    def ticket(self) -> Ticket:
        """The ticket the next ``commit`` settles: what an append made now waits for."""
        ...

    def append(
        self,
        topic: str,
        msgs: Sequence[str],
        ts: float,
        ids: Sequence[str],
        meta: Meta | None = None,
    ) -> Appended:
        """Records for ``topic``, all with ``ts`` (and ``meta``); awaiting the result gives
        them with their offsets once committed and durable, or raises ``StorageError``."""
        ...

    def append_batch(
        self, batch: Mapping[str, Sequence[str]], ts: float, ids: Sequence[str]
    ) -> Ticket:
        """Plain records for many topics at once (``ids`` in the batch's order)."""
        ...

    def commit(self) -> Commit:
        """Store everything appended since the last commit, as one batch."""
        ...

    def last_offset(self, topic: str) -> int:
        """The last offset given out (appended, committed or not); 0 for a new topic."""
        ...

    def first_offset(self, topic: str) -> int:
        """The oldest offset still stored (1 for a new topic)."""
        ...

    def topics(self) -> list[str]: ...

    async def read(
        self, topic: str, start: int, max_count: int, max_bytes: int = READ_BYTES
    ) -> list[Record]:
        """Committed records from ``start`` (from the oldest one if ``start`` is below it)."""
        ...

    async def read_last(self, topic: str, n: int) -> list[Record]:
        """The last ``n`` committed records (fewer if fewer are stored)."""
        ...

    async def offset_at(self, topic: str, ts: float) -> int:
        """The first committed record with a ts at or after ``ts`` (one past the last
        committed record if there is none)."""
        ...

    def close(self) -> None: ...
