"""Work on what is stored, away from publishing: retention, purges, reloading dedup.

The store does the dropping (``log_store.LogUpkeep``), off the event loop where it
touches a disk or a database; here is when it runs, how much each topic keeps, and
what groups are told afterwards.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from linemq.broker.config import Config
from linemq.broker.delivery.router import Router
from linemq.broker.engine.dedup import DedupIndex
from linemq.broker.protocol.names import is_dead_letter_topic
from linemq.broker.storage.log_store import LogStore, Store

log = structlog.get_logger(__name__)


async def retention_loop(store: Store, router: Router, config: Config) -> None:
    interval = config.retention_check_ms / 1000
    while True:
        await asyncio.sleep(interval)
        try:
            await apply_retention(store, router, config)
        except Exception:
            log.exception("retention_failed")


async def apply_retention(store: Store, router: Router, config: Config) -> None:
    """Drop each topic's oldest records past its limits."""
    now = time.time()
    for name in store.topics():
        max_bytes, max_age = config.retention_for(name)
        view = store.get(name)
        if view is None:
            continue
        if config.dlq_max_letters and is_dead_letter_topic(name):
            floor = view.last_offset - config.dlq_max_letters + 1
            await drop_below(store, router, name, floor, now)
        if not (max_bytes or max_age):
            continue
        first = view.first_offset
        await store.expire(name, max_bytes or None, max_age or None, now)
        if view.first_offset != first:
            router.deleted_before(name)


async def drop_below(
    store: Store, router: Router, topic: str, floor: int, now: float, max_age: float | None = None
) -> int:
    """Drop the oldest records below ``floor`` (and, with ``max_age``, older than that), as
    far as the store keeps them apart; returns how many records went."""
    view = store.get(topic)
    if view is None:
        return 0
    first = view.first_offset
    dropped = await store.drop_before(topic, floor, now, max_age)
    if view.first_offset != first:
        router.deleted_before(topic)
    return dropped


async def purge(store: Store, router: Router, topic: str) -> int:
    """Delete every record of ``topic``; offsets go on. Returns how many were deleted."""
    if store.get(topic) is None:
        return 0
    dropped = await store.purge(topic)
    router.deleted_before(topic)
    return dropped


async def load_dedup(store: LogStore, dedup: DedupIndex, window: float) -> None:
    """Remember the publisher ids of the last window, from the logs themselves.

    A topic whose log cannot be read is logged and left out: its ids are not
    remembered (a retried PUT may be stored twice), and the broker still starts.
    """
    horizon = time.time() - window
    for topic in dedup.marked_topics():
        if store.get(topic) is None:
            continue
        try:
            await _load_topic_ids(store, topic, dedup, horizon)
        except Exception as exc:
            log.error("dedup_reload_failed", topic=topic, error=repr(exc))


async def _load_topic_ids(store: LogStore, topic: str, dedup: DedupIndex, horizon: float) -> None:
    offset = await store.offset_at(topic, horizon)
    while True:
        records = await store.read(topic, offset, 4096)
        if not records:
            break
        for record in records:
            if record.meta is not None and record.meta.pid is not None:
                dedup.remember(topic, record)
        offset = records[-1].offset + 1


def keep_offsets_unique(store: Store, router: Router) -> None:
    """A log that lost its tail goes on above every offset a group was handed.

    A power loss under ``--fsync interval`` can cost a log records that groups
    had already taken (their journals were synced, the log was not). Reusing
    those offsets would hand the groups, whose cursors are past them, new
    messages they never receive; so the log moves its next offset up instead,
    and reports the gap as lost offsets. Segment names need no help here: a log
    never goes on below its newest segment's base.
    """
    for topic, groups in router.groups.items():
        view = store.get(topic)
        if view is None or not groups:
            continue
        name, group = max(groups.items(), key=lambda item: item[1].state.cursor)
        cursor = group.state.cursor
        if cursor > view.last_offset + 1:
            reason = (
                f"the log ends at {view.last_offset} but group {name} "
                f"had taken offsets up to {cursor - 1}"
            )
            store.skip_to(topic, cursor, reason)
