"""Protocol v2, additive: counted payloads with options, and framed deliveries.

``PUT <topic> <nbytes> [option=value ...]`` is followed by exactly ``nbytes`` of
payload and a newline, so payloads may hold any bytes. Options stay typeable by
hand: ``key=``, ``priority=``, ``delay=``/``at=``, ``ttl=``, ``id=`` and headers
as ``h.<name>=<percent-encoded value>``. After ``HELLO 2`` a connection gets
deliveries as ``MSG2`` / ``HISTORY2`` frames carrying the same information.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote_to_bytes

from linemq.broker.protocol import durations
from linemq.broker.protocol.durations import MAX_WIRE_DURATION
from linemq.broker.protocol.errors import ProtocolError
from linemq.broker.protocol.message_options import HEADER_NAME, PRIORITIES, PRIORITY_NAMES, TOKEN
from linemq.broker.protocol.names import NO_DEAD_LETTER_TOPIC, is_valid_topic
from linemq.broker.protocol.replies import ts_text

MAX_OPTION_VALUE: Final = 1024
MAX_DELAY: Final = MAX_WIRE_DURATION
MAX_RETRIES: Final = 1_000_000
"""The largest ``max_retries=`` a PUT may give."""


@dataclass(frozen=True, slots=True)
class Hello:
    """``HELLO <version> [notices]``: ``notices`` opts in to settings and ``CLOSING`` lines."""

    version: int
    notices: bool = False


@dataclass(frozen=True, slots=True)
class PutHeader:
    """A ``PUT`` line; the connection then reads ``nbytes`` of payload."""

    topic: str
    nbytes: int
    options: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Put:
    topic: str
    payload: bytes
    key: str | None = None
    priority: int = 1
    delay: float = 0.0
    at: float = 0.0
    ttl: float = 0.0
    pid: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    max_retries: int | None = None


def parse_hello(rest: str) -> Hello:
    args = rest.split()
    if not 1 <= len(args) <= 2 or args[0] not in ("1", "2") or args[1:] not in ([], ["notices"]):
        raise ProtocolError("usage: HELLO 1|2")
    return Hello(int(args[0]), notices=len(args) == 2)


def build_put(header: PutHeader, payload: bytes) -> Put:
    """Check a PUT's options now that its payload is here (pure)."""
    if not is_valid_topic(header.topic):
        raise ProtocolError(NO_DEAD_LETTER_TOPIC)
    key = pid = None
    max_retries: int | None = None
    priority, delay, at, ttl = 1, 0.0, 0.0, 0.0
    headers: dict[str, str] = {}
    for option in header.options:
        name, sep, value = option.partition("=")
        if not sep or len(value) > MAX_OPTION_VALUE:
            raise ProtocolError(f"invalid option: {option[:100]}")
        if name == "key":
            key = _token(option, value)
        elif name == "id":
            pid = _token(option, value)
        elif name == "priority":
            priority = _priority(option, value)
        elif name == "delay":
            delay = _duration(option, value)
        elif name == "at":
            at = _epoch(option, value)
        elif name == "ttl":
            ttl = _duration(option, value)
        elif name == "max_retries":
            max_retries = _max_retries(option, value)
        elif name.startswith("h.") and HEADER_NAME.fullmatch(name[2:]):
            try:
                headers[name[2:]] = unquote_to_bytes(value).decode()
            except UnicodeDecodeError:
                raise ProtocolError(f"invalid option: {option[:100]}") from None
        else:
            raise ProtocolError(f"invalid option: {option[:100]}")
    if delay and at:
        raise ProtocolError("use delay= or at=, not both")
    return Put(header.topic, payload, key, priority, delay, at, ttl, pid, headers, max_retries)


def _token(option: str, value: str) -> str:
    if not TOKEN.fullmatch(value):
        raise ProtocolError(f"invalid option: {option[:100]}")
    return value


def _max_retries(option: str, value: str) -> int:
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_RETRIES:
        raise ProtocolError(f"invalid option: {option[:100]}")
    return int(value)


def _priority(option: str, value: str) -> int:
    if value.lower() in PRIORITIES:
        return PRIORITIES[value.lower()]
    if value.isdigit() and int(value) in PRIORITY_NAMES:
        return int(value)
    raise ProtocolError(f"invalid option: {option[:100]} (low, normal, high, critical or 0-3)")


def parse_duration(value: str) -> float:
    """A wire duration (see ``durations.parse_duration``), up to 365 days."""
    return durations.parse_duration(value, max_seconds=MAX_WIRE_DURATION)


def _duration(option: str, value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError:
        raise ProtocolError(f"invalid option: {option[:100]} (e.g. 500ms, 5s, 2m, 1h)") from None


def _epoch(option: str, value: str) -> float:
    try:
        at = float(value)
    except ValueError:
        at = -1.0
    if not 0 <= at < 1e11:
        raise ProtocolError(f"invalid option: {option[:100]} (epoch seconds)")
    return at


# -- replies and deliveries ----------------------------------------------------


def hello(version: int, settings: dict[str, float | int] | None = None) -> bytes:
    """``OK hello <v>``, plus ``key=value`` settings for a client that asked for notices."""
    if settings is None:
        return f"OK hello {version}\n".encode()
    pairs = " ".join(f"{k}={v:g}" for k, v in settings.items())
    return f"OK hello {version} {pairs}\n".encode()


def closing(reason: str) -> bytes:
    """Sent instead of ``ERR <reason>`` to a notices connection the broker is about to close."""
    return f"CLOSING {reason}\n".encode()


def put_reply(offset: int, id: str, *, duplicate: bool) -> bytes:
    word = "duplicate" if duplicate else "published"
    return f"OK {word} {offset} {id}\n".encode()


def frame(
    kind: str,
    topic: str,
    id: str,
    offset: int,
    ts: float,
    attempt: int,
    payload: bytes,
    key: str | None = None,
    priority: int = 1,
    headers: dict[str, str] | None = None,
) -> bytes:
    """``MSG2``/``HISTORY2 <topic> <id> <offset> <ts> <attempt> <nbytes> [options]`` + payload."""
    head = f"{kind} {topic} {id} {offset} {ts_text(ts)} {attempt} {len(payload)}"
    if key is not None:
        head += f" key={key}"
    if priority != 1:
        head += f" priority={PRIORITY_NAMES.get(priority, priority)}"
    if headers:
        head += "".join(f" h.{k}={escape_value(v)}" for k, v in headers.items())
    return head.encode() + b"\n" + payload + b"\n"


def escape_value(value: str) -> str:
    """Percent-escape only what would break the line: spaces, controls, ``%``, ``=``, non-ASCII."""
    return "".join(
        chr(b) if 0x20 < b < 0x7F and b not in (0x25, 0x3D) else f"%{b:02X}" for b in value.encode()
    )


def v1_text(payload: bytes) -> str:
    """What a v1 client is shown for a payload that is not one line of UTF-8."""
    text = payload.decode("utf-8", errors="replace")
    return text.replace("\r", "\\r").replace("\n", "\\n")
