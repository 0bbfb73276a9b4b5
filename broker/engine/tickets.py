"""Durability tickets: a future per waiter, resolved when its commit generation is durable.

The commit tick numbers its writes by generation; ``--fsync`` decides when a
generation counts as durable (``Durability``). A change made outside a connection
(an HTTP button) takes a ticket for the generation that writes it and awaits it,
instead of polling a counter: the broker settles tickets where it releases replies.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools


class Tickets:
    """Waiters ordered by generation; settling is O(1) when nobody waits."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __bool__(self) -> bool:
        return bool(self._heap)

    def take(self, gen: int) -> asyncio.Future[None]:
        """A future done once generation ``gen`` is durable (``settle`` says so)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (gen, next(self._order), future))
        return future

    def settle(self, durable_gen: int) -> None:
        """Every generation up to ``durable_gen`` is durable: resolve their tickets."""
        heap = self._heap
        while heap and heap[0][0] <= durable_gen:
            future = heapq.heappop(heap)[2]
            if not future.done():  # a waiter that gave up (timeout) cancelled it
                future.set_result(None)
