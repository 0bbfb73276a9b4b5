"""Dead letters as the ``DLQ`` block carries them: one JSON object per letter.

Kept apart from the line parser because the object is the broker's own record
format, checked field by field (a wrong type is a ``TypeError``, a missing key a
``KeyError``; the caller turns either into a ``ProtocolError``).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from linemq.clients.options import PRIORITY_NAMES

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Replayed:
    """The message a dead letter was replayed as."""

    offset: int
    id: str
    ts: float | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that gave up on its group, with why and when."""

    dlq_offset: int
    topic: str
    id: str
    offset: int
    ts: float | None
    text: str
    group: str | None
    attempts: int
    reason: str
    first_delivery_ts: float | None
    last_delivery_ts: float | None
    dead_ts: float | None
    replayed: Replayed | None
    original: dict[str, Any] | None = None
    """The raw stored v2 fields of a ``PUT`` (None for a ``PUB``); prefer the named
    fields below, which are decoded from it."""
    raw_json: str = field(default="", repr=False, compare=False)
    payload: bytes = b""
    """The exact payload a replay publishes (``text`` is its one-line view)."""
    key: str | None = None
    priority: str = "normal"
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)
    publisher_id: str | None = None
    """The ``PUT … id=`` it was published with (a replay does not carry it over)."""
    deliver_at: float | None = None
    expires_at: float | None = None
    error: str | None = None
    """The consumer's error text for the failure that dead-lettered it (``term(reason)``,
    ``nack(reason=)``), None if it gave none."""


def parse_dead_letter(dlq_offset: int, obj: dict[str, Any], raw_json: str) -> DeadLetter:
    replayed, original = obj.get("replayed"), obj.get("original")
    if replayed is not None and not isinstance(replayed, dict):
        raise TypeError(f"'replayed' should be null or an object, got {replayed!r}")
    if original is not None and not isinstance(original, dict):
        raise TypeError(f"'original' should be an object, got {original!r}")
    return DeadLetter(
        dlq_offset=dlq_offset,
        topic=_typed(obj, "topic", str),
        id=_typed(obj, "id", str),
        offset=_typed(obj, "offset", int),
        ts=_seconds(obj.get("ts")),
        text=_typed(obj, "msg", str),
        group=obj.get("group") if isinstance(obj.get("group"), str) else None,
        attempts=int(obj.get("attempts") or 0),
        reason=str(obj.get("reason") or ""),
        first_delivery_ts=_seconds(obj.get("first_delivery_ts")),
        last_delivery_ts=_seconds(obj.get("last_delivery_ts")),
        dead_ts=_seconds(obj.get("dead_ts")),
        replayed=(
            None
            if replayed is None
            else Replayed(
                offset=_typed(replayed, "offset", int),
                id=_typed(replayed, "id", str),
                ts=_seconds(replayed.get("ts")),
            )
        ),
        original=original,
        raw_json=raw_json,
        **_named_fields(_typed(obj, "msg", str), original or {}),
        error=_optional(obj, "error", str),
    )


def _named_fields(text: str, original: dict[str, Any]) -> dict[str, Any]:
    """The stored short keys (``b64``, ``k``, ``p``, ``h``, ``pid``, ``at``, ``exp``) by name."""
    b64, headers, priority = original.get("b64"), original.get("h"), original.get("p")
    payload = text.encode()
    if isinstance(b64, str):
        try:
            payload = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise TypeError("'b64' is not base64") from None
    return {
        "payload": payload,
        "key": _optional(original, "k", str),
        "priority": PRIORITY_NAMES.get(priority, "normal") if type(priority) is int else "normal",
        "headers": (
            {str(k): str(v) for k, v in headers.items()} if isinstance(headers, dict) else {}
        ),
        "publisher_id": _optional(original, "pid", str),
        "deliver_at": _seconds(original.get("at")),
        "expires_at": _seconds(original.get("exp")),
    }


def _optional(obj: dict[str, Any], key: str, kind: type[_T]) -> _T | None:
    value = obj.get(key)
    return value if isinstance(value, kind) else None


def _typed(obj: dict[str, Any], key: str, kind: type[_T]) -> _T:
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{key!r} should be {kind.__name__}, got {value!r}")
    return value


def _seconds(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise TypeError(f"timestamp should be a number, got {value!r}")
    return float(value)
