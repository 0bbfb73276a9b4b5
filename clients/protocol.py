"""The client side of the linemq line protocol: pure encoders and a server-line parser.

No I/O here, so the asyncio client, the sync wrapper and the tests share one
definition of every line and can check it without a socket. Encoders validate
locally what the server would reject anyway: a bad name or a stray newline
caught here never becomes a half-sent command that desynchronises the replies.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

_T = TypeVar("_T")

MAX_NAME_LENGTH: Final = 200
MAX_NACK_DELAY: Final = 365 * 86400
DEFAULT_DLQ_COUNT: Final = 100
REPLAY_ALL: Final = "ALL"

PING: Final = b"PING\n"
QUIT: Final = b"QUIT\n"
HEARTBEAT: Final = b"HEARTBEAT\n"

# Same rule as the broker (broker/protocol/names.py); names end up as file names there.
_NAME: Final = re.compile(r"[A-Za-z0-9_.\-]{1,200}")
_ID: Final = re.compile(r"[^\s\x00]+")
_FORBIDDEN_IN_TEXT: Final = ("\n", "\r", "\x00")


class ProtocolError(Exception):
    """The server sent a line this client cannot make sense of.

    Fatal for a connection: an unknown line cannot be matched to a request, so
    every later reply would be attributed to the wrong caller.
    """


# --- encoders ---------------------------------------------------------------


def check_name(name: str, kind: str = "topic") -> str:
    """Raise ValueError unless ``name`` is a valid topic or group name."""
    if _NAME.fullmatch(name) is None or name.startswith(".") or ".." in name:
        raise ValueError(
            f"invalid {kind} name {name!r}: use 1-{MAX_NAME_LENGTH} of [A-Za-z0-9_.-], "
            "not starting with '.' and without '..'"
        )
    return name


def _check_id(message_id: str) -> str:
    if _ID.fullmatch(message_id) is None:
        raise ValueError(f"invalid message id {message_id!r}: must be non-empty, no whitespace")
    return message_id


def _check_text(text: str) -> str:
    if not text:
        raise ValueError("message must not be empty")
    for bad in _FORBIDDEN_IN_TEXT:
        if bad in text:
            raise ValueError(f"message must not contain {bad!r}: one message is one line")
    return text


def _check_count(n: int) -> int:
    if n < 0:
        raise ValueError(f"n must not be negative, got {n}")
    return n


def encode_pub(topic: str, text: str) -> bytes:
    return f"PUB {check_name(topic)} {_check_text(text)}\n".encode()


def encode_sub(topic: str, group: str | None = None) -> bytes:
    if group is None:
        return f"SUB {check_name(topic)}\n".encode()
    return f"SUB {check_name(topic)} {check_name(group, 'group')}\n".encode()


def encode_unsub(topic: str, group: str | None = None) -> bytes:
    if group is None:
        return f"UNSUB {check_name(topic)}\n".encode()
    return f"UNSUB {check_name(topic)} {check_name(group, 'group')}\n".encode()


def encode_history(topic: str, n: int) -> bytes:
    return f"HISTORY {check_name(topic)} {_check_count(n)}\n".encode()


def encode_ack(message_id: str) -> bytes:
    return f"ACK {_check_id(message_id)}\n".encode()


def encode_nack(message_id: str, delay: float | None = None) -> bytes:
    if delay is None:
        return f"NACK {_check_id(message_id)}\n".encode()
    if not 0 <= delay <= MAX_NACK_DELAY:  # also rejects NaN
        raise ValueError(f"delay must be between 0 and {MAX_NACK_DELAY} seconds, got {delay}")
    # Whole seconds go out as ints so "NACK id 5" reads the way a human would type it.
    seconds = str(int(delay)) if float(delay).is_integer() else repr(float(delay))
    return f"NACK {_check_id(message_id)} {seconds}\n".encode()


def encode_touch(message_id: str) -> bytes:
    return f"TOUCH {_check_id(message_id)}\n".encode()


def encode_auth(token: str) -> bytes:
    if not token or any(c.isspace() for c in token):
        raise ValueError("token must be non-empty and without whitespace")
    return f"AUTH {token}\n".encode()


def encode_groups(topic: str) -> bytes:
    return f"GROUPS {check_name(topic)}\n".encode()


def encode_dlq(topic: str, n: int | None = None) -> bytes:
    if n is None:
        return f"DLQ {check_name(topic)}\n".encode()
    return f"DLQ {check_name(topic)} {_check_count(n)}\n".encode()


def encode_stats(topic: str | None = None) -> bytes:
    if topic is None:
        return b"STATS\n"
    return f"STATS {check_name(topic)}\n".encode()


def encode_replay(topic: str, target: str) -> bytes:
    """``target`` is a message id (original or dead letter's own) or ``REPLAY_ALL``."""
    return f"REPLAY {check_name(topic)} {_check_id(target)}\n".encode()


# --- server lines -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ok:
    text: str


@dataclass(frozen=True, slots=True)
class Err:
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
    """One consumer group's counters; unknown keys are kept so new server stats show up."""

    topic: str
    group: str
    stats: Mapping[str, int]

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


@dataclass(frozen=True, slots=True)
class Replayed:
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
    raw_json: str = field(default="", repr=False, compare=False)


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


ServerLine = Ok | Err | Msg | HistoryLine | GroupLine | DlqLine | StatLine
BlockLine = HistoryLine | GroupLine | DlqLine | StatLine


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
        case _:
            raise ProtocolError(f"unexpected line from server: {text[:200]!r}")


def parse_replayed(ok_text: str) -> int:
    """The count out of ``OK replayed <count>``."""
    word, _, count = ok_text.partition(" ")
    if word != "replayed" or not count.isdigit():
        raise ProtocolError(f"unexpected reply to REPLAY: OK {ok_text!r}")
    return int(count)


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
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            stats[key] = int(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ProtocolError(f"malformed GROUP field {pair!r} in {line[:200]!r}")
    return GroupLine(topic, group, stats)


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
        letter = _dead_letter(int(dlq_offset), obj, raw_json)
    except (ValueError, TypeError, KeyError) as exc:
        raise ProtocolError(f"malformed dead letter ({exc}): {line[:200]!r}") from None
    return DlqLine(topic, int(dlq_offset), letter)


def _dead_letter(dlq_offset: int, obj: dict[str, Any], raw_json: str) -> DeadLetter:
    replayed = obj.get("replayed")
    if replayed is not None and not isinstance(replayed, dict):
        raise TypeError(f"'replayed' should be null or an object, got {replayed!r}")
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
        raw_json=raw_json,
    )


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
