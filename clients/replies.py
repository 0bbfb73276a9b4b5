"""Lines (and v2 frames) from a linemq server, parsed without I/O.

``parse_server_line`` turns one line into a small frozen dataclass; a ``MSG2`` or
``HISTORY2`` line comes back as a ``FrameHead``, whose ``complete`` takes the
counted payload the reader fetched after it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from linemq.clients.dead_letters import DeadLetter, parse_dead_letter
from linemq.clients.errors import ProtocolError
from linemq.clients.options import PRIORITIES, format_priority, unescape_value
from linemq.clients.schedule_lines import ScheduleInfo, parse_schedule_line


@dataclass(frozen=True, slots=True)
class Ok:
    text: str


@dataclass(frozen=True, slots=True)
class Err:
    reason: str


@dataclass(frozen=True, slots=True)
class Closing:
    """``CLOSING <reason>``: the broker is about to close the connection (never a reply)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Msg:
    """A pushed delivery. ``raw`` is the line as sent, so tools can echo it exactly."""

    topic: str
    id: str
    offset: int
    ts: float
    text: str
    raw: str = field(default="", repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class HistoryLine:
    topic: str
    id: str
    offset: int
    ts: float
    text: str
    raw: str = field(default="", repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class GroupLine:
    """One consumer group's counters; unknown keys are kept so new server stats show up.
    ``settings``: its effective policy (``max_retries``, ``backoff``, ``ordering``...) as the
    broker writes it, and any other key whose value is not a number."""

    topic: str
    group: str
    stats: Mapping[str, int]
    settings: Mapping[str, str] = field(default_factory=dict)

    @property
    def members(self) -> int:
        return self.stats.get("members", 0)

    @property
    def inflight(self) -> int:
        return self.stats.get("inflight", 0)

    @property
    def waiting(self) -> int:
        return self.stats.get("waiting", 0)

    @property
    def lag(self) -> int:
        return self.stats.get("lag", 0)

    @property
    def acked(self) -> int:
        return self.stats.get("acked", 0)

    @property
    def filtered(self) -> int:
        """Messages the group's header filter passed over (0 for a group without one)."""
        return self.stats.get("filtered", 0)


@dataclass(frozen=True, slots=True)
class DlqLine:
    topic: str
    dlq_offset: int
    letter: DeadLetter


@dataclass(frozen=True, slots=True)
class StatLine:
    """``STAT broker k=v…``, ``STAT topic <t> k=v…`` or ``STAT group <t> <g> k=v…``."""

    kind: str
    names: tuple[str, ...]
    fields: Mapping[str, int | float]


@dataclass(frozen=True, slots=True)
class Frame:
    """A v2 delivery (``MSG2``) or history entry (``HISTORY2``) with its exact payload.

    ``raw`` is the one line a v1 connection would have been sent for it (invalid
    UTF-8 replaced, CR/LF escaped), so tools print the same thing for both.
    """

    kind: str
    topic: str
    id: str
    offset: int
    ts: float
    attempt: int
    payload: bytes
    key: str | None = None
    priority: str = "normal"
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)
    raw: str = field(default="", repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class FrameHead:
    """The line in front of a counted payload; the reader then takes ``nbytes`` + 1 bytes."""

    kind: str
    topic: str
    id: str
    offset: int
    ts: float
    attempt: int
    nbytes: int
    key: str | None
    priority: str
    headers: Mapping[str, str]
    ts_text: str

    def complete(self, data: bytes) -> Frame:
        """The frame, given the ``nbytes + 1`` bytes after the head (payload and its LF)."""
        if len(data) != self.nbytes + 1 or not data.endswith(b"\n"):
            raise ProtocolError(f"{self.kind} payload of {self.nbytes} bytes not followed by LF")
        payload = data[:-1]
        word = "MSG" if self.kind == "MSG2" else "HISTORY"
        raw = f"{word} {self.topic} {self.id} {self.offset} {self.ts_text} {v1_text(payload)}"
        return Frame(
            self.kind,
            self.topic,
            self.id,
            self.offset,
            self.ts,
            self.attempt,
            payload,
            self.key,
            self.priority,
            self.headers,
            raw,
        )


@dataclass(frozen=True, slots=True)
class StatusLine:
    """A line of a ``STATUS`` reply: ``MESSAGE`` (the message; ``name`` is its id) or
    ``STATUS`` (one group; ``name`` is the group). ``fields`` are unescaped."""

    kind: str
    topic: str
    offset: int
    name: str
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PolicyLine:
    """``POLICY <topic> [<group>] k=v…``: a topic's (or one group's) effective delivery
    policy (clients/policies.py)."""

    topic: str
    fields: Mapping[str, str] = field(default_factory=dict)
    group: str | None = None


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What ``OK published|duplicate <offset> <id>`` says about a PUT."""

    offset: int
    id: str
    duplicate: bool = False


ServerLine = (
    Ok
    | Err
    | Closing
    | Msg
    | HistoryLine
    | GroupLine
    | DlqLine
    | StatLine
    | StatusLine
    | PolicyLine
    | ScheduleInfo
    | FrameHead
)
BlockLine = (
    HistoryLine | GroupLine | DlqLine | StatLine | StatusLine | PolicyLine | ScheduleInfo | Frame
)


def parse_server_line(line: bytes) -> ServerLine:
    """Parse one line from the server (trailing LF/CRLF optional)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"server sent invalid UTF-8: {line[:80]!r}") from exc
    text = text.removesuffix("\n").removesuffix("\r")
    word, _, rest = text.partition(" ")
    match word.upper():
        case "OK":
            return Ok(rest)
        case "ERR":
            return Err(rest)
        case "CLOSING":
            return Closing(rest)
        case "MSG":
            return Msg(*_delivery(rest, text), raw=text)
        case "HISTORY":
            return HistoryLine(*_delivery(rest, text), raw=text)
        case "GROUP":
            return _group_line(rest, text)
        case "DLQ":
            return _dlq_line(rest, text)
        case "STAT":
            return _stat_line(rest, text)
        case "MESSAGE" | "STATUS":
            return _status_line(word.upper(), rest, text)
        case "POLICY":
            return _policy_line(rest, text)
        case "SCHEDULE":
            return parse_schedule_line(rest, text)
        case "MSG2" | "HISTORY2":
            return _frame_head(word.upper(), rest, text)
        case _:
            raise ProtocolError(f"unexpected line from server: {text[:200]!r}")


def parse_replayed(ok_text: str) -> int:
    """The count out of ``OK replayed <count>`` (or ``... skipped <n>``: letters left out)."""
    word, _, rest = ok_text.partition(" ")
    count, _, skipped = rest.partition(" ")
    if skipped and not (skipped.startswith("skipped ") and skipped[8:].isdigit()):
        count = ""
    if word != "replayed" or not count.isdigit():
        raise ProtocolError(f"unexpected reply to REPLAY: OK {ok_text!r}")
    return int(count)


def parse_put_reply(ok_text: str) -> PublishResult:
    """``published <offset> <id>`` or ``duplicate <offset> <id>`` (the text after ``OK``)."""
    words = ok_text.split()
    if len(words) != 3 or words[0] not in ("published", "duplicate") or not words[1].isdigit():
        raise ProtocolError(f"unexpected reply to PUT: OK {ok_text!r}")
    return PublishResult(int(words[1]), words[2], duplicate=words[0] == "duplicate")


def parse_seek(ok_text: str) -> int:
    """The offset out of ``OK seek <topic> <group> <offset>``."""
    words = ok_text.split()
    if len(words) != 4 or words[0] != "seek" or not words[3].isdigit():
        raise ProtocolError(f"unexpected reply to SEEK: OK {ok_text!r}")
    return int(words[3])


def v1_text(payload: bytes) -> str:
    """A payload as a v1 connection sees it: one line, invalid UTF-8 replaced, CR/LF escaped."""
    text = payload.decode("utf-8", errors="replace")
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _frame_head(kind: str, rest: str, line: str) -> FrameHead:
    words = rest.split(" ")
    if len(words) < 6:
        raise ProtocolError(f"malformed {kind} line: {line[:200]!r}")
    topic, message_id, offset, ts, attempt, nbytes, *options = words
    key = None
    priority = "normal"
    headers: dict[str, str] = {}
    try:
        for option in options:
            name, sep, value = option.partition("=")
            if not sep:
                raise ValueError(f"option without '=': {option!r}")
            if name == "key":
                key = value
            elif name == "priority":
                priority = value if value in PRIORITIES else format_priority(int(value))
            elif name.startswith("h."):
                headers[name[2:]] = unescape_value(value)
            # Other options are new server features this client does not know: skipped.
        return FrameHead(
            kind,
            topic,
            message_id,
            int(offset),
            float(ts),
            int(attempt),
            _count_field(nbytes),
            key,
            priority,
            headers,
            ts,
        )
    except ValueError as exc:
        raise ProtocolError(f"malformed {kind} line ({exc}): {line[:200]!r}") from None


def _count_field(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"nbytes is not a count: {text!r}")
    return int(text)


def _delivery(rest: str, line: str) -> tuple[str, str, int, float, str]:
    parts = rest.split(" ", 4)
    if len(parts) < 4:
        raise ProtocolError(f"malformed delivery line: {line[:200]!r}")
    topic, message_id, offset, ts = parts[:4]
    text = parts[4] if len(parts) == 5 else ""
    try:
        return topic, message_id, int(offset), float(ts), text
    except ValueError:
        raise ProtocolError(f"malformed offset or timestamp: {line[:200]!r}") from None


def _group_line(rest: str, line: str) -> GroupLine:
    words = rest.split()
    if len(words) < 2:
        raise ProtocolError(f"malformed GROUP line: {line[:200]!r}")
    topic, group, *pairs = words
    stats: dict[str, int] = {}
    settings: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ProtocolError(f"malformed GROUP field {pair!r} in {line[:200]!r}")
        if key in POLICY_KEYS:
            settings[key] = value
            continue
        try:
            stats[key] = int(value)
        except ValueError:
            if key in GROUP_FIGURES:
                raise ProtocolError(f"malformed GROUP field {pair!r} in {line[:200]!r}") from None
            settings[key] = value
    return GroupLine(topic, group, stats, settings)


GROUP_FIGURES: Final = frozenset(
    ("members", "inflight", "waiting", "lag", "acked", "dead", "next_offset", "paused")
)
"""The counts a ``GROUP`` line starts with: always numbers."""


POLICY_KEYS: Final = frozenset(
    ("max_retries", "backoff", "ack_timeout", "max_inflight", "ordering", "rate", "nack_backoff")
)
"""The policy settings a ``GROUP`` line ends with (``settings``, even the numeric ones)."""


def _stat_line(rest: str, line: str) -> StatLine:
    # Names never contain "=", so the words before the first k=v are the kind and names.
    words = rest.split()
    names = [w for w in words if "=" not in w]
    if not names or words[: len(names)] != names:
        raise ProtocolError(f"malformed STAT line: {line[:200]!r}")
    fields: dict[str, int | float] = {}
    for pair in words[len(names) :]:
        key, _, value = pair.partition("=")
        try:
            fields[key] = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            raise ProtocolError(f"malformed STAT field {pair!r} in {line[:200]!r}") from None
    return StatLine(names[0], tuple(names[1:]), fields)


def _dlq_line(rest: str, line: str) -> DlqLine:
    parts = rest.split(" ", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        raise ProtocolError(f"malformed DLQ line: {line[:200]!r}")
    topic, dlq_offset, raw_json = parts
    try:
        obj = json.loads(raw_json)
        if not isinstance(obj, dict):
            raise TypeError("not a JSON object")
        letter = parse_dead_letter(int(dlq_offset), obj, raw_json)
    except (ValueError, TypeError, KeyError) as exc:
        raise ProtocolError(f"malformed dead letter ({exc}): {line[:200]!r}") from None
    return DlqLine(topic, int(dlq_offset), letter)


def _policy_line(rest: str, line: str) -> PolicyLine:
    words = rest.split()
    if not words:
        raise ProtocolError(f"malformed POLICY line: {line[:200]!r}")
    topic, *pairs = words
    group = pairs.pop(0) if pairs and "=" not in pairs[0] else None  # names never hold "="
    fields: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ProtocolError(f"malformed POLICY field {pair!r} in {line[:200]!r}")
        fields[key] = value
    return PolicyLine(topic, fields, group)


def _status_line(kind: str, rest: str, line: str) -> StatusLine:
    words = rest.split()
    if len(words) < 3 or not words[1].isdigit():
        raise ProtocolError(f"malformed {kind} line: {line[:200]!r}")
    topic, offset, name, *pairs = words
    fields: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ProtocolError(f"malformed {kind} field {pair!r} in {line[:200]!r}")
        fields[key] = unescape_value(value)
    return StatusLine(kind, topic, int(offset), name, fields)
