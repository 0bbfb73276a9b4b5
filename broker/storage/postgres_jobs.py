"""One thread and one connection that run a PostgreSQL store's jobs in order.

Jobs are queued from the event loop (nothing there waits for the database) and run
on the thread in the order they came: the thread takes every job queued so far and
runs them in one transaction, pipelined, so a tick's many small writes cost one
round trip and one commit. Rows to insert (``submit_row``) go into one statement
per run of them, after the jobs queued before them and before those after.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

import psycopg
import structlog

from linemq.broker.storage.records import StorageError

log = structlog.get_logger(__name__)

Conn = psycopg.Connection[tuple[Any, ...]]
Work = Callable[[Conn], object]
Row = tuple[str, int, bytes]  # (log, seq, data): one write of a state log

_INSERT_ROWS: Final = (
    "INSERT INTO linemq_state_event (log, seq, data)"
    " SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bytea[])"
)


class Owner(Protocol):
    def failed(self, error: StorageError) -> None:
        """On the database thread: a job of this owner was not committed."""
        ...


@dataclass(slots=True)
class _Job:
    work: Work | None  # None: ``row`` is the job, inserted with the batch's other rows
    future: concurrent.futures.Future[object]
    owner: Owner | None = None  # told of a failure before the future is
    row: Row | None = None


class JobThread:
    """``connect`` (on the caller's thread, for start-up), then ``start``."""

    def __init__(self, dsn: str, name: str) -> None:
        self.dsn = dsn
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: Conn | None = None

    def connect(self) -> Conn:
        """The connection, made again after a loss (``psycopg.Error`` if it cannot be)."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.dsn, autocommit=True)
        return self._conn

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def submit(self, work: Work, owner: Owner | None = None) -> concurrent.futures.Future[object]:
        """``work`` on the thread, after (and committed with) what came before."""
        job = _Job(work, concurrent.futures.Future(), owner)
        self._jobs.put(job)
        return job.future

    def submit_row(self, row: Row, owner: Owner) -> concurrent.futures.Future[object]:
        """A write: inserted with every other row of its batch in one statement."""
        job = _Job(None, concurrent.futures.Future(), owner, row)
        self._jobs.put(job)
        return job.future

    def wait(self, work: Work) -> object:
        """``work``'s result, blocking: for start-up and a store's synchronous methods."""
        if self._thread is None:
            raise StorageError("the PostgreSQL store is not open")
        return self.submit(work).result()

    async def barrier(self) -> None:
        """Every job queued so far is committed (``StorageError`` if one failed)."""
        await asyncio.wrap_future(self.submit(lambda c: None))

    def stop(self) -> None:
        """Run the jobs queued so far, then disconnect."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            batch, stop = [job], False
            while True:  # everything queued meanwhile goes in the same transaction
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._execute(batch)
            if stop:
                break

    def _execute(self, batch: list[_Job]) -> None:
        results: list[object] = [None] * len(batch)
        try:
            conn = self.connect()
            with conn.pipeline(), conn.transaction():  # one round trip for the batch
                rows: list[Row] = []
                for i, job in enumerate(batch):
                    if job.work is None:
                        assert job.row is not None
                        rows.append(job.row)
                        continue
                    _insert(conn, rows)  # the writes before it, in order
                    rows = []
                    results[i] = job.work(conn)
                _insert(conn, rows)
        except Exception as exc:
            error = (
                StorageError(f"storage unavailable: {exc}")
                if isinstance(exc, psycopg.Error)
                else exc
            )
            log.error("state_write_failed", error=str(exc), jobs=len(batch))
            for job in batch:
                if job.owner is not None and isinstance(error, StorageError):
                    job.owner.failed(error)
                job.future.set_exception(error)
            return
        for job, result in zip(batch, results, strict=True):
            job.future.set_result(result)


def _insert(conn: Conn, rows: list[Row]) -> None:
    if rows:
        conn.execute(
            _INSERT_ROWS, ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
        )
