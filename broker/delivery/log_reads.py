"""A consumer group's reads of its topic log that may have to wait for the disk.

What the store holds in memory (``TopicView.read_cached``) is returned at once.
Anything else is read through the store (``LogStore.read``, which may wait for a
disk or a database) and handed to a callback on the loop: records ahead of the
group's cursor (``fetch``, one read at a time), the records of pending messages
after a restart (``records_at``), and the record of a delivered message that
failed (``recall``): in-flight messages keep no copy of their record.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine

from linemq.broker.storage.log_store import LogStore, TopicView
from linemq.broker.storage.records import Record

Spawn = Callable[[Coroutine[object, object, None]], None]


class LogReads:
    def __init__(
        self, store: LogStore, topic: str, log: TopicView, batch: int, spawn: Spawn
    ) -> None:
        self.store = store
        self.topic = topic
        self.log = log
        self.batch = batch  # records per read from the store
        self._spawn = spawn
        self.fetching = False
        self._ahead: list[Record] = []  # read by ``fetch`` and not handed out yet
        self._recalls: list[tuple[int, Callable[[Record | None], None]]] = []
        self._recalling = False
        self.closed = False

    def fetch(self, offset: int, then: Callable[[int, list[Record]], None]) -> None:
        """Read records from ``offset`` on; ``then(offset, records)`` unless one is running."""
        if not self.fetching:
            self.fetching = True
            self._spawn(self._fetch(offset, then))

    async def _fetch(self, offset: int, then: Callable[[int, list[Record]], None]) -> None:
        try:
            records = await self.store.read(self.topic, offset, self.batch)
        finally:
            self.fetching = False
        if not self.closed:
            then(offset, records)

    def ahead(self, offset: int, count: int) -> list[Record] | None:
        """Up to ``count`` records from ``offset`` on, out of what the last ``fetch`` read
        beyond what its caller took (``keep``); None if that does not start at ``offset``."""
        ahead = self._ahead
        if not ahead:
            return None
        i = 0
        while i < len(ahead) and ahead[i].offset < offset:
            i += 1
        if i == len(ahead) or ahead[i].offset != offset:
            self._ahead = []
            return None
        self._ahead = ahead[i + count :]
        return ahead[i : i + count]

    def keep(self, records: list[Record]) -> None:
        """Records a fetch read that the caller does not take yet (see ``ahead``)."""
        self._ahead = records

    async def records_at(self, offsets: list[int]) -> dict[int, Record]:
        """The records at ``offsets`` (sorted) that still exist: a read per run of nearby
        offsets, not per offset."""
        found: dict[int, Record] = {}
        i = 0
        while i < len(offsets):
            records = await self.store.read(self.topic, offsets[i], self.batch)
            if not records:
                break
            found.update((r.offset, r) for r in records)
            while i < len(offsets) and offsets[i] <= records[-1].offset:
                i += 1
        return {offset: found[offset] for offset in offsets if offset in found}

    def recall(self, offset: int, then: Callable[[Record | None], None]) -> Record | None:
        """The record at ``offset`` if the tail cache has it; otherwise None now, and
        ``then(record)`` once it is read from disk (None if it was deleted meanwhile)."""
        cached = self.log.read_cached(offset, 1)
        if cached and cached[0].offset == offset:
            return cached[0]
        self._recalls.append((offset, then))
        if not self._recalling:
            self._recalling = True
            self._spawn(self._recall_from_disk())
        return None

    async def _recall_from_disk(self) -> None:
        try:
            while self._recalls and not self.closed:
                batch, self._recalls = self._recalls, []
                records = await self.records_at(sorted({offset for offset, _ in batch}))
                for offset, then in batch:
                    if not self.closed:
                        then(records.get(offset))
        finally:
            self._recalling = False
