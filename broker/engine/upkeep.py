"""Work on what is stored, away from publishing: retention, purges, reloading dedup.

Each drops or reads whole segments. Deleting files and reading logs run in
worker threads, so none of it stalls the event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import structlog

from linemq.broker.config import Config
from linemq.broker.delivery.router import Router
from linemq.broker.engine.dedup import DedupIndex
from linemq.broker.protocol.names import is_dead_letter_topic
from linemq.broker.storage.store import FileStore
from linemq.broker.storage.topic_log import TopicLog

log = structlog.get_logger(__name__)


async def retention_loop(store: FileStore, router: Router, config: Config) -> None:
    interval = config.retention_check_ms / 1000
    while True:
        await asyncio.sleep(interval)
        try:
            await apply_retention(store, router, config)
        except Exception:
            log.exception("retention_failed")


async def apply_retention(store: FileStore, router: Router, config: Config) -> None:
    """Drop whole old segments past each topic's limits; unlink them off the loop."""
    now = time.time()
    for name in store.topics():
        max_bytes, max_age = config.retention_for(name)
        topic_log = store.get(name)
        if topic_log is None:
            continue
        if config.dlq_max_letters and is_dead_letter_topic(name):
            floor = topic_log.last_offset - config.dlq_max_letters + 1
            await drop_below(topic_log, router, floor, now)
        if not (max_bytes or max_age):
            continue
        result = topic_log.apply_retention(max_bytes or None, max_age or None, now, delete=False)
        if not result.segments:
            continue
        router.deleted_before(name)
        await asyncio.to_thread(topic_log.delete_files, list(result.paths))


async def drop_below(
    topic_log: TopicLog, router: Router, floor: int, now: float, max_age: float | None = None
) -> int:
    """Drop the oldest whole sealed segments that end below ``floor`` (and, with ``max_age``,
    whose newest record is older than that); returns how many records went."""
    by_size = None if max_age else 0  # 0 bytes allowed: every sealed segment is a candidate
    candidates = await asyncio.to_thread(topic_log.expired_segments, by_size, max_age, now)
    prefix = list(itertools.takewhile(lambda s: s.last_offset < floor, candidates))
    if not prefix:
        return 0
    result = topic_log.drop_segments(prefix)
    if result.segments:
        router.deleted_before(topic_log.name)
        await asyncio.to_thread(topic_log.delete_files, list(result.paths))
    return result.records


async def purge(store: FileStore, router: Router, topic: str) -> int:
    """Delete every record of ``topic``; offsets go on. Returns how many were deleted."""
    topic_log = store.get(topic)
    if topic_log is None:
        return 0
    result = topic_log.purge_segments()
    router.deleted_before(topic)
    await asyncio.to_thread(topic_log.delete_files, list(result.paths))
    return result.records


async def load_dedup(store: FileStore, dedup: DedupIndex, window: float) -> None:
    """Remember the publisher ids of the last window, from the logs themselves.

    A topic whose log cannot be read is logged and left out: its ids are not
    remembered (a retried PUT may be stored twice), and the broker still starts.
    """
    horizon = time.time() - window
    for topic in dedup.marked_topics():
        topic_log = store.get(topic)
        if topic_log is None:
            continue
        try:
            await _load_topic_ids(topic_log, topic, dedup, horizon)
        except Exception as exc:
            log.error("dedup_reload_failed", topic=topic, error=repr(exc))


async def _load_topic_ids(
    topic_log: TopicLog, topic: str, dedup: DedupIndex, horizon: float
) -> None:
    offset = await asyncio.to_thread(topic_log.offset_at, horizon)
    while True:
        records = await asyncio.to_thread(topic_log.read, offset, 4096)
        if not records:
            break
        for record in records:
            if record.meta is not None and record.meta.pid is not None:
                dedup.remember(topic, record)
        offset = records[-1].offset + 1


def keep_offsets_unique(store: FileStore, router: Router) -> None:
    """A log that lost its tail goes on above every offset a group was handed.

    A power loss under ``--fsync interval`` can cost a log records that groups
    had already taken (their journals were synced, the log was not). Reusing
    those offsets would hand the groups, whose cursors are past them, new
    messages they never receive; so the log moves its next offset up instead,
    and reports the gap as lost offsets. Segment names need no help here: a log
    never goes on below its newest segment's base.
    """
    for topic, groups in router.groups.items():
        topic_log = store.get(topic)
        if topic_log is None or not groups:
            continue
        name, group = max(groups.items(), key=lambda item: item[1].state.cursor)
        cursor = group.state.cursor
        if cursor > topic_log.last_offset + 1:
            reason = (
                f"the log ends at {topic_log.last_offset} but group {name} "
                f"had taken offsets up to {cursor - 1}"
            )
            topic_log.advance_to(cursor, reason)
