"""Which of a group's ready messages goes next: priority first, then offset, one per key.

A message with a key holds its key from its first delivery until it is acked,
dead-lettered or expired, retries and backoff included: later messages of the
key wait here ("parked") while messages of other keys and without keys flow.
"""

from __future__ import annotations

import heapq

from broker.delivery.group_state import Pending
from broker.storage.records import NORMAL_PRIORITY


def key_of(p: Pending) -> str | None:
    return p.meta.key if p.meta is not None else None


def priority_of(p: Pending) -> int:
    return p.meta.priority if p.meta is not None else NORMAL_PRIORITY


class ReadyQueue:
    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Pending]] = []
        self._parked: dict[str, list[tuple[int, Pending]]] = {}
        self._holder: dict[str, int] = {}

    def push(self, p: Pending) -> None:
        key = key_of(p)
        if key is not None:
            holder = self._holder.get(key)
            if holder is None:
                self._holder[key] = p.offset
            elif holder != p.offset:
                heapq.heappush(self._parked.setdefault(key, []), (p.offset, p))
                return
        heapq.heappush(self._heap, (-priority_of(p), p.offset, p))

    def hold(self, p: Pending) -> None:
        """``p`` holds its key while it waits elsewhere (a retry after a restart)."""
        key = key_of(p)
        if key is not None:
            self._holder.setdefault(key, p.offset)

    def pop(self) -> Pending | None:
        if not self._heap:
            return None
        return heapq.heappop(self._heap)[2]

    def release(self, p: Pending) -> None:
        """``p`` is finished: the next parked message of its key, if any, becomes ready."""
        key = key_of(p)
        if key is None or self._holder.get(key) != p.offset:
            return
        del self._holder[key]
        parked = self._parked.get(key)
        if parked:
            _, nxt = heapq.heappop(parked)
            if not parked:
                del self._parked[key]
            self.push(nxt)

    def clear(self) -> None:
        self._heap.clear()
        self._parked.clear()
        self._holder.clear()

    @property
    def ready(self) -> int:
        return len(self._heap)

    @property
    def parked(self) -> int:
        return sum(len(v) for v in self._parked.values())
