"""The fsync policy: when bytes already written to the OS count as durable.

``always`` is a group commit: while one fsync runs, new writes pile up and the
next fsync covers them all; each reply waits for the fsync that covers it.
``interval`` fsyncs dirty files every N ms in a worker thread (Redis'
``appendfsync everysec``); ``never`` leaves it to the OS. With the last two,
a tick's writes count as done as soon as they reach the OS.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Protocol

import structlog

from linemq.broker.config import FsyncPolicy
from linemq.broker.storage.records import StorageError

log = structlog.get_logger(__name__)


class Syncable(Protocol):
    def sync(self) -> None: ...


class Writable(Syncable, Protocol):
    """A topic log or journal: buffered appends written once per tick, then synced."""

    def write(self) -> bool:
        """False: not now; the target asks for another tick when it can be written."""
        ...


class Durability:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        policy: FsyncPolicy,
        interval_ms: int,
        on_durable: Callable[[int], None],
    ) -> None:
        self.loop = loop
        self.policy = policy
        self.interval = interval_ms / 1000
        self.on_durable = on_durable
        self.replies_wait = policy == "always"
        """Replies wait for an fsync, not only for the write."""
        self._dirty: dict[Syncable, None] = {}
        self._written_gen = -1
        self._syncing: asyncio.Task[None] | None = None
        self._interval_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.policy == "interval":
            self._interval_task = self.loop.create_task(self._every_interval())

    def note_written(self, f: Syncable) -> None:
        """``f`` was written outside a tick (never under ``always``): sync it with the rest."""
        self._dirty[f] = None

    def written(self, gen: int, files: Iterable[Syncable]) -> bool:
        """Generation ``gen``'s bytes reached the OS: True if that is durable enough now.

        Otherwise ``on_durable(gen)`` is called once an fsync has covered them.
        """
        for f in files:
            self._dirty[f] = None
        self._written_gen = gen
        if self.policy != "always":
            return True
        if self._dirty and self._syncing is None:
            self._syncing = self.loop.create_task(self._group_commit())
        return not self._dirty and self._syncing is None

    async def _group_commit(self) -> None:
        try:
            while self._dirty:
                files, gen = list(self._dirty), self._written_gen
                self._dirty.clear()
                await asyncio.to_thread(_sync_all, files)
                # Nothing new dirty: the generations written meanwhile wrote nothing
                # this fsync did not cover, so they are durable too.
                self.on_durable(gen if self._dirty else self._written_gen)
        finally:
            self._syncing = None

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self._dirty:
                files = list(self._dirty)
                self._dirty.clear()
                await asyncio.to_thread(_sync_all, files)

    async def close(self) -> None:
        """Stop the timer and fsync whatever is still dirty, whatever the policy."""
        if self._interval_task is not None:
            self._interval_task.cancel()
        if self._syncing is not None:
            await asyncio.gather(self._syncing, return_exceptions=True)
        files = list(self._dirty)
        self._dirty.clear()
        await asyncio.to_thread(_sync_all, files)
        self.on_durable(self._written_gen)


def _sync_all(files: list[Syncable]) -> None:
    for f in files:
        try:
            f.sync()
        except (OSError, StorageError):
            # A failed fsync may mean lost data: say so loudly rather than hide it.
            log.exception("fsync_failed", file=repr(f))
