"""Topic logs in memory: the ``log_store.Store`` seam with nothing behind it but lists.

For tests of what sits above the seam (a whole broker can run on it), and as the
reference the conformance suite holds ``FileStore`` (and any later store) to.
Nothing survives the process: a commit is durable as soon as it is made. Every
record is in memory, so ``read_cached`` always answers; drops go record by record.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Awaitable, Sequence
from operator import attrgetter

from linemq.broker.storage.appends import AppendBuffer
from linemq.broker.storage.log_store import READ_BYTES, Commit, Footprint
from linemq.broker.storage.records import Record
from linemq.broker.storage.ticket import Ticket

_offset = attrgetter("offset")


class _Log:
    """One topic; it is also the topic's ``TopicView``."""

    __slots__ = ("bytes", "committed", "first_offset", "last", "meta_last_offset", "pending")

    def __init__(self, last: int = 0) -> None:
        self.committed: list[Record] = []  # by offset, from first_offset on (gaps after skip_to)
        self.pending: list[Record] = []
        self.last = last
        self.first_offset = last + 1
        self.meta_last_offset = 0
        self.bytes = 0  # of the committed records' text

    @property
    def last_offset(self) -> int:
        return self.last

    @property
    def written_offset(self) -> int:
        return self.committed[-1].offset if self.committed else self.first_offset - 1

    def read_cached(
        self, start_offset: int, max_count: int, max_bytes: int = READ_BYTES
    ) -> list[Record] | None:
        if max_count <= 0:
            return []
        i = bisect_left(self.committed, max(start_offset, self.first_offset), key=_offset)
        out: list[Record] = []
        total = 0
        for record in self.committed[i : i + max_count]:
            total += len(record.msg)
            if out and total > max_bytes:
                break
            out.append(record)
        return out

    def drop(self, keep_from: int) -> int:
        """Drop the records below ``keep_from`` (never the newest); how many went."""
        if self.committed:
            keep_from = min(keep_from, self.committed[-1].offset)
        if keep_from <= self.first_offset:
            return 0
        n = bisect_left(self.committed, keep_from, key=_offset)
        self.bytes -= sum(len(r.msg) for r in self.committed[:n])
        del self.committed[:n]
        self.first_offset = keep_from
        return n


class MemoryStore(AppendBuffer[_Log]):
    """Implements ``log_store.Store``; offsets are given at append and stored at commit."""

    def __init__(self) -> None:
        super().__init__(_Log)

    def commit(self) -> Commit:
        done = Commit(self._ticket)
        self._ticket = Ticket()
        touched, self._touched = self._touched, {}
        for topic, log in touched.items():
            log.committed += log.pending
            log.bytes += sum(len(r.msg) for r in log.pending)
            done.written[topic] = log.pending
            log.pending = []
        done.ticket.resolve()
        return done

    def footprint(self, topic: str) -> Footprint:
        log = self._logs.get(topic)
        if log is None:
            return Footprint()
        return Footprint(log.bytes, len(log.committed))

    async def read(
        self, topic: str, start: int, max_count: int, max_bytes: int = READ_BYTES
    ) -> list[Record]:
        log = self._logs.get(topic)
        return [] if log is None else log.read_cached(start, max_count, max_bytes) or []

    async def read_last(self, topic: str, n: int) -> list[Record]:
        log = self._logs.get(topic)
        if log is None or n <= 0:
            return []
        return log.committed[-n:]

    async def offset_at(self, topic: str, ts: float) -> int:
        log = self._logs.get(topic)
        if log is None:
            return 1
        i = bisect_left(log.committed, ts, key=lambda r: r.ts)
        return log.committed[i].offset if i < len(log.committed) else log.written_offset + 1

    # -- upkeep (see log_store.LogUpkeep): record by record ---------------------------------

    async def expire(
        self, topic: str, max_bytes: int | None, max_age: float | None, now: float
    ) -> int:
        log = self._logs.get(topic)
        if log is None or not log.committed:
            return 0
        keep_from = log.first_offset
        if max_bytes is not None:
            over = log.bytes - max_bytes
            for record in log.committed:
                if over <= 0:
                    break
                over -= len(record.msg)
                keep_from = record.offset + 1
        if max_age is not None:
            for record in log.committed:
                if record.offset >= keep_from and record.ts >= now - max_age:
                    break
                keep_from = max(keep_from, record.offset + 1)
        return log.drop(keep_from)

    async def drop_before(
        self, topic: str, floor: int, now: float, max_age: float | None = None
    ) -> int:
        log = self._logs.get(topic)
        if log is None:
            return 0
        keep_from = floor
        if max_age is not None:
            for record in log.committed:
                if record.offset >= floor or record.ts >= now - max_age:
                    keep_from = record.offset
                    break
        return log.drop(keep_from)

    async def purge(self, topic: str) -> int:
        log = self._logs.get(topic)
        if log is None:
            return 0
        gone, first = len(log.committed), log.written_offset + 1
        log.committed = []
        log.bytes = 0
        log.first_offset = first
        return gone

    def delete_topics(self, names: Sequence[str]) -> Awaitable[None]:
        self._detach(names)

        async def removed() -> None:
            self._deleting.difference_update(names)

        return removed()

    def skip_to(self, topic: str, next_offset: int, reason: str) -> bool:
        log = self._logs.get(topic)
        if log is None or next_offset <= log.last + 1:
            return False
        log.last = next_offset - 1
        if not log.committed and not log.pending:
            log.first_offset = next_offset
        return True

    def close(self) -> None:
        """Nothing to release; the records go with the process."""
