"""The client side of the linemq line protocol: pure encoders, and (re-exported from
``clients.replies``) the parser of what the server sends.

No I/O here, so the asyncio client, the sync wrapper and the tests share one
definition of every line and can check it without a socket. Encoders validate
locally what the server would reject anyway: a bad name or a stray newline
caught here never becomes a half-sent command that desynchronises the replies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Final

from linemq.broker.protocol import names
from linemq.clients.dead_letters import DeadLetter, Replayed
from linemq.clients.errors import ProtocolError
from linemq.clients.options import (
    Duration,
    HeaderFilterSpec,
    Position,
    check_token,
    filter_words,
    format_duration,
    format_epoch,
    format_header,
    format_position,
    format_priority,
    is_pattern,
    is_valid_pattern,
    to_seconds,
)
from linemq.clients.replies import (
    BlockLine,
    Closing,
    DlqLine,
    Err,
    Frame,
    FrameHead,
    GroupLine,
    HistoryLine,
    Msg,
    Ok,
    PublishResult,
    ServerLine,
    StatLine,
    parse_put_reply,
    parse_replayed,
    parse_seek,
    parse_server_line,
    v1_text,
)

# Server-line names are re-exported: callers have always imported them from here.
__all__ = [
    "BlockLine",
    "Closing",
    "DeadLetter",
    "DlqLine",
    "Err",
    "Frame",
    "FrameHead",
    "GroupLine",
    "HistoryLine",
    "Msg",
    "Ok",
    "ProtocolError",
    "PublishResult",
    "Replayed",
    "ServerLine",
    "StatLine",
    "parse_put_reply",
    "parse_replayed",
    "parse_seek",
    "parse_server_line",
    "v1_text",
]

MAX_NAME_LENGTH: Final = names.MAX_NAME_LENGTH
MAX_NACK_DELAY: Final = 365 * 86400
DEFAULT_DLQ_COUNT: Final = 100
REPLAY_ALL: Final = "ALL"

PING: Final = b"PING\n"
QUIT: Final = b"QUIT\n"
HEARTBEAT: Final = b"HEARTBEAT\n"

_ID: Final = re.compile(r"[^\s\x00]+")
_FORBIDDEN_IN_TEXT: Final = ("\n", "\r", "\x00")


# --- encoders ---------------------------------------------------------------


def check_name(name: str, kind: str = "topic") -> str:
    """Raise ValueError unless ``name`` is a valid topic or group name (the broker's rule,
    ``broker/protocol/names.py``: names end up as file names there)."""
    if not names.is_valid_name(name):
        raise ValueError(
            f"invalid {kind} name {name!r}: use 1-{MAX_NAME_LENGTH} of [A-Za-z0-9_.-], "
            "not starting with '.' and without '..'"
        )
    return name


def check_new_topic(topic: str) -> str:
    """A topic that PUB, PUT or a SUB may create: its dead-letter topic must be valid too."""
    if not names.is_valid_topic(check_name(topic)):
        raise ValueError(
            f"invalid topic name {topic!r}: it must not end in '.' and may be "
            f"{MAX_NAME_LENGTH - len(names.DLQ_SUFFIX)} characters at most, so that "
            "<topic>.dlq is valid"
        )
    return topic


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
    return f"PUB {check_new_topic(topic)} {_check_text(text)}\n".encode()


def check_topic_or_pattern(topic: str, *, new: bool = False) -> str:
    """A topic name, or a wildcard pattern (``orders.*``, ``orders.>``) for SUB/UNSUB.

    ``new``: a topic the command may create (SUB), checked as ``check_new_topic``.
    """
    if is_pattern(topic):
        if not is_valid_pattern(topic):
            raise ValueError(
                f"invalid topic pattern {topic!r}: dot-separated names, '*' for one token, "
                "'>' as the last token for one or more"
            )
        return topic
    return check_new_topic(topic) if new else check_name(topic)


ORDERINGS: Final = ("none", "key", "fifo")


def encode_sub(
    topic: str,
    group: str | None = None,
    start: Position | None = None,
    ordering: str | None = None,
    filter: HeaderFilterSpec | None = None,
) -> bytes:
    """``SUB <topic> [group] [from=<position>] [ordering=none|key|fifo] [filter=<test> ...]``;
    ``topic`` may be a pattern.

    ``start`` replays from there for fanout; for a group it only counts when the
    SUB creates the group. The broker refuses it for a wildcard fanout SUB.
    ``ordering`` is fixed when the SUB creates the group (``fifo``: one message out
    at a time, a retried one holding back the rest); a concrete topic's groups only.
    ``filter`` too (only messages whose headers match; see ``HeaderFilterSpec``).
    """
    if filter is not None and (group is None or is_pattern(topic)):
        raise ValueError("a filter is for a consumer group on a concrete topic")
    if ordering is not None:
        if ordering not in ORDERINGS:
            raise ValueError(f"ordering must be none, key or fifo, got {ordering!r}")
        if group is None or is_pattern(topic):
            raise ValueError("ordering is for a consumer group on a concrete topic")
    words = ["SUB", check_topic_or_pattern(topic, new=True)]
    if group is not None:
        words.append(check_name(group, "group"))
    if start is not None:
        if group is None and is_pattern(topic):
            raise ValueError("a start position is not supported for wildcard fanout subscriptions")
        words.append("from=" + format_position(start))
    if ordering is not None:
        words.append(f"ordering={ordering}")
    if filter is not None:
        words += filter_words(filter)
    return (" ".join(words) + "\n").encode()


def encode_unsub(topic: str, group: str | None = None) -> bytes:
    if group is None:
        return f"UNSUB {check_topic_or_pattern(topic)}\n".encode()
    return f"UNSUB {check_topic_or_pattern(topic)} {check_name(group, 'group')}\n".encode()


def encode_seek(topic: str, group: str, position: Position) -> bytes:
    """``SEEK <topic> <group> <position>``: move a group's next delivery (topic, not pattern)."""
    words = ("SEEK", check_name(topic), check_name(group, "group"), format_position(position))
    return (" ".join(words) + "\n").encode()


def encode_hello(version: int) -> bytes:
    if version not in (1, 2):
        raise ValueError(f"protocol version must be 1 or 2, got {version}")
    return f"HELLO {version}\n".encode()


def encode_put(
    topic: str,
    payload: bytes | str,
    *,
    key: str | None = None,
    priority: str | int | None = None,
    delay: Duration | None = None,
    at: float | datetime | None = None,
    ttl: Duration | None = None,
    id: str | None = None,
    headers: Mapping[str, str] | None = None,
    max_retries: int | None = None,
) -> bytes:
    """``PUT <topic> <nbytes> [options]``, the payload (any bytes; a str is UTF-8) and a newline.

    ``delay``/``ttl`` are seconds (or ``timedelta``, or wire text like ``"5m"``);
    ``at`` is epoch seconds or a ``datetime``; ``id`` makes the publish idempotent
    within the broker's dedup window; ``max_retries`` overrides the topic's policy
    for this message.
    """
    data = payload.encode() if isinstance(payload, str) else bytes(payload)
    if delay is not None and at is not None:
        raise ValueError("give delay or at, not both")
    words = ["PUT", check_new_topic(topic), str(len(data))]
    if key is not None:
        words.append("key=" + check_token(key, "key"))
    if priority is not None:
        words.append("priority=" + format_priority(priority))
    if delay is not None:
        words.append("delay=" + format_duration(delay))
    if at is not None:
        words.append("at=" + format_epoch(at))
    if ttl is not None:
        words.append("ttl=" + format_duration(ttl))
    if id is not None:
        words.append("id=" + check_token(id, "publisher id"))
    if max_retries is not None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError("max_retries must be a whole number >= 0")
        words.append(f"max_retries={max_retries}")
    words.extend(format_header(name, value) for name, value in (headers or {}).items())
    return " ".join(words).encode() + b"\n" + data + b"\n"


def encode_history(topic: str, n: int) -> bytes:
    return f"HISTORY {check_name(topic)} {_check_count(n)}\n".encode()


def encode_ack(message_id: str) -> bytes:
    return f"ACK {_check_id(message_id)}\n".encode()


def encode_nack(message_id: str, delay: Duration | None = None, reason: str | None = None) -> bytes:
    """``NACK <id> [seconds] [reason=<text>]``; ``delay`` as everywhere: ``"5s"``, ``1.5``,
    ``timedelta``; ``reason`` is kept with the attempt (and in the dead letter, if it is one)."""
    words = ["NACK", _check_id(message_id)]
    if delay is not None:
        delay = to_seconds(delay)  # the broker's parser: refuses negative, NaN, over 365 days
        # Whole seconds go out as ints so "NACK id 5" reads the way a human would type it.
        # Seconds, not "5s": brokers from before durations on NACK read only numbers.
        words.append(str(int(delay)) if delay.is_integer() else repr(delay))
    if reason is not None:
        words.append("reason=" + one_line_reason(reason))
    return (" ".join(words) + "\n").encode()


def encode_term(message_id: str, reason: str | None = None) -> bytes:
    """``TERM <id> [reason text]``: dead-letter a held delivery now, with why."""
    if reason is None:
        return f"TERM {_check_id(message_id)}\n".encode()
    return f"TERM {_check_id(message_id)} {one_line_reason(reason)}\n".encode()


def one_line_reason(reason: str) -> str:
    """A failure text as one protocol line: line breaks become spaces (an exception's
    multi-line text is fine), NULs go; ValueError if nothing is left. The broker keeps at
    most 1,000 bytes of it."""
    text = reason.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    text = text.replace("\x00", "").strip(" \t")
    if not text:
        raise ValueError("reason must not be empty")
    return text


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
