"""A record as the bytes a client gets, by the protocol version it asked for."""

from __future__ import annotations

from broker.protocol import replies
from broker.protocol.v2 import frame
from broker.storage.records import Record


def delivery(version: int, topic: str, record: Record, attempt: int, kind: str = "MSG") -> bytes:
    """``MSG``/``HISTORY`` lines for v1 clients, ``MSG2``/``HISTORY2`` frames for v2 ones."""
    if version == 1:
        if kind == "MSG":
            return replies.msg(topic, record.id, record.offset, record.ts, record.msg)
        return replies.history(topic, record.id, record.offset, record.ts, record.msg)
    meta = record.meta
    if meta is None:
        return frame(kind + "2", topic, record.id, record.offset, record.ts, attempt,
                     record.msg.encode())  # fmt: skip
    return frame(
        kind + "2",
        topic,
        record.id,
        record.offset,
        record.ts,
        attempt,
        record.payload,
        meta.key,
        meta.priority,
        meta.headers,
    )
