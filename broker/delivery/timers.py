"""A group's two kinds of waiting, each one structure with one timer and no scans.

``AckDeadlines``: every delivery gets the same ack timeout, so deliveries kept
in delivery order are in deadline order (TOUCH moves one to the end).
``DueHeap``: retries after a backoff and delayed messages, by due time.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable

from linemq.broker.delivery.group_state import Pending
from linemq.broker.delivery.holdings import Holdings

Expired = Callable[[list[Pending], list[tuple[Holdings, list[int]]]], None]
"""Called with the expired ``Pending``s and, per member's holdings, the expired rows."""


class AckDeadlines:
    """In-flight ``Pending``s in deadline order, and the members' holdings (each in that order)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        timeout: float,
        on_expired: Expired,
        holdings: list[Holdings],
    ) -> None:
        self.loop = loop
        self.timeout = timeout
        self.on_expired = on_expired
        self.holdings = holdings  # the group state's list: members come and go
        self._by_offset: dict[int, Pending] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    def start_many(self, ps: list[Pending]) -> None:
        """``ps`` were just delivered: their deadline is a full timeout away.

        One float for them all: 24 bytes less per message in flight.
        """
        deadline = self.loop.time() + self.timeout
        by_offset = self._by_offset
        for p in ps:
            p.deadline = deadline
            by_offset[p.offset] = p
        if self._timer is None:
            self._arm()

    def adopt(self, ps: list[Pending]) -> None:
        """``ps`` were rows of a holdings and keep their deadlines (they are about to be
        taken back or touched, so their place at the end of the order does not matter)."""
        by_offset = self._by_offset
        for p in ps:
            by_offset[p.offset] = p
        if self._timer is None:
            self._arm()

    def rows_added(self) -> None:
        """A pump added rows to some member's holdings."""
        if self._timer is None:
            self._arm()

    def restart(self, p: Pending) -> None:
        """A TOUCH: a full timeout from now, so ``p`` moves to the end of the order."""
        self._by_offset.pop(p.offset, None)
        self.start_many([p])

    def held_by(self, member: object) -> list[Pending]:
        """In-flight ``Pending``s of ``member`` (None: of everyone), oldest first."""
        if member is None:
            return list(self._by_offset.values())
        return [p for p in self._by_offset.values() if p.member is member]

    def remove(self, offset: int) -> None:
        self._by_offset.pop(offset, None)

    def clear(self) -> None:
        self._by_offset.clear()

    def __len__(self) -> int:
        return len(self._by_offset) + sum(h.left for h in self.holdings)

    def _arm(self) -> None:
        due = [h.deadlines[h.first] for h in self.holdings if h.left]
        if self._by_offset:
            due.append(next(iter(self._by_offset.values())).deadline)
        if due and not self._closed:
            self._timer = self.loop.call_at(min(due), self._fire)
        else:
            self._timer = None

    def _fire(self) -> None:
        now = self.loop.time()
        expired: list[Pending] = []
        for p in self._by_offset.values():
            if p.deadline > now:
                break
            expired.append(p)
        for p in expired:
            del self._by_offset[p.offset]
        rows = [(h, r) for h in self.holdings if (r := h.expired(now))]
        self._timer = None
        self.on_expired(expired, rows)
        if self._timer is None:
            self._arm()

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()


class DueHeap:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, on_due: Callable[[list[tuple[float, int]]], None]
    ) -> None:
        self.loop = loop
        self.on_due = on_due
        self._heap: list[tuple[float, int]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._closed = False

    def push(self, at: float, offset: int) -> None:
        heapq.heappush(self._heap, (at, offset))
        if self._timer is None or at < self._timer_at:
            self._arm()

    def clear(self) -> None:
        self._heap.clear()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._heap and not self._closed:
            self._timer_at = self._heap[0][0]
            delay = max(0.0, self._timer_at - time.time())
            self._timer = self.loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = time.time()
        due: list[tuple[float, int]] = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap))
        self._arm()
        self.on_due(due)

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
