"""How a v2 ``PUT`` becomes a record: its stored metadata, and the text v1 readers see.

A payload that is one line of UTF-8 is stored as the record's text, as a ``PUB``
would be; anything else (binary, several lines) is stored exactly, base64 in
the metadata, with a readable stand-in as the text (protocol.md, "Protocol v2").
"""

from __future__ import annotations

from linemq.broker.protocol.v2 import Put, v1_text
from linemq.broker.storage.records import Meta


def stored_meta(put: Put, now: float) -> Meta:
    """The stored metadata of a v2 publish: relative times become absolute ones."""
    text = _single_line_text(put.payload)
    return Meta(
        data=None if text is not None else put.payload,
        headers=put.headers or None,
        key=put.key,
        priority=put.priority,
        deliver_at=put.at or (now + put.delay if put.delay else 0.0),
        expires_at=now + put.ttl if put.ttl else 0.0,
        pid=put.pid,
        max_retries=put.max_retries,
    )


def record_text(payload: bytes, meta: Meta) -> str:
    """The record's text: the payload itself, or what v1 clients are shown for binary."""
    return v1_text(payload) if meta.data is not None else payload.decode()


def _single_line_text(payload: bytes) -> str | None:
    if b"\n" in payload or b"\r" in payload:
        return None
    try:
        return payload.decode()
    except UnicodeDecodeError:
        return None
