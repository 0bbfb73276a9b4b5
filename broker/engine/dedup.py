"""Idempotent publish: publisher-supplied ids remembered for a window, per topic.

The ids live in the topic log itself (the record's ``pid``); this index is only
a cache of the last window's worth, rebuilt at start-up by reading the log from
the first record inside the window. A marker per topic that ever used ids (kept by
the state store, ``DedupMarkers``) keeps start-up from reading topics that never did.

A live publish is remembered by its ``Appended`` while its commit is pending: a
store may give offsets only at commit, so a repeat waits on the original and is
answered from it once it resolves.
"""

from __future__ import annotations

from collections import OrderedDict

from linemq.broker.storage.records import Record
from linemq.broker.storage.state_store import DedupMarkers
from linemq.broker.storage.ticket import Appended

Seen = Record | Appended
"""A stored record (read back at start-up), or a live publish's append."""


def first_record(seen: Seen) -> Record:
    """The record ``seen`` stands for (its offset is final once its append resolved)."""
    return seen.records[0] if isinstance(seen, Appended) else seen


class DedupIndex:
    def __init__(self, markers: DedupMarkers, window: float) -> None:
        self.markers = markers
        self.window = window
        self._seen: dict[str, OrderedDict[str, Seen]] = {}

    def marked_topics(self) -> list[str]:
        return self.markers.dedup_topics()

    def lookup(self, topic: str, pid: str, now: float) -> Seen | None:
        seen = self._seen.get(topic)
        if seen is None:
            return None
        self._expire(seen, now)
        return seen.get(pid)

    def remember(self, topic: str, entry: Seen) -> None:
        """Called for every record carrying a pid (live publishes, by their ``Appended``,
        and the start-up scan)."""
        meta = first_record(entry).meta
        assert meta is not None and meta.pid is not None
        seen = self._seen.get(topic)
        if seen is None:
            seen = self._seen[topic] = OrderedDict()
            self.markers.mark_dedup(topic)
        seen[meta.pid] = entry
        seen.move_to_end(meta.pid)

    def forget(self, topic: str, records: list[Record]) -> None:
        """Records whose write failed: their publisher ids were never really stored."""
        seen = self._seen.get(topic)
        if seen is None:
            return
        for record in records:
            pid = record.meta.pid if record.meta is not None else None
            if pid is None:
                continue
            entry = seen.get(pid)
            if entry is not None and first_record(entry) is record:
                del seen[pid]

    def drop(self, topic: str) -> None:
        """The topic was deleted: its publisher ids are forgotten with it."""
        self._seen.pop(topic, None)
        self.markers.unmark_dedup(topic)

    def _expire(self, seen: OrderedDict[str, Seen], now: float) -> None:
        horizon = now - self.window
        while seen:
            if first_record(next(iter(seen.values()))).ts >= horizon:
                return
            seen.popitem(last=False)

    def __len__(self) -> int:
        return sum(len(s) for s in self._seen.values())
