"""A ``SCHEDULE`` line of a ``SCHEDULES`` reply, parsed (pure; ``clients/schedules.py`` encodes).

Kept in its own module so ``replies.py`` can parse it without importing the encoders.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from linemq.clients.errors import ProtocolError

_WORD: Final = re.compile(r'(?:cron|tz)="[^"]*"|\S+')
PUT_OPTIONS: Final = ("key", "priority", "delay", "ttl", "max_retries")
"""Option names a job keeps from ``PUT`` (and ``h.<name>`` headers)."""


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """One repeatable job: its timing (``every`` as written, or ``cron`` with ``tz``), the next
    and last due times (epoch seconds; ``last`` None if it never fired), how often it fired,
    its payload size, and the ``PUT`` options it publishes with, as given."""

    topic: str
    name: str
    next: float
    last: float | None
    fired: int
    bytes: int
    every: str | None = None
    cron: str | None = None
    tz: str | None = None
    options: tuple[str, ...] = ()
    fields: Mapping[str, str] = field(default_factory=dict)
    """Fields this client does not know yet (newer brokers), as text."""


def parse_schedule_line(rest: str, line: str) -> ScheduleInfo:
    """The words after ``SCHEDULE``: ``<topic> <name> k=v ... [options]``."""
    words = _WORD.findall(rest)
    if len(words) < 2:
        raise ProtocolError(f"malformed SCHEDULE line: {line[:200]!r}")
    topic, name, *pairs = words
    known: dict[str, str] = {}
    options: list[str] = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ProtocolError(f"malformed SCHEDULE field {pair!r} in {line[:200]!r}")
        if key in PUT_OPTIONS or key.startswith("h."):
            options.append(pair)
        else:
            known[key] = value.removeprefix('"').removesuffix('"')
    try:
        last = known.pop("last")
        return ScheduleInfo(
            topic,
            name,
            float(known.pop("next")),
            None if last == "-" else float(last),
            int(known.pop("fired")),
            int(known.pop("bytes")),
            known.pop("every", None),
            known.pop("cron", None),
            known.pop("tz", None),
            tuple(options),
            known,
        )
    except (KeyError, ValueError) as exc:
        raise ProtocolError(f"malformed SCHEDULE line ({exc}): {line[:200]!r}") from None
