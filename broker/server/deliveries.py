"""Records as the bytes a client gets, by the protocol version it asked for.

Delivery sends these bytes but knows no wire format: the server hands it ``ENCODER``
(``DeliveryContext.encoder``), these functions bound once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from linemq.broker.delivery.context import Encoder
from linemq.broker.protocol import replies
from linemq.broker.protocol.v2 import frame
from linemq.broker.storage.records import Record


def deliveries(
    version: int, topic: str, records: Sequence[Record], attempt: int = 1, kind: str = "MSG"
) -> bytes:
    """``MSG``/``HISTORY`` lines for v1 clients, ``MSG2``/``HISTORY2`` frames for v2 ones."""
    if version == 1:
        return replies.message_lines(kind, topic, records)
    return b"".join([_frame(kind, topic, r, attempt) for r in records])


def group_deliveries(
    version: int, topic: str, records: Sequence[Record], attempts: Mapping[int, int]
) -> bytes:
    """A pump's deliveries to one member; ``attempts``: of those delivered before, by offset."""
    if version == 1:
        return replies.message_lines("MSG", topic, records)
    return b"".join([_frame("MSG", topic, r, attempts.get(r.offset, 1)) for r in records])


def _frame(kind: str, topic: str, record: Record, attempt: int) -> bytes:
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


ENCODER: Final = Encoder(deliveries, group_deliveries)
