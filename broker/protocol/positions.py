"""Where a subscription or group starts reading: a value the parser builds and delivery resolves."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Position:
    """Where a new subscription or group starts: ``earliest``, ``latest``, an offset, a time."""

    kind: str  # "earliest" | "latest" | "offset" | "time"
    value: float = 0.0
