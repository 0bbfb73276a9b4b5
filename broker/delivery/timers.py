"""A group's two kinds of waiting, each one structure with one timer and no scans.

``AckDeadlines``: every delivery gets the same ack timeout, so rows kept in
delivery order are in deadline order (TOUCH moves one to the end).
``DueHeap``: retries after a backoff and delayed messages, by due time.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable

from linemq.broker.delivery.holdings import Holdings

Expired = Callable[[list[tuple[Holdings, list[int]]]], None]
"""Called with the expired rows of each member's holdings."""


class AckDeadlines:
    """The members' holdings, each in deadline order: one timer for the earliest row."""

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
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    def deadline(self) -> float:
        """When an ack of a delivery made now is due."""
        return self.loop.time() + self.timeout

    def set_timeout(self, timeout: float) -> None:
        """Later deliveries get ``timeout``; a shorter one also caps what is in flight at
        ``timeout`` from now, so rows stay in deadline order."""
        shorter = timeout < self.timeout
        self.timeout = timeout
        if shorter:
            latest = self.deadline()
            for h in self.holdings:
                h.due_by(latest)
            if self._timer is not None:
                self._timer.cancel()
                self._arm()

    def rows_added(self) -> None:
        """Rows were added to some member's holdings."""
        if self._timer is None:
            self._arm()

    def _arm(self) -> None:
        due = [h.first_deadline() for h in self.holdings if h.left]
        if due and not self._closed:
            self._timer = self.loop.call_at(min(due), self._fire)
        else:
            self._timer = None

    def _fire(self) -> None:
        now = self.loop.time()
        rows = [(h, r) for h in self.holdings if (r := h.expired(now))]
        self._timer = None
        self.on_expired(rows)
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
