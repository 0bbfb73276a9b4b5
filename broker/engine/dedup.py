"""Idempotent publish: publisher-supplied ids remembered for a window, per topic.

The ids live in the topic log itself (the record's ``pid``); this index is only
a cache of the last window's worth, rebuilt at start-up by reading the log from
the first record inside the window. A marker per topic that ever used ids (kept by
the state store, ``DedupMarkers``) keeps start-up from reading topics that never did.
"""

from __future__ import annotations

from collections import OrderedDict

from linemq.broker.storage.records import Record
from linemq.broker.storage.state_store import DedupMarkers


class DedupIndex:
    def __init__(self, markers: DedupMarkers, window: float) -> None:
        self.markers = markers
        self.window = window
        self._seen: dict[str, OrderedDict[str, Record]] = {}

    def marked_topics(self) -> list[str]:
        return self.markers.dedup_topics()

    def lookup(self, topic: str, pid: str, now: float) -> Record | None:
        seen = self._seen.get(topic)
        if seen is None:
            return None
        self._expire(seen, now)
        return seen.get(pid)

    def remember(self, topic: str, record: Record) -> None:
        """Called for every record carrying a pid (live publishes and the start-up scan)."""
        assert record.meta is not None and record.meta.pid is not None
        seen = self._seen.get(topic)
        if seen is None:
            seen = self._seen[topic] = OrderedDict()
            self.markers.mark_dedup(topic)
        seen[record.meta.pid] = record
        seen.move_to_end(record.meta.pid)

    def forget(self, topic: str, records: list[Record]) -> None:
        """Records whose write failed: their publisher ids were never really stored."""
        seen = self._seen.get(topic)
        if seen is None:
            return
        for record in records:
            pid = record.meta.pid if record.meta is not None else None
            if pid is not None and seen.get(pid) is record:
                del seen[pid]

    def drop(self, topic: str) -> None:
        """The topic was deleted: its publisher ids are forgotten with it."""
        self._seen.pop(topic, None)
        self.markers.unmark_dedup(topic)

    def _expire(self, seen: OrderedDict[str, Record], now: float) -> None:
        horizon = now - self.window
        while seen:
            first = next(iter(seen.values()))
            if first.ts >= horizon:
                return
            seen.popitem(last=False)

    def __len__(self) -> int:
        return sum(len(s) for s in self._seen.values())
