"""When a repeatable job is due: pure functions of (timing, anchor, now), no clock, no I/O.

``every=`` jobs are due at ``anchor + k * every`` (k = 1, 2, ...), the anchor being
when the job was (re)scheduled, so a restart does not shift them. ``cron=`` jobs
are due at the expression's times, in UTC unless ``tz=`` names a zone; the cron
grammar is croniter's (five fields, or six with seconds last; ``@hourly`` and
the like), never a parser of our own.

Catch-up after downtime is one firing, for the latest due time that passed
(``latest_due``), not one per missed slot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

MAX_CRON_FIELDS: Final = 6
"""Five fields, or six with seconds: croniter's seventh (years) is not offered."""


class BadTiming(ValueError):
    """The ``ERR`` text for a timing a ``SCHEDULE`` may not have."""


@dataclass(frozen=True, slots=True)
class Timing:
    every: float | None = None
    cron: str | None = None
    tz: str | None = None


def check(timing: Timing, min_every: float) -> None:
    """Refuse an ``every=`` under the broker's floor, a cron that is not cron or never fires,
    and an unknown zone (``BadTiming`` carries the reply)."""
    if timing.every is not None:
        if not timing.every > 0:
            raise BadTiming("every must be more than 0")
        if timing.every < min_every:
            raise BadTiming(f"every must be at least {_seconds_text(min_every)}")
        return
    assert timing.cron is not None
    zone = _zone(timing.tz)
    expr = timing.cron
    fields = len(expr.split())
    if not expr.startswith("@") and not 5 <= fields <= MAX_CRON_FIELDS:
        raise BadTiming(f"invalid cron expression: {expr}")
    try:
        valid = croniter.is_valid(expr)
        if valid:
            croniter(expr, datetime.fromtimestamp(0, zone)).get_next(float)
    except (CroniterBadCronError, CroniterBadDateError, ValueError, KeyError):
        valid = False
    if not valid:
        raise BadTiming(f"invalid cron expression: {expr}")


def next_due(timing: Timing, anchor: float, after: float) -> float:
    """The first due time strictly after ``after`` (an ``every=`` series starts at ``anchor``)."""
    if timing.every is not None:
        every = timing.every
        k = max(1, math.floor((after - anchor) / every) + 1)
        due = anchor + k * every
        while due <= after:  # float rounding: never the slot ``after`` already is
            k += 1
            due = anchor + k * every
        return due
    assert timing.cron is not None
    start = datetime.fromtimestamp(after, _zone(timing.tz))
    zone = start.tzinfo
    due = float(croniter(timing.cron, start).get_next(float))
    while due <= after:
        due = float(croniter(timing.cron, datetime.fromtimestamp(due, zone)).get_next(float))
    return due


def latest_due(timing: Timing, anchor: float, since: float, now: float) -> float | None:
    """The latest due time after ``since`` and at or before ``now``; None if none passed."""
    first = next_due(timing, anchor, since)
    if first > now:
        return None
    if timing.every is not None:
        k = math.floor((now - anchor) / timing.every)
        due = anchor + k * timing.every
        if due > now:  # float rounding
            due -= timing.every
        return due if due >= first else first
    assert timing.cron is not None
    zone = _zone(timing.tz)
    prev = float(croniter(timing.cron, datetime.fromtimestamp(now, zone)).get_prev(float))
    following = next_due(timing, anchor, prev)
    due = following if following <= now else prev
    return due if due >= first else first


def due_key(due: float) -> int:
    """A due time in whole milliseconds: the same slot computed twice (before a crash and
    after) names the same firing, whatever the float arithmetic did."""
    return round(due * 1000)


def _zone(name: str | None) -> tzinfo:
    if name is None:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadTiming(f"invalid time zone: {name}") from None


def _seconds_text(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"
