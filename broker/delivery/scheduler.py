"""Which of a group's ready messages goes next: priority first, then offset, one per key.

A message with a key holds its key from its first delivery until it is acked,
dead-lettered or expired, retries and backoff included: later messages of the
key wait here ("parked") while messages of other keys and without keys flow.

Most messages have no key and no priority and arrive in offset order, so they
queue in a plain FIFO; the rest (keys, priorities, a retry behind newer
messages) go through a heap, and ``pop`` takes whichever head comes first.

A group with ``ordering=fifo`` is one key for all its messages: one message is
out (or waits for its retry) at a time, and the next goes once it is done. A
group with ``ordering=none`` holds no key: messages of one key may be out together.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Final

from linemq.broker.delivery.pending import Pending
from linemq.broker.storage.records import NORMAL_PRIORITY


def key_of(p: Pending) -> str | None:
    return p.meta.key if p.meta is not None else None


def priority_of(p: Pending) -> int:
    return p.meta.priority if p.meta is not None else NORMAL_PRIORITY


FIFO_KEY: Final = "\x00fifo"
"""The key of every message of a FIFO group (no message's key holds a NUL)."""


class ReadyQueue:
    def __init__(self, fifo: bool = False, keys: bool = True) -> None:
        self.fifo = fifo
        self.keys = keys  # False: ``ordering=none``, a message's key holds nothing
        self._heap: list[tuple[int, int, Pending]] = []
        self._plain: deque[Pending] = deque()  # no meta, increasing offsets
        self._parked: dict[str, list[tuple[int, Pending]]] = {}
        self._holder: dict[str, int] = {}

    def _key(self, p: Pending) -> str | None:
        if self.fifo:
            return FIFO_KEY
        return key_of(p) if self.keys else None

    def reorder(self, ordering: str) -> None:
        """Empty, with another ordering (the group pushes what waits again)."""
        self.clear()
        self.fifo, self.keys = ordering == "fifo", ordering != "none"

    def push(self, p: Pending) -> None:
        if (
            p.meta is None
            and not self.fifo
            and (not self._plain or self._plain[-1].offset < p.offset)
        ):
            self._plain.append(p)
            return
        key = self._key(p)
        if key is not None:
            holder = self._holder.get(key)
            if holder is None:
                self._holder[key] = p.offset
            elif holder != p.offset:
                heapq.heappush(self._parked.setdefault(key, []), (p.offset, p))
                return
        heapq.heappush(self._heap, (-priority_of(p), p.offset, p))

    def push_plain(self, ps: list[Pending]) -> bool:
        """Messages just taken from the log, in offset order: if none has a key, a
        priority or a delay, they join the FIFO in one step. False: push them one by one."""
        plain = self._plain
        if self.fifo or (plain and plain[-1].offset > ps[0].offset):
            return False
        if any(p.meta is not None for p in ps):
            return False
        plain.extend(ps)
        return True

    def hold(self, p: Pending) -> None:
        """``p`` holds its key while it waits elsewhere (a retry after a restart)."""
        key = self._key(p)
        if key is not None:
            self._holder.setdefault(key, p.offset)

    def pop(self) -> Pending | None:
        heap, plain = self._heap, self._plain
        if plain:
            if not heap:
                return plain.popleft()
            rank, offset, _ = heap[0]
            if rank > -NORMAL_PRIORITY or (rank == -NORMAL_PRIORITY and offset > plain[0].offset):
                return plain.popleft()
        if not heap:
            return None
        return heapq.heappop(heap)[2]

    def release(self, p: Pending) -> None:
        """``p`` is finished: the next parked message of its key, if any, becomes ready."""
        key = self._key(p)
        if key is not None:
            self._release(key, p.offset)

    def release_fifo(self, offsets: list[int]) -> None:
        """Acks in a FIFO group: the next message goes if one of them was the head."""
        if self._holder.get(FIFO_KEY) in offsets:
            self._release(FIFO_KEY, self._holder[FIFO_KEY])

    def _release(self, key: str, offset: int) -> None:
        if self._holder.get(key) != offset:
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
        self._plain.clear()
        self._parked.clear()
        self._holder.clear()

    @property
    def ready(self) -> int:
        return len(self._heap) + len(self._plain)

    @property
    def parked(self) -> int:
        return sum(len(v) for v in self._parked.values())
