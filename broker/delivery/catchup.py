"""A fanout subscription that starts in the past: read the log, then switch to live."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Final

from linemq.broker.delivery.clients import ClientState
from linemq.broker.storage.log_store import LogStore
from linemq.broker.storage.records import Record

CHUNK: Final = 1000
CHUNK_BYTES: Final = 256 * 1024  # what one reader holds while its client reads


async def catch_up(
    store: LogStore,
    deliveries: Callable[[int, str, Sequence[Record]], bytes],
    client: ClientState,
    topic: str,
    offset: int,
    go_live: Callable[[ClientState, str], None],
) -> None:
    """Send records from ``offset`` on, at the client's pace, then join the live fanout.

    A client that reads nothing for --write-timeout is dropped (``writable``).

    The switch happens with no await between the last "caught up" check and the
    registration, so no record can fall between the replay and live delivery.
    """
    log = store.get(topic)
    while log is not None and topic in client.topics:
        records = log.read_cached(offset, CHUNK, CHUNK_BYTES)
        if records is None:
            records = await store.read(topic, offset, CHUNK, CHUNK_BYTES)
            if topic not in client.topics:
                return
        if not records:
            if offset > log.written_offset:
                break
            await asyncio.sleep(0)  # written meanwhile: read again
            continue
        client.sender.send(deliveries(client.version, topic, records))
        offset = records[-1].offset + 1
        await client.sender.writable()
    go_live(client, topic)
