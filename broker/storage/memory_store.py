"""Topic logs in memory: the ``LogStore`` seam with nothing behind it but lists.

For tests of what sits above the seam, and as the reference the conformance
suite holds ``FileStore`` (and any later store) to. Nothing survives the
process: a commit is durable as soon as it is made.
"""

from __future__ import annotations

from bisect import bisect_left

from linemq.broker.storage.appends import AppendBuffer
from linemq.broker.storage.log_store import READ_BYTES, Commit
from linemq.broker.storage.records import Record
from linemq.broker.storage.ticket import Ticket


class _Log:
    __slots__ = ("committed", "last", "pending")

    def __init__(self) -> None:
        self.committed: list[Record] = []  # offsets 1..n, in order
        self.pending: list[Record] = []
        self.last = 0


class MemoryStore(AppendBuffer[_Log]):
    """Implements ``LogStore``; offsets are given at append and stored at commit."""

    def __init__(self) -> None:
        super().__init__(_Log)

    def commit(self) -> Commit:
        done = Commit(self._ticket)
        self._ticket = Ticket()
        touched, self._touched = self._touched, {}
        for topic, log in touched.items():
            log.committed += log.pending
            done.written[topic] = log.pending
            log.pending = []
        done.ticket.resolve()
        return done

    def last_offset(self, topic: str) -> int:
        log = self._logs.get(topic)
        return 0 if log is None else log.last

    def first_offset(self, topic: str) -> int:
        return 1

    def topics(self) -> list[str]:
        return sorted(self._logs)

    async def read(
        self, topic: str, start: int, max_count: int, max_bytes: int = READ_BYTES
    ) -> list[Record]:
        log = self._logs.get(topic)
        if log is None or max_count <= 0:
            return []
        first = max(start, 1) - 1
        out: list[Record] = []
        total = 0
        for record in log.committed[first : first + max_count]:
            total += len(record.msg)
            if out and total > max_bytes:
                break
            out.append(record)
        return out

    async def read_last(self, topic: str, n: int) -> list[Record]:
        log = self._logs.get(topic)
        if log is None or n <= 0:
            return []
        return log.committed[-n:]

    async def offset_at(self, topic: str, ts: float) -> int:
        log = self._logs.get(topic)
        if log is None:
            return 1
        return bisect_left(log.committed, ts, key=lambda r: r.ts) + 1

    def close(self) -> None:
        """Nothing to release; the records go with the process."""
