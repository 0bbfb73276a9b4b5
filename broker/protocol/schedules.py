"""Repeatable jobs on the wire: ``SCHEDULE``, ``SCHEDULES`` and ``UNSCHEDULE`` (pure).

``SCHEDULE <topic> <name> <nbytes> every=<duration>|cron="<expr>" [tz=<zone>] [PUT options]``
is followed by exactly ``nbytes`` of payload and a newline, as ``PUT`` is, so a
job's payload may hold any bytes. The header line only has to say how many bytes
follow; everything else is checked once the payload is here, so a refused
``SCHEDULE`` never leaves its payload to be read as a command.

Only ``cron="..."`` and ``tz="..."`` may be quoted: a cron expression has spaces.
Whether the expression is valid cron, and whether ``every=`` is over the broker's
floor, the server decides (server/schedule_times.py): this module imports nothing
of ours but the protocol's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from linemq.broker.protocol.errors import ProtocolError
from linemq.broker.protocol.names import is_valid_name
from linemq.broker.protocol.replies import ts_text
from linemq.broker.protocol.v2 import Put, PutHeader, build_put, parse_duration

SCHEDULE_USAGE: Final = (
    'usage: SCHEDULE <topic> <name> <nbytes> every=<duration>|cron="<expr>" [option=value ...]'
)
SCHEDULES_USAGE: Final = "usage: SCHEDULES [topic]"
UNSCHEDULE_USAGE: Final = "usage: UNSCHEDULE <topic> <name>"
NEEDS_TIMING: Final = 'schedule needs every=<duration> or cron="<expr>"'
SCHEDULES_END: Final = b"OK schedules end\n"
MAX_CRON_CHARS: Final = 200
_WORD: Final = re.compile(r'(?:cron|tz)="[^"]*"|\S+')
_FORBIDDEN: Final = {
    "id": "the broker gives each firing its own publisher id",
    "at": "a repeated job cannot have one time: use delay=",
}


@dataclass(frozen=True, slots=True)
class ScheduleHeader:
    """A ``SCHEDULE`` line; the connection then reads ``nbytes`` of payload."""

    topic: str
    name: str
    nbytes: int
    options: tuple[str, ...]

    def build(self, payload: bytes) -> Schedule:
        return build_schedule(self, payload)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A checked ``SCHEDULE``: when (``every``/``cron``, ``tz``) and what (``put``).

    ``every_text`` and ``options`` are kept as the client wrote them: they are
    stored, listed by ``SCHEDULES`` and checked again the same way after a restart.
    """

    topic: str
    name: str
    put: Put
    options: tuple[str, ...]
    every: float | None = None
    every_text: str | None = None
    cron: str | None = None
    tz: str | None = None


@dataclass(frozen=True, slots=True)
class ListSchedules:
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class Unschedule:
    topic: str
    name: str


def split_words(text: str) -> list[str]:
    """Whitespace-separated words, a ``cron="..."`` or ``tz="..."`` being one word."""
    return _WORD.findall(text)


def parse_schedule(rest: str) -> ScheduleHeader:
    """The header line: names are checked with the payload, so it is always read."""
    words = split_words(rest)
    if len(words) < 3 or not (words[2].isascii() and words[2].isdigit()):
        raise ProtocolError(SCHEDULE_USAGE)
    return ScheduleHeader(words[0], words[1], int(words[2]), tuple(words[3:]))


def build_schedule(header: ScheduleHeader, payload: bytes) -> Schedule:
    """Check a ``SCHEDULE`` now that its payload is here; the job's options as ``PUT``'s."""
    if not is_valid_name(header.topic):
        raise ProtocolError("invalid topic name")
    if not is_valid_name(header.name):
        raise ProtocolError("invalid schedule name")
    every_text = cron = tz = None
    put_options: list[str] = []
    for option in header.options:
        name, sep, value = option.partition("=")
        if name == "every" and sep and every_text is None:
            every_text = value
        elif name == "cron" and sep and cron is None:
            cron = _unquote(value)
            if not cron or len(cron) > MAX_CRON_CHARS:
                raise ProtocolError(f"invalid cron expression: {cron[:MAX_CRON_CHARS]}")
        elif name == "tz" and sep and tz is None:
            tz = _unquote(value)
        elif name in _FORBIDDEN and sep:
            raise ProtocolError(f"invalid option: {option[:100]} ({_FORBIDDEN[name]})")
        elif name in ("every", "cron", "tz"):
            raise ProtocolError(f"invalid option: {option[:100]}")
        else:
            put_options.append(option)
    if every_text is not None and cron is not None:
        raise ProtocolError("use every= or cron=, not both")
    if every_text is None and cron is None:
        raise ProtocolError(NEEDS_TIMING)
    if tz is not None and cron is None:
        raise ProtocolError("tz= goes with cron=")
    every = None
    if every_text is not None:
        try:
            every = parse_duration(every_text)
        except ValueError:
            raise ProtocolError(
                f"invalid option: every={every_text[:100]} (e.g. 500ms, 5s, 2m, 1h)"
            ) from None
    put = build_put(PutHeader(header.topic, len(payload), tuple(put_options)), payload)
    return Schedule(header.topic, header.name, put, tuple(put_options), every, every_text, cron, tz)


def parse_schedules(rest: str) -> ListSchedules:
    words = rest.split()
    if len(words) > 1:
        raise ProtocolError(SCHEDULES_USAGE)
    if words and not is_valid_name(words[0]):
        raise ProtocolError("invalid topic name")
    return ListSchedules(words[0] if words else None)


def parse_unschedule(rest: str) -> Unschedule:
    words = rest.split()
    if len(words) != 2:
        raise ProtocolError(UNSCHEDULE_USAGE)
    if not is_valid_name(words[0]):
        raise ProtocolError("invalid topic name")
    if not is_valid_name(words[1]):
        raise ProtocolError("invalid schedule name")
    return Unschedule(words[0], words[1])


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].strip()
    return value


# -- replies -------------------------------------------------------------------


def timing_words(every_text: str | None, cron: str | None, tz: str | None) -> list[str]:
    """``every=5m``, or ``cron="0 * * * *"`` with ``tz="Europe/Paris"`` if one was given."""
    if cron is not None:
        words = [f'cron="{cron}"']
        if tz is not None:
            words.append(f'tz="{tz}"')
        return words
    return [f"every={every_text}"]


def scheduled(topic: str, name: str, next_due: float) -> bytes:
    return f"OK scheduled {topic} {name} next={ts_text(next_due)}\n".encode()


def unscheduled(topic: str, name: str) -> bytes:
    return f"OK unscheduled {topic} {name}\n".encode()


def schedule_line(
    topic: str,
    name: str,
    timing: list[str],
    next_due: float,
    last_due: float | None,
    fired: int,
    nbytes: int,
    options: tuple[str, ...],
) -> bytes:
    """``SCHEDULE <topic> <name> <timing> next=<ts> last=<ts>|- fired=<n> bytes=<n> [options]``."""
    last = ts_text(last_due) if last_due is not None else "-"
    words = [
        "SCHEDULE",
        topic,
        name,
        *timing,
        f"next={ts_text(next_due)}",
        f"last={last}",
        f"fired={fired}",
        f"bytes={nbytes}",
        *options,
    ]
    return (" ".join(words) + "\n").encode()
