"""Values that protocol v2 options carry, formatted and checked the broker's way.

Durations (``250ms``, ``1.5s``), start positions (``earliest``, ``time:…``,
``ago:…``), priorities, ``key=``/``id=`` tokens, percent-escaped header values and
topic patterns. The rules mirror ``broker/protocol/v2.py`` and ``parser.py``;
durations, names, priorities, header names and tokens are checked by the broker's
own pure vocabulary modules (``broker/protocol/durations.py``, ``names.py``,
``message_options.py``). Anything refused
here would be an ``ERR`` from the broker, so it is caught before a byte is sent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Final
from urllib.parse import unquote_to_bytes

from linemq.broker.protocol import durations, filters, message_options, names

PRIORITIES: Final = message_options.PRIORITIES
PRIORITY_NAMES: Final = message_options.PRIORITY_NAMES
MAX_DURATION: Final = durations.MAX_WIRE_DURATION
MAX_OPTION_VALUE: Final = 1024
MAX_EPOCH: Final = 1e11
EDGE_POSITIONS: Final = ("earliest", "latest")

Duration = durations.Duration
"""Seconds as a number, a ``timedelta``, or text like ``"5m"`` (the broker's own syntax)."""

Position = str | int | float | datetime | timedelta
"""``"earliest"``/``"latest"``, an offset (int), an epoch time (float or datetime),
``timedelta`` for "this long ago", or the wire text (``"time:…"``, ``"ago:5m"``)."""


HeaderFilterSpec = str | Sequence[str] | Mapping[str, str | Sequence[str]]
"""A group's header filter: one test in the wire syntax (``"h.type=email|sms"``,
``"!h.debug"``), a list of them (all must hold), or ``{"type": ["email", "sms"]}``:
header name to the value (or values) it must have, escaped here."""


def filter_words(spec: HeaderFilterSpec) -> list[str]:
    """The ``filter=<test>`` words of a ``SUB``, checked by the broker's own grammar
    (``broker/protocol/filters.py``) and in its canonical order; ValueError if bad."""
    if isinstance(spec, str):
        tests = [spec]
    elif isinstance(spec, Mapping):
        tests = [filters.equals_test(name, values) for name, values in spec.items()]
    else:
        tests = list(spec)
    if not all(isinstance(t, str) and t and not any(c.isspace() for c in t) for t in tests):
        raise ValueError(f"a filter test is text without spaces (escape them as %20): {spec!r}")
    return str(filters.parse_filter(tests)).split()


def parse_duration(text: str) -> float:
    """``500ms``, ``5s``, ``2m``, ``1h``, ``1d``, ``1w`` or bare seconds, up to 365 days.

    The broker's own parser (``broker/protocol/durations.py``), so a value this
    accepts is one the broker accepts.
    """
    return durations.parse_duration(text, max_seconds=MAX_DURATION)


def to_seconds(value: Duration, *, min_seconds: float = 0.0) -> float:
    """A ``Duration`` in seconds: ValueError for negative, non-finite, under ``min_seconds``
    or over 365 days."""
    return durations.to_seconds(value, max_seconds=MAX_DURATION, min_seconds=min_seconds)


def format_duration(value: Duration) -> str:
    """The shortest exact wire form: ``5s``, ``250ms``, ``1.5s``."""
    if isinstance(value, str):
        parse_duration(value)
        return value.strip()
    seconds = to_seconds(value)
    if seconds.is_integer():
        return f"{int(seconds)}s"
    millis = round(seconds * 1000, 6)
    if seconds < 1 and millis.is_integer():
        return f"{int(millis)}ms"
    return f"{seconds:.6f}".rstrip("0") + "s"


def format_epoch(value: float | datetime) -> str:
    at = value.timestamp() if isinstance(value, datetime) else float(value)
    if not 0 <= at < MAX_EPOCH:
        raise ValueError(f"time must be epoch seconds between 0 and {MAX_EPOCH:.0f}: {value!r}")
    return f"{at:.6f}".rstrip("0").rstrip(".")


def format_position(value: Position) -> str:
    """What follows ``from=`` in SUB, or the position argument of SEEK."""
    match value:
        case bool():
            raise ValueError(f"invalid position {value!r}")
        case int():
            if value < 1:
                raise ValueError(f"an offset position must be 1 or more, got {value}")
            return str(value)
        case float() | datetime():
            return "time:" + format_epoch(value)
        case timedelta():
            return "ago:" + format_duration(value)
        case str():
            return _check_position_text(value)
    raise ValueError(f"invalid position {value!r}")


def _check_position_text(text: str) -> str:
    if text in EDGE_POSITIONS or (text.isdigit() and int(text) >= 1):
        return text
    kind, _, rest = text.partition(":")
    try:
        if kind == "time" and math.isfinite(float(rest)):
            return text
        if kind == "ago":
            parse_duration(rest)
            return text
    except ValueError:
        pass
    raise ValueError(
        f"invalid position {text!r}: use earliest, latest, an offset, "
        "time:<epoch seconds> or ago:<duration>"
    )


def format_priority(value: str | int) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value in PRIORITY_NAMES:
        return PRIORITY_NAMES[value]
    if isinstance(value, str) and value.lower() in PRIORITIES:
        return value.lower()
    if isinstance(value, str) and value.isdigit() and int(value) in PRIORITY_NAMES:
        return PRIORITY_NAMES[int(value)]  # the broker reads "0"-"3" too
    raise ValueError(f"invalid priority {value!r}: use low, normal, high, critical or 0-3")


def check_token(value: str, what: str) -> str:
    """``key=`` and ``id=`` values: 1-200 printable ASCII characters, no spaces."""
    if not message_options.is_valid_token(value):
        raise ValueError(f"invalid {what} {value!r}: use 1-200 printable ASCII, no spaces")
    return value


def format_header(name: str, value: str) -> str:
    """One ``h.<name>=<escaped value>`` option."""
    if not message_options.is_valid_header_name(name):
        raise ValueError(f"invalid header name {name!r}: use 1-100 of [A-Za-z0-9_.-]")
    escaped = escape_value(value)
    if len(escaped) > MAX_OPTION_VALUE:
        raise ValueError(f"header {name!r} is over {MAX_OPTION_VALUE} characters once escaped")
    return f"h.{name}={escaped}"


def escape_value(value: str) -> str:
    """Percent-escape what would break the line: spaces, controls, ``%``, ``=``, non-ASCII."""
    return "".join(
        chr(b) if 0x20 < b < 0x7F and b not in (0x25, 0x3D) else f"%{b:02X}" for b in value.encode()
    )


def unescape_value(text: str) -> str:
    """Undo ``escape_value``; a value that is not UTF-8 once unescaped is a ValueError."""
    return unquote_to_bytes(text).decode()


# --- topic patterns: the broker's own rules (broker/protocol/names.py) ---------

is_pattern = names.is_pattern
is_valid_pattern = names.is_valid_pattern
topic_matches = names.topic_matches
