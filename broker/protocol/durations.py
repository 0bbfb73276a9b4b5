"""One way to read a duration, for the wire, the broker's flags and the clients.

``500ms``, ``5s``, ``2m``, ``1h``, ``1d``, ``1w`` or a bare number of seconds;
in Python also a number or a ``timedelta``. Pure and dependency-free so both the
broker and ``clients/`` import it: a value one side accepts, the other does too.
Negative, NaN and infinite values are refused everywhere.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Final

MAX_WIRE_DURATION: Final = 365 * 86400.0
"""The longest ``delay=``, ``ttl=``, ``ago:`` or NACK delay the protocol accepts."""

_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)?", re.IGNORECASE)
_UNITS: Final = {
    "": 1.0,
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
}

Duration = float | int | str | timedelta
"""Seconds as a number, a ``timedelta``, or text such as ``"5s"`` or ``"1.5h"``."""


def parse_duration(
    text: str, *, max_seconds: float | None = None, min_seconds: float = 0.0
) -> float:
    """Seconds from ``500ms``, ``5s``, ``2m``, ``1h``, ``1d``, ``1w`` or bare seconds.

    Raises ValueError for anything else, and outside ``min_seconds``..``max_seconds``.
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"invalid duration {text!r}: use e.g. 500ms, 5s, 2m, 1h, 1d")
    seconds = float(match.group(1)) * _UNITS[(match.group(2) or "").lower()]
    return _bounded(seconds, text, max_seconds, min_seconds)


def to_seconds(
    value: Duration, *, max_seconds: float | None = None, min_seconds: float = 0.0
) -> float:
    """Any accepted form (number, ``timedelta`` or text) to seconds, checked the same way."""
    if isinstance(value, str):
        return parse_duration(value, max_seconds=max_seconds, min_seconds=min_seconds)
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        raise ValueError(f"invalid duration {value!r}: use seconds, a timedelta or text like 5s")
    return _bounded(seconds, value, max_seconds, min_seconds)


def _bounded(seconds: float, value: object, max_seconds: float | None, min_seconds: float) -> float:
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {value!r}: must be finite and not negative")
    if max_seconds is not None and seconds > max_seconds:
        raise ValueError(f"duration {value!r} is over {max_seconds:g} seconds")
    if seconds < min_seconds:
        raise ValueError(f"duration {value!r} is under {min_seconds:g} seconds")
    return seconds
