"""Topic logs in PostgreSQL: the ``LogStore`` seam over one database (preview).

One statement per ``commit`` stores every record the tick appended, for all its
topics: the records travel as arrays (``unnest``), and the same statement moves
each topic's ``next_offset`` row, so the offsets in the database are gap-free
and the batch is one implicit transaction, one round trip, however many
messages. The ticket resolves after PostgreSQL has committed it (with a
synchronous standby and ``synchronous_commit=on``, after the standby has it).

Database work runs on one thread of its own with a plain psycopg connection, in
order: nothing blocks the event loop, and commits settle in the order they were
made. A read returns what the topic's view shows written (settled), never a
record of a commit still in flight.

Where the seam does not fit a networked store, and what this store does instead:

- ``commit()`` returns its ``Commit`` unsettled, and settles it once PostgreSQL
  has answered: the broker dispatches a record only then, and never one the
  database did not store. Offsets are given by the database, in that statement:
  each topic's row is moved under its row lock and the records take the offsets
  it had (``RETURNING``), so any number of writers share one gap-free sequence.
  A record has offset 0 until its commit settles; the broker reads offsets from
  the resolved ``Appended``. When a topic's batch fails (database gone) its
  publishers get the error through the ticket and nothing of it is delivered;
  nothing appended after it is affected, as no offset was given. Each topic's
  view (``written_offset``, ``last_offset``, the cached records, reads) moves
  when a commit settles, so it shows only what the database stored.
- ``last_offset``, ``first_offset``, ``topics`` and each topic's view are
  synchronous, answered from that cache; right for one node only. A view's cached
  records are what this node stored lately (a ``TailCache``), so groups and fanout
  deliver them without a query; older records come from the database.
- Drops (``LogUpkeep``) are DELETEs from the oldest offset (postgres_upkeep.py);
  a deleted topic's row stays, marked, so its name goes on above its old offsets.
  Bytes per topic (``footprint``) are summed once at ``open``, then kept.
- ``close()`` is synchronous: it waits for queued commits on the database thread.

For several nodes the seam must change further: ``last_offset``/``topics`` async
or a tailed view of the database (this node's view does not see another's
records), ``open``/``close`` async. Until then ``linemq serve
--store`` opens the store ``exclusive``: one node per database (postgres_node.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import orjson
import psycopg

from linemq.broker.storage import postgres_upkeep as upkeep
from linemq.broker.storage.appends import AppendBuffer
from linemq.broker.storage.log_store import READ_BYTES, Commit, Footprint
from linemq.broker.storage.postgres_node import (
    StoreInUseError,
    replication_warnings,
    take_node_lock,
)
from linemq.broker.storage.postgres_schema import migrate
from linemq.broker.storage.records import Meta, Record, StorageError
from linemq.broker.storage.tail_cache import TailCache
from linemq.broker.storage.ticket import Ticket

T = TypeVar("T")
Conn = psycopg.Connection[tuple[Any, ...]]
Job = Callable[[], None]
_Sent = tuple[str, "_Log", list[Record], int]  # a topic's records in a commit, its floor

# Stores a batch for many topics in one statement, giving the offsets: each topic's row
# moves on by its count under the row lock, its records take the offsets it had, and each
# topic's first offset comes back. ``floor``: no offset below this node's next one (a
# topic new to the database starts there; a ``skip_to`` whose own write failed holds).
_STORE = """
WITH want(topic, floor, n) AS (
    SELECT * FROM unnest(%(topics)s::text[], %(floors)s::bigint[], %(counts)s::bigint[])
), moved AS (
    INSERT INTO linemq_topic AS t (topic, next_offset)
    SELECT topic, floor + n FROM want
    ON CONFLICT (topic) DO UPDATE
        SET next_offset = greatest(
                t.next_offset + (SELECT w.n FROM want AS w WHERE w.topic = excluded.topic),
                excluded.next_offset),
            deleted = false
    RETURNING t.topic, t.next_offset
), firsts AS (
    SELECT m.topic, m.next_offset - w.n AS first FROM moved AS m JOIN want AS w USING (topic)
), stored AS (
    INSERT INTO linemq_record (topic, "offset", id, ts, msg, meta)
    SELECT r.topic, f.first + r.i, r.id, r.ts, r.msg, r.meta::jsonb
    FROM unnest(%(r_topic)s::text[], %(r_index)s::bigint[], %(r_id)s::text[],
                %(r_ts)s::float8[], %(r_msg)s::text[], %(r_meta)s::text[])
         AS r(topic, i, id, ts, msg, meta)
    JOIN firsts AS f USING (topic)
)
SELECT topic, first FROM firsts
"""
# Each topic's counter, oldest offset and bytes of text (a scan at open, once), and
# deleted names, whose offsets go on if the name comes back.
_TOPICS = """
SELECT t.topic, t.next_offset,
       (SELECT min("offset") FROM linemq_record AS r WHERE r.topic = t.topic),
       (SELECT coalesce(sum(length(r.msg)), 0) FROM linemq_record AS r WHERE r.topic = t.topic),
       t.deleted
FROM linemq_topic AS t
"""
_COLUMNS = 'SELECT "offset", id, ts, msg, meta FROM linemq_record'
_BASE_KEYS = {"id": "", "o": 0, "ts": 0, "msg": ""}  # what Meta.decode expects beside its own


class _Log:
    """One topic's offsets and what this node sent of it lately; also its ``TopicView``."""

    __slots__ = (
        "bytes", "first_offset", "last", "meta_last_offset", "pending", "tail", "written",
    )  # fmt: skip

    def __init__(self, last: int = 0, first: int | None = None, nbytes: int = 0) -> None:
        self.last = last  # the last offset the database gave this node (or skip_to passed)
        self.pending: list[Record] = []
        self.first_offset = last + 1 if first is None else first
        self.written = last  # the last offset the database stored (and this node dispatched)
        self.meta_last_offset = last  # not known without a scan: assume the worst
        self.tail = TailCache(last + 1)  # what this node sent lately, for delivery
        self.bytes = nbytes  # of the stored records' text

    @property
    def last_offset(self) -> int:
        return self.last

    @property
    def written_offset(self) -> int:
        return self.written

    def read_cached(
        self, start_offset: int, max_count: int, max_bytes: int = READ_BYTES
    ) -> list[Record] | None:
        if max_count <= 0:
            return []
        return self.tail.get(max(start_offset, self.first_offset), max_count, max_bytes)

    def stored(self, records: list[Record], first: int) -> None:
        """The database stored ``records`` from offset ``first`` on: they take their
        offsets (nobody has seen them yet) and become readable."""
        nbytes = 0
        for offset, record in enumerate(records, first):
            record.offset = offset
            nbytes += len(record.msg)
            if record.meta is not None:
                self.meta_last_offset = offset
        if first != self.tail.next_offset:  # another writer took the offsets between
            self.tail = TailCache(first)
        self.tail.extend(records)
        self.written = records[-1].offset
        self.last = max(self.last, self.written)
        self.bytes += nbytes

    def dropped(self, first: int, nbytes: int) -> None:
        self.first_offset = max(self.first_offset, first)
        self.tail.drop_before(self.first_offset)
        self.bytes = max(0, self.bytes - nbytes)


class PostgresStore(AppendBuffer[_Log]):
    """Implements ``LogStore`` on PostgreSQL; ``open()`` before use, from a running loop."""

    offsets_at_commit = True  # records carry offset 0 until the database stores them

    def __init__(self, dsn: str, *, exclusive: bool = False) -> None:
        """``exclusive``: hold the node lock (postgres_node.py) for as long as the store is
        open, so that no second node serves the database meanwhile."""
        self.dsn = dsn
        self.exclusive = exclusive
        self.warnings: list[str] = []  # what the server's settings leave an OK unpromised
        super().__init__(_Log)
        self._in_flight = 0  # commits sent and not settled yet
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: Conn | None = None

    def open(self) -> None:
        """Connect, create or migrate the schema, and load each topic's counter.

        Raises ``StorageError`` (``SchemaTooNewError`` for a newer schema) with a message
        a user can act on.
        """
        try:
            conn = self._connect()
            migrate(conn)
            rows = conn.execute(_TOPICS).fetchall()
            self.warnings = replication_warnings(conn)
        except psycopg.Error as exc:
            self.close()
            raise StorageError(f"storage unavailable: {exc}") from exc
        except StorageError:
            self.close()
            raise
        for topic, next_offset, first, nbytes, deleted in rows:
            if deleted:
                self._floors[topic] = next_offset
            else:
                self._logs[topic] = _Log(next_offset - 1, first or next_offset, nbytes)
        self._thread = threading.Thread(target=self._run, name="linemq-postgres", daemon=True)
        self._thread.start()

    def _connect(self) -> Conn:
        """The store's connection; a new one after a loss holds the node lock again before
        anything is written on it (or fails like a lost database)."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            conn = psycopg.connect(self.dsn, autocommit=True)
            if self.exclusive:
                try:
                    take_node_lock(conn)
                except StoreInUseError as exc:
                    conn.close()
                    if self._thread is None:  # opening: say so as such
                        raise
                    raise psycopg.OperationalError(str(exc)) from exc
            self._conn = conn
        return self._conn

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def commit(self) -> Commit:
        """Send what was appended since the last commit as one statement. The commit
        settles, and then its ticket resolves, once PostgreSQL has answered: ``written``
        is what it stored, ``failed`` what it did not."""
        touched, self._touched = self._touched, {}
        batch: list[_Sent] = []
        for topic, log in touched.items():
            if log.pending:
                batch.append((topic, log, log.pending, log.last + 1))
                log.pending = []
        done = Commit(self._ticket, [sent[0] for sent in batch] if batch else None)
        self._ticket = Ticket()
        if not batch and not self._in_flight:
            done.ticket.resolve()
            return done
        loop = asyncio.get_running_loop()
        self._in_flight += 1
        if not batch:  # nothing to store; the ticket still resolves after the earlier ones
            self._jobs.put(lambda: self._answer(loop, done, [], {}, None))
        else:
            self._jobs.put(lambda: self._store(loop, done, batch))
        return done

    def _store(self, loop: asyncio.AbstractEventLoop, done: Commit, batch: list[_Sent]) -> None:
        """On the database thread: one statement for the batch, then the ticket on the loop."""
        r_topic: list[str] = []
        r_index: list[int] = []
        r_id: list[str] = []
        r_ts: list[float] = []
        r_msg: list[str] = []
        r_meta: list[str | None] = []
        for topic, _, records, _ in batch:
            r_topic += [topic] * len(records)
            r_index += range(len(records))
            for r in records:
                r_id.append(r.id)
                r_ts.append(r.ts)
                r_msg.append(r.msg)
                r_meta.append(None if r.meta is None else orjson.dumps(r.meta.encode()).decode())
        params = {
            "topics": [sent[0] for sent in batch],
            "floors": [sent[3] for sent in batch],
            "counts": [len(sent[2]) for sent in batch],
            "r_topic": r_topic,
            "r_index": r_index,
            "r_id": r_id,
            "r_ts": r_ts,
            "r_msg": r_msg,
            "r_meta": r_meta,
        }
        error: StorageError | None = None
        firsts: dict[str, int] = {}
        try:
            firsts = dict(self._connect().execute(_STORE, params).fetchall())
        except psycopg.Error as exc:  # the outcome is unknown if the connection went
            error = StorageError(f"storage unavailable: {exc}")
        self._answer(loop, done, batch, firsts, error)

    def _answer(
        self,
        loop: asyncio.AbstractEventLoop,
        done: Commit,
        batch: list[_Sent],
        firsts: dict[str, int],
        error: StorageError | None,
    ) -> None:
        """On the database thread: settle the commit on the loop (``_settle``)."""
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(self._settle, done, batch, firsts, error)

    def _settle(
        self,
        done: Commit,
        batch: list[_Sent],
        firsts: dict[str, int],
        error: StorageError | None,
    ) -> None:
        """On the loop: the topics stored take their offsets, become readable and are
        ``written``; the others fail. Then the commit settles, and its ticket."""
        self._in_flight -= 1
        ticket = done.ticket
        for topic, log, records, _ in batch:
            first = firsts.get(topic)
            if first is None:
                done.failed[topic] = records
                ticket.failed(topic, error or StorageError("storage unavailable: not stored"))
                continue
            log.stored(records, first)
            if self._logs.get(topic) is log:
                done.written[topic] = records
            # else deleted meanwhile: stored, and gone with the topic
        done.settle()
        ticket.resolve()

    def footprint(self, topic: str) -> Footprint:
        """Bytes of message text (summed at ``open``, then kept); no segments."""
        log = self._logs.get(topic)
        return Footprint() if log is None else Footprint(log.bytes, 0)

    async def _query(self, work: Callable[[Conn], T]) -> T:
        """``work`` on the database thread, after every commit queued before it."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def job() -> None:
            try:
                future.set_result(work(self._connect()))
            except psycopg.Error as exc:
                future.set_exception(StorageError(f"storage unavailable: {exc}"))
            except BaseException as exc:
                future.set_exception(exc)

        self._jobs.put(job)
        return await asyncio.wrap_future(future)

    async def read(
        self, topic: str, start: int, max_count: int, max_bytes: int = READ_BYTES
    ) -> list[Record]:
        log = self._logs.get(topic)
        if max_count <= 0 or log is None:
            return []
        cached = log.read_cached(start, max_count, max_bytes)
        if cached is not None:
            return cached
        start, written = max(start, log.first_offset), log.written
        rows = await self._query(  # what is stored and not yet settled here is not read
            lambda c: c.execute(
                f'{_COLUMNS} WHERE topic = %s AND "offset" >= %s AND "offset" <= %s'
                ' ORDER BY "offset" LIMIT %s',
                (topic, start, written, max_count),
            ).fetchall()
        )
        out: list[Record] = []
        total = 0
        for row in rows:
            total += len(row[3])
            if out and total > max_bytes:
                break
            out.append(_record(row))
        return out

    async def read_last(self, topic: str, n: int) -> list[Record]:
        log = self._logs.get(topic)
        if n <= 0 or log is None:
            return []
        cached = log.tail.last(n, log.first_offset)
        if cached is not None:
            return cached
        written = log.written
        rows = await self._query(
            lambda c: c.execute(
                f'{_COLUMNS} WHERE topic = %s AND "offset" <= %s ORDER BY "offset" DESC LIMIT %s',
                (topic, written, n),
            ).fetchall()
        )
        return [_record(row) for row in reversed(rows)]

    async def offset_at(self, topic: str, ts: float) -> int:
        row = await self._query(
            lambda c: c.execute(
                'SELECT coalesce((SELECT "offset" FROM linemq_record WHERE topic = %(t)s'
                ' AND ts >= %(ts)s ORDER BY ts, "offset" LIMIT 1),'
                " (SELECT next_offset FROM linemq_topic WHERE topic = %(t)s), 1)",
                {"t": topic, "ts": ts},
            ).fetchone()
        )
        return 1 if row is None else int(row[0])

    # -- upkeep (see log_store.LogUpkeep): DELETEs from the oldest offset ------------------

    async def expire(
        self, topic: str, max_bytes: int | None, max_age: float | None, now: float
    ) -> int:
        log = self._logs.get(topic)
        if log is None or log.written < log.first_offset:
            return 0
        cutoff = None if max_age is None else now - max_age
        over = None if max_bytes is None else log.bytes - max_bytes
        written = log.written
        return await self._drop(
            log, topic, lambda c: upkeep.expire(c, topic, written, over, cutoff)
        )

    async def drop_before(
        self, topic: str, floor: int, now: float, max_age: float | None = None
    ) -> int:
        log = self._logs.get(topic)
        if log is None:
            return 0
        keep_from = min(floor, log.written)  # the newest record stays
        if keep_from <= log.first_offset:
            return 0
        cutoff = None if max_age is None else now - max_age
        return await self._drop(
            log, topic, lambda c: upkeep.drop_before(c, topic, keep_from, cutoff)
        )

    async def purge(self, topic: str) -> int:
        log = self._logs.get(topic)
        if log is None:
            return 0
        keep_from = log.written + 1
        log.dropped(keep_from, log.bytes)  # readers see nothing from now on
        count, _, _ = await self._query(lambda c: upkeep.drop_before(c, topic, keep_from, None))
        return count

    async def _drop(
        self, log: _Log, topic: str, work: Callable[[Conn], tuple[int, int, int]]
    ) -> int:
        count, nbytes, keep_from = await self._query(work)
        if count:
            log.dropped(keep_from, nbytes)
        return count

    def delete_topics(self, names: Sequence[str]) -> Awaitable[None]:
        self._detach(names)
        gone = list(names)

        async def removed() -> None:
            try:
                await self._query(lambda c: upkeep.delete_topics(c, gone))
            finally:
                self._deleting.difference_update(gone)

        return removed()

    def skip_to(self, topic: str, next_offset: int, reason: str) -> bool:
        """The database's counter moves too, before any later commit (jobs run in order)."""
        log = self._logs.get(topic)
        if log is None or next_offset <= log.last + 1:
            return False
        log.last = next_offset - 1
        if log.written < log.first_offset:
            log.first_offset = next_offset
        self._jobs.put(lambda: upkeep.skip_to(self._connect, topic, next_offset))
        return True

    def close(self) -> None:
        """Wait for the queued commits, then disconnect."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _record(row: tuple[Any, ...]) -> Record:
    offset, id, ts, msg, meta = row
    return Record(offset, id, ts, msg, None if meta is None else Meta.decode(_BASE_KEYS | meta))
