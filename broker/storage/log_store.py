"""The seam between the broker and whatever keeps its topic logs.

``LogStore`` says what the broker needs of topic logs and nothing about how they
are kept: no files, no handles, no fsync. ``FileStore`` (segment files),
``MemoryStore`` (for tests) and ``PostgresStore`` implement it and pass the same
conformance suite (tests/storage/conformance/).

Appending is two steps, like statements and a commit: ``append``/``append_batch``
hand records over and give back a ``Ticket``, shared by every append until the
next ``commit``; the broker commits once per tick, so a store writes (or sends)
one batch however many publishes and topics it holds. The ticket resolves once
the batch is durable per the store's policy; a topic that could not be stored
has its error in it. Offsets count from 1 in each topic, without gaps, in the
order of the appends. A store may give them at ``append`` (the file and memory
stores) or only when the commit settles (a database several nodes share): callers
read them from the resolved ``Appended``, never from a record still pending.

A store says what a commit stored when it knows (``Commit``): the file and memory
stores at once, a database once it has answered. The broker sends subscribers and
groups only what the store says it stored, each topic's records in offset order
(engine/commit_order.py), so a record whose commit failed is never delivered.

What is in the seam:

- appends and the commit (above); the topics there are (``topics``, ``topic``
  opens or creates one, ``get`` never creates);
- ``TopicView``: one topic's positions (first, last given, written, last with
  metadata) and the recent records the store keeps in memory, all answered
  without waiting. Group and fanout delivery read it on every pump, so it must
  cost what reading an attribute costs: a store hands out one long-lived object
  per topic and keeps it current, never a snapshot built per call;
- reads that may wait: by offset, the last n, by time (``read``, ``read_last``,
  ``offset_at``). A read serves what the view's ``written_offset`` covers;
- ``LogUpkeep``, the store's side of retention, ``CLEAN``, ``PURGE`` and
  ``DELETE``: dropping the oldest records, deleting a topic for good (its name
  never gives out an old offset again), and moving a log past offsets a crash
  lost. Each says what it dropped; what follows from that for groups (they skip
  what is gone) stays above the seam.

What is deliberately not:

- how records are kept, made durable or found (segments, indexes, fsync, the
  handle budget, damage reports): each store's own business. The file store's
  fsync is driven by ``--fsync`` through ``FileStore.sync_policy`` and its
  write-through shortcut for a lone publish (``FileStore.write_through``) is an
  optional capability the composition root uses where it built a ``FileStore``;
  neither fits a store that answers later.
- group, pattern, replay and schedule logs and the dedup markers: the broker's
  state besides its logs is the state seam's (state_store.py), with its own file
  and memory stores, so a store of logs and a store of state can be chosen apart
  (``linemq serve --store`` keeps both in PostgreSQL: postgres_state.py).
- when retention runs and how much a topic may keep: policy, decided above.

``PostgresStore`` gives offsets at commit (the database numbers the records);
tests/later_store.py ``at_commit`` runs a whole broker on a memory store that does.
Not yet: the views are answered from one node's memory, so a node does not see
records another node wrote (postgres.py says what that leaves).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

from linemq.broker.storage.records import Meta, Record
from linemq.broker.storage.ticket import Appended, Ticket

READ_BYTES: Final = 1 << 20
"""What one read returns at most, by message text (the first record goes whatever its size)."""


class Commit:
    """What one ``commit`` stored, by topic, and the ticket its appends share.

    A store that knows at once what it stored (files, memory) fills ``written`` and
    ``failed`` before ``commit`` returns: the commit is ``settled``. One that knows
    later (a database) returns it unsettled, naming in ``topics`` the topics it
    carries (``written`` and ``failed`` name no others), and calls ``settle`` once
    they are final, before it resolves the ticket. Each topic's view moves with its
    settled commits, in commit order: a topic's later commit that settles first shows
    nothing until the earlier ones have settled, and the broker dispatches it then.
    """

    __slots__ = ("_callbacks", "failed", "settled", "ticket", "topics", "written")

    def __init__(self, ticket: Ticket, topics: Collection[str] | None = None) -> None:
        """``topics``: what an unsettled commit carries (None: settled, known at once)."""
        self.ticket = ticket
        self.written: dict[str, list[Record]] = {}
        self.failed: dict[str, list[Record]] = {}
        self.topics: Collection[str] = () if topics is None else topics
        self.settled = topics is None
        self._callbacks: list[Callable[[Commit], None]] = []

    def on_settled(self, callback: Callable[[Commit], None]) -> None:
        """Call ``callback`` once ``written`` and ``failed`` are final (now if they are)."""
        if self.settled:
            callback(self)
        else:
            self._callbacks.append(callback)

    def settle(self) -> None:
        """The store: ``written`` and ``failed`` are final."""
        if self.settled:
            return
        self.settled = True
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)


@dataclass(frozen=True, slots=True)
class Footprint:
    """What a topic takes in its store: bytes, and in how many parts it is kept and
    dropped (segments for the file store; what ``STATS`` shows as ``segments``)."""

    bytes: int = 0
    parts: int = 0


class TopicView(Protocol):
    """One topic as delivery reads it while dispatching; nothing here waits or does I/O.

    Offsets: ``first_offset`` the oldest still stored (1 for a new topic; raised by
    drops, never lowered), ``last_offset`` the last given out (appended, committed or
    not), ``written_offset`` the last a read can see (what was dispatched), and
    ``meta_last_offset`` the last appended with metadata, or higher: records above it
    are plain, which lets a group skip its scheduler for them. A store that gives
    offsets at commit moves ``last_offset`` and ``meta_last_offset`` then.
    """

    @property
    def first_offset(self) -> int: ...
    @property
    def last_offset(self) -> int: ...
    @property
    def written_offset(self) -> int: ...
    @property
    def meta_last_offset(self) -> int: ...

    def read_cached(
        self, start_offset: int, max_count: int, max_bytes: int = READ_BYTES
    ) -> list[Record] | None:
        """Written records from ``start_offset`` (from ``first_offset`` if below it) if the
        store holds them in memory, else None: then ``LogStore.read`` reads them. ``[]``
        when nothing is written from there."""
        ...


@runtime_checkable
class LogUpkeep(Protocol):
    """Dropping records: retention, ``CLEAN``, ``PURGE``, ``DELETE``, a lost tail.

    Drops go from the oldest end only, in the units the store keeps (whole segments
    for the file store), so what remains is a contiguous range: a drop may keep more
    than asked, never less. Offsets never go back, whatever is dropped.
    """

    async def expire(
        self, topic: str, max_bytes: int | None, max_age: float | None, now: float
    ) -> int:
        """Retention: drop the oldest records while the topic holds more than
        ``max_bytes`` (by ``footprint``), and those older than ``max_age`` seconds;
        returns how many records went."""
        ...

    async def drop_before(
        self, topic: str, floor: int, now: float, max_age: float | None = None
    ) -> int:
        """Drop the oldest records below offset ``floor`` (with ``max_age``: only those
        older than that too), keeping the newest record; returns how many went."""
        ...

    async def purge(self, topic: str) -> int:
        """Drop every record of ``topic``; its offsets go on. Returns how many went."""
        ...

    def delete_topics(self, names: Sequence[str]) -> Awaitable[None]:
        """Stop serving ``names`` at once (an append to one fails until it is gone), and
        return what to await for their removal to be durable. A topic made again under
        one of the names goes on above every offset the deleted one gave out."""
        ...

    def skip_to(self, topic: str, next_offset: int, reason: str) -> bool:
        """Give out no offset below ``next_offset`` in ``topic`` (records the store lost
        while something outside it kept their offsets); True if the log moved."""
        ...


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
        them with their offsets once committed and durable, or raises ``StorageError``.
        Their ids and ts are final now; their offsets may be given only at commit."""
        ...

    def append_batch(
        self, batch: Mapping[str, Sequence[str]], ts: float, ids: Sequence[str]
    ) -> Ticket:
        """Plain records for many topics at once (``ids`` in the batch's order)."""
        ...

    def commit(self) -> Commit:
        """Store everything appended since the last commit, as one batch; the ``Commit``
        says what was stored, at once or (unsettled) when the store knows."""
        ...

    def last_offset(self, topic: str) -> int:
        """The last offset given out (appended, committed or not; for a store that gives
        offsets at commit, the last committed); 0 for a new topic."""
        ...

    def first_offset(self, topic: str) -> int:
        """The oldest offset still stored (1 for a new topic)."""
        ...

    def topics(self) -> list[str]: ...

    def topic(self, name: str) -> TopicView:
        """Open or create ``name`` (a new topic holds nothing until its first commit, and
        counts in ``topics`` from now on); ``StorageError`` if it cannot be served
        (``ValueError`` for a name no topic may have: callers check names first)."""
        ...

    def get(self, name: str) -> TopicView | None:
        """An existing topic's view; never creates anything."""
        ...

    def footprint(self, topic: str) -> Footprint:
        """What ``topic`` takes now, read from memory (for ``STATS``)."""
        ...

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


def offsets_at_commit(store: object) -> bool:
    """Whether ``store`` gives offsets only when a commit settles (its class says so with
    ``offsets_at_commit = True``): then ``last_offset`` counts no record still pending."""
    return bool(getattr(store, "offsets_at_commit", False))


@runtime_checkable
class Store(LogStore, LogUpkeep, Protocol):
    """All the broker asks of the store it runs on: the log seam and its upkeep."""
