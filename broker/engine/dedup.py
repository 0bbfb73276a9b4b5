"""Idempotent publish: publisher-supplied ids remembered for a window, per topic.

The ids live in the topic log itself (the record's ``pid``); this index is only
a cache of the last window's worth, rebuilt at start-up by reading the log from
the first record inside the window. A marker file per topic that ever used ids
keeps start-up from reading topics that never did.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from pathlib import Path

from linemq.broker.storage.records import Record


class DedupIndex:
    def __init__(self, marker_dir: Path, window: float) -> None:
        self.marker_dir = marker_dir
        self.window = window
        self._seen: dict[str, OrderedDict[str, Record]] = {}

    def marked_topics(self) -> list[str]:
        if not self.marker_dir.is_dir():
            return []
        return sorted(p.name for p in self.marker_dir.iterdir() if p.is_file())

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
            marker = self.marker_dir / topic
            if not marker.exists():
                self.marker_dir.mkdir(parents=True, exist_ok=True)
                marker.touch()
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
        with contextlib.suppress(OSError):  # a stale marker only costs a start-up read
            (self.marker_dir / topic).unlink(missing_ok=True)

    def _expire(self, seen: OrderedDict[str, Record], now: float) -> None:
        horizon = now - self.window
        while seen:
            first = next(iter(seen.values()))
            if first.ts >= horizon:
                return
            seen.popitem(last=False)

    def __len__(self) -> int:
        return sum(len(s) for s in self._seen.values())
