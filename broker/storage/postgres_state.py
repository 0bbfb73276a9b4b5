"""The broker's state besides topic logs, in PostgreSQL: the ``StateStore`` seam.

Each event log (a group's, the patterns', a topic's replays, the schedules) is rows
of ``linemq_state_event``: one row per ``write``, holding the sealed journal lines
the tick handed over, numbered by ``seq`` within the log. Replay joins the rows in
``seq`` order and reads them with the journal's own scanner (``scan_journal``), so
entries come back as they would from a file and a damaged line costs that line.
A rewrite (compaction, repair) is a DELETE of the rows before the snapshot and an
INSERT of the snapshot, in one transaction. Dedup markers are rows of
``linemq_dedup_marker``.

Database work runs on a thread of its own (``JobThread``, postgres_jobs.py), in
the order it was asked for: the thread takes every job queued so far and runs them
in one transaction, the writes as one INSERT, so a tick's writes to many logs cost
one round trip and one commit. ``write`` only queues (no I/O on the event loop); ``sync`` waits
for the log's writes to be committed (``--fsync always`` runs it off the loop).
Which logs exist, their sizes and next ``seq`` are loaded at ``open`` and kept in
memory, so a new group's log replays without a query. ``replay`` and
``rewrite_now`` wait for the database (start-up, and a log opened later that holds
rows). The logs are this node's: one node per database (the log store's lock).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass
from typing import Final

import psycopg

from linemq.broker.storage.buffered_log import BufferedLog, sealed
from linemq.broker.storage.damage import DamageReport
from linemq.broker.storage.journal import HEADER
from linemq.broker.storage.postgres_jobs import Conn, JobThread
from linemq.broker.storage.postgres_schema import migrate
from linemq.broker.storage.records import StorageError
from linemq.broker.storage.state_store import EventLog, OnPending, Valid, check_name

_INSERT: Final = "INSERT INTO linemq_state_event (log, seq, data) VALUES (%s, %s, %s)"
_LOGS: Final = (
    "SELECT log, max(seq), coalesce(sum(length(data)), 0) FROM linemq_state_event GROUP BY log"
)


@dataclass(slots=True)
class _Kept:
    """What the database holds of one log, as this node knows it."""

    next_seq: int = 1
    size: int = 0


class PostgresLog(BufferedLog[str]):
    """One ``EventLog`` of a ``PostgresStateStore``."""

    def __init__(self, store: PostgresStateStore, key: str) -> None:
        super().__init__(store, key)
        self._store = store
        self._last: concurrent.futures.Future[object] | None = None  # the last write queued
        self.error: StorageError | None = None  # a write failed: ``sync`` says so once

    @property
    def label(self) -> str:
        return "postgresql:" + self._key

    def replay_lines(self, valid: Valid | None = None) -> list[dict[str, object] | None]:
        if self._key not in self._store.kept:  # nothing stored: no query
            self._damaged = 0
            return []
        key = self._key
        rows = self._store.db.wait(
            lambda c: c.execute(
                "SELECT data FROM linemq_state_event WHERE log = %s ORDER BY seq", (key,)
            ).fetchall()
        )
        assert isinstance(rows, list)
        return self._scan(HEADER + b"".join(bytes(row[0]) for row in rows), valid)

    def write(self) -> bool:
        """Queue one INSERT of what is buffered; it commits with the others queued
        meanwhile (``sync`` waits for it)."""
        if self._deleted:
            self._pending = []
        if not self._pending:
            return True
        data, self._pending = b"".join(self._pending), []
        kept = self._store.kept.setdefault(self._key, _Kept())
        seq, key = kept.next_seq, self._key
        kept.next_seq += 1
        kept.size += len(data)
        self._last = self._store.db.submit_row((key, seq, data), self)
        return True

    def sync(self) -> None:
        """Wait until every write queued so far is committed (off the loop, or at start)."""
        last = self._last
        if last is not None:
            concurrent.futures.wait([last])
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def _rewrite(self, entries: list[dict[str, object]]) -> concurrent.futures.Future[object]:
        """Queue the snapshot in place of every row before it. What was buffered is
        written first, as the journal does: if the snapshot fails, nothing is lost."""
        self.write()
        data = sealed(entries)
        kept = self._store.kept.setdefault(self._key, _Kept())
        seq, key = kept.next_seq, self._key
        kept.next_seq += 1
        kept.size = len(data)
        self._damaged = 0

        def work(conn: Conn) -> None:
            conn.execute("DELETE FROM linemq_state_event WHERE log = %s AND seq < %s", (key, seq))
            conn.execute(_INSERT, (key, seq, data))

        return self._store.db.submit(work)

    def rewrite_now(self, entries: list[dict[str, object]]) -> None:
        """Blocks until committed: for start-up (``StorageError`` if it was not)."""
        self._rewrite(entries).result()

    async def rewrite_off_loop(self, entries: list[dict[str, object]]) -> bool:
        """Appends written meanwhile get later ``seq``s: they follow the snapshot."""
        if self._closed or self._deleted:
            return False
        await asyncio.wrap_future(self._rewrite(entries))
        return not (self._closed or self._deleted)

    def delete(self) -> None:
        self._deleted = self._closed = True
        self._pending = []
        self._store.forget(self._key)

    def close(self) -> None:
        self._closed = True
        self.write()

    def failed(self, error: StorageError) -> None:
        """On the database thread: a write of this log was not committed."""
        self.error = error


class PostgresStateStore:
    """``StateStore`` in PostgreSQL; see the module's docstring. ``connect`` (or ``open``)
    before use; ``StorageError`` when the database cannot be used."""

    def __init__(self, dsn: str, damage: DamageReport | None = None) -> None:
        self.dsn = dsn
        self.damage = DamageReport() if damage is None else damage
        self.kept: dict[str, _Kept] = {}
        self._open: dict[str, PostgresLog] = {}
        self._on_pending: OnPending | None = None
        self._marked: set[str] = set()
        self.db = JobThread(dsn, "linemq-pg-state")

    def connect(self) -> None:
        """Connect, create or migrate the schema, load what the logs hold; idempotent."""
        if self.db.running:
            return
        try:
            conn = self.db.connect()
            migrate(conn)
            logs = conn.execute(_LOGS).fetchall()
            marked = conn.execute("SELECT topic FROM linemq_dedup_marker").fetchall()
        except psycopg.Error as exc:
            self.db.stop()
            raise StorageError(f"storage unavailable: {exc}") from exc
        except StorageError:
            self.db.stop()
            raise
        self.kept = {key: _Kept(int(seq) + 1, int(size)) for key, seq, size in logs}
        self._marked = {topic for (topic,) in marked}
        self.db.start()

    def open(self, on_pending: OnPending) -> None:
        self.connect()
        self._on_pending = on_pending

    # -- the seam --------------------------------------------------------------------

    def pending(self, log: EventLog) -> None:
        if self._on_pending is not None:
            self._on_pending(log)

    def _log(self, key: str) -> PostgresLog:
        opened = self._open[key] = PostgresLog(self, key)
        return opened

    def forget(self, key: str) -> None:
        """The log's rows go (queued, in order with its writes); it is gone from now on."""
        self.kept.pop(key, None)
        self.db.submit(lambda c: c.execute("DELETE FROM linemq_state_event WHERE log = %s", (key,)))

    def groups(self) -> list[tuple[str, str]]:
        found = []
        for key in self.kept:
            kind, _, rest = key.partition("/")
            if kind == "group":
                topic, _, group = rest.partition("/")
                found.append((topic, group))
        return sorted(found)

    def group_log(self, topic: str, group: str) -> EventLog:
        return self._log(_group_key(topic, group))

    def delete_group(self, topic: str, group: str) -> None:
        self._delete(_group_key(topic, group))

    async def sync_deletes(self, topics: list[str]) -> None:
        await self.db.barrier()

    async def drop_topic(self, topic: str) -> None:
        """The group logs went one by one (``delete_group``): their DELETEs commit here."""
        check_name(topic)
        await self.db.barrier()

    def patterns_log(self) -> EventLog:
        return self._log("patterns")

    def replay_log(self, topic: str) -> EventLog:
        return self._log("replay/" + check_name(topic))

    def delete_replay(self, topic: str) -> None:
        self._delete("replay/" + check_name(topic))

    def schedules_log(self) -> EventLog:
        return self._log("schedules")

    def _delete(self, key: str) -> None:
        opened = self._open.pop(key, None)
        if opened is not None:
            opened.delete()
        else:
            self.forget(key)

    def mark_dedup(self, topic: str) -> None:
        if topic in self._marked:
            return
        self._marked.add(check_name(topic))
        self.db.submit(
            lambda c: c.execute(
                "INSERT INTO linemq_dedup_marker (topic) VALUES (%s) ON CONFLICT DO NOTHING",
                (topic,),
            )
        )

    def dedup_topics(self) -> list[str]:
        return sorted(self._marked)

    def unmark_dedup(self, topic: str) -> None:
        self._marked.discard(check_name(topic))
        self.db.submit(
            lambda c: c.execute("DELETE FROM linemq_dedup_marker WHERE topic = %s", (topic,))
        )

    def close(self) -> None:
        """Write every open log, wait for the database to commit it all, disconnect
        (``StorageError`` if these last writes failed; earlier failures were logged)."""
        for opened in self._open.values():
            opened.error = None
            opened.close()
        self.stop()
        errors = [e for e in (opened.error for opened in self._open.values()) if e is not None]
        if errors:
            raise errors[0]

    def stop(self) -> None:
        """Finish the jobs queued so far and disconnect; what is still buffered stays
        unwritten (``close`` writes it first)."""
        self.db.stop()


def _group_key(topic: str, group: str) -> str:
    return f"group/{check_name(topic)}/{check_name(group)}"
