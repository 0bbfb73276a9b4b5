"""Commits a store settles later: what they stored goes out per topic, in commit order.

A store that answers later (a database) returns its ``Commit`` unsettled and says
what it stored when it knows (``Commit.settle``). Subscribers and groups must see
only stored records, each topic's in offset order, so a topic's records wait here
until their commit and the topic's earlier ones have settled, however the store's
answers come; a failed topic's records never go out. Other topics do not wait for
it. A commit settled at once behind a held one waits its turn too; with nothing
held (every commit of the file and memory stores) the engine dispatches at once and
this costs nothing.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Collection

from linemq.broker.storage.log_store import Commit
from linemq.broker.storage.records import Record

Dispatch = Callable[[str, list[Record], float], None]


class CommitOrder:
    """The commits not dispatched yet, by topic, and those not settled yet, by generation."""

    __slots__ = ("_dispatch", "_forget", "_settled", "held", "unsettled")

    def __init__(
        self,
        dispatch: Dispatch,
        forget: Callable[[str, list[Record]], None],
        settled: Callable[[], None],
    ) -> None:
        """``dispatch`` sends a topic's stored records out; ``forget`` is told what failed
        (the dedup index); ``settled`` is called once a held commit has settled."""
        self._dispatch = dispatch
        self._forget = forget
        self._settled = settled
        self.held: dict[str, deque[Commit]] = {}
        """By topic: commits not dispatched yet."""
        self.unsettled: deque[tuple[int, Commit]] = deque()
        """By generation of the tick that made them: commits the store has not settled."""

    def hold(self, done: Commit, gen: int) -> None:
        """``done``, made by tick ``gen``, is unsettled or behind one that is."""
        if done.settled:
            topics: Collection[str] = [*done.written, *done.failed]
        else:
            topics = done.topics
            self.unsettled.append((gen, done))
        for topic in topics:
            held = self.held.get(topic)
            if held is None:
                held = self.held[topic] = deque()
            held.append(done)
        done.on_settled(self._on_settled)

    def _on_settled(self, done: Commit) -> None:
        for topic, records in done.failed.items():
            self._forget(topic, records)
        now = time.time()
        for topic in done.topics or [*done.written, *done.failed]:
            held = self.held.get(topic)
            while held and held[0].settled:
                stored = held.popleft().written.get(topic)
                if stored:
                    self._dispatch(topic, stored, now)
            if not held:
                self.held.pop(topic, None)
        unsettled = self.unsettled
        while unsettled and unsettled[0][1].settled:
            unsettled.popleft()
        self._settled()

    def settled_gen(self, durable_gen: int) -> int:
        """The last generation up to ``durable_gen`` whose commits have all settled."""
        if self.unsettled:
            return min(durable_gen, self.unsettled[0][0] - 1)
        return durable_gen

    def first_unsettled(self) -> Commit | None:
        return self.unsettled[0][1] if self.unsettled else None
