"""``parse_line``: one line of bytes to one command, or a ``ProtocolError`` with the ERR text.

Command words are case-insensitive. Error texts for the seed's commands are the
seed's own (``usage: PUB <topic> <message>``, ``n must be an integer``...), so
clients written for it see what they expect.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

from linemq.broker.protocol.commands import (
    Ack,
    Auth,
    Clean,
    Command,
    Delete,
    DeleteTopic,
    DlqList,
    Groups,
    Heartbeat,
    History,
    Nack,
    Pause,
    Ping,
    Policy,
    Pub,
    Purge,
    Quit,
    Replay,
    Resume,
    Seek,
    Stats,
    Status,
    Sub,
    Term,
    Touch,
    Unsub,
)
from linemq.broker.protocol.errors import ProtocolError
from linemq.broker.protocol.filters import FilterError, parse_filter
from linemq.broker.protocol.names import (
    NO_DEAD_LETTER_TOPIC,
    is_pattern,
    is_valid_name,
    is_valid_pattern,
    is_valid_topic,
)
from linemq.broker.protocol.positions import Position
from linemq.broker.protocol.schedules import parse_schedule, parse_schedules, parse_unschedule
from linemq.broker.protocol.v2 import PutHeader, parse_duration, parse_hello

MAX_ECHO_CHARS: Final = 200
MAX_REASON_BYTES: Final = 1000
"""A consumer's failure text (``TERM``, ``NACK ... reason=``) is cut to this many bytes."""
REASON_CUT: Final = "...[truncated]"
MAX_NOTE_BYTES: Final = 200
"""A progress note (``TOUCH <id> progress=50 <note>``) is cut to this many bytes."""
FORCE_TOPIC: Final = "force=true"
"""``DELETE <topic> force=true``: a bare ``force`` there would name a group called force."""
DEFAULT_DLQ_LIST: Final = 100

_WHITESPACE: Final = " \t"


def parse_line(line: bytes) -> Command | None:
    """Parse one line (LF already removed). Blank lines give None, as in the seed."""
    if line.endswith(b"\r"):
        line = line[:-1]
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("invalid utf-8") from None
    if "\x00" in text:
        raise ProtocolError("invalid NUL byte")
    text = text.lstrip(_WHITESPACE)
    if not text or text.isspace():
        return None
    word, _, rest = text.partition(" ")
    handler = _HANDLERS.get(word.upper())
    if handler is None:
        raise ProtocolError(f"unknown command: {_echo(text)}")
    return handler(rest)


def _echo(text: str) -> str:
    text = text.rstrip()
    if len(text) > MAX_ECHO_CHARS:
        return text[:MAX_ECHO_CHARS] + "..."
    return text


_known_good: set[str] = set()
KNOWN_GOOD_MAX: Final = 10_000


def _topic(name: str) -> str:
    # Remembering names already checked skips the regex for every publish to a hot topic.
    if name in _known_good:
        return name
    if not is_valid_name(name):
        raise ProtocolError("invalid topic name")
    if not is_valid_topic(name):
        return name  # an existing topic of an earlier release may still be read
    if len(_known_good) >= KNOWN_GOOD_MAX:
        _known_good.clear()
    _known_good.add(name)
    return name


def _new_topic(name: str) -> str:
    """A topic that PUB, PUT or SUB may create: its dead-letter topic must be valid too."""
    if name in _known_good:
        return name
    if not is_valid_topic(_topic(name)):
        raise ProtocolError(NO_DEAD_LETTER_TOPIC)
    return name


def _group(name: str) -> str:
    if not is_valid_name(name):
        raise ProtocolError("invalid group name")
    return name


def _no_args(usage: str, command: Command) -> Callable[[str], Command]:
    def parse(rest: str) -> Command:
        if rest.strip():
            raise ProtocolError(f"usage: {usage}")
        return command

    return parse


def _pub(rest: str) -> Command:
    # The message is everything after "PUB <topic> ", byte for byte.
    topic, sep, msg = rest.lstrip(_WHITESPACE).partition(" ")
    if not sep or not msg or not topic:
        raise ProtocolError("usage: PUB <topic> <message>")
    return Pub(_new_topic(topic), msg)


def _sub_args(
    rest: str, usage: str, *, new: bool = False
) -> tuple[str, str | None, Position | None]:
    args = rest.split()
    start = None
    if len(args) in (2, 3) and args[-1].startswith("from="):
        start = _position(args.pop()[len("from=") :])
    if not 1 <= len(args) <= 2:
        raise ProtocolError(f"usage: {usage}")
    if is_valid_pattern(args[0]) and is_pattern(args[0]):
        topic = args[0]
    else:
        topic = _new_topic(args[0]) if new else _topic(args[0])
    group = _group(args[1]) if len(args) == 2 else None
    return topic, group, start


def _sub(rest: str) -> Command:
    words = rest.split()
    ordering = None
    if len(words) >= 3 and (found := [w for w in words[2:] if w.startswith("ordering=")]):
        ordering = found[-1][len("ordering=") :]
        if ordering not in ORDERINGS or len(found) > 1:
            raise ProtocolError("ordering must be none, key or fifo")
        rest = " ".join(w for w in words if w != found[-1])
    header_filter = None
    if len(words) >= 3 and (tests := [w for w in words[2:] if w.startswith("filter=")]):
        try:
            header_filter = parse_filter(w[len("filter=") :] for w in tests)
        except FilterError as e:
            raise ProtocolError(str(e)) from None
        kept = rest.split()  # (topic and group first: names never hold a "=")
        rest = " ".join(kept[:2] + [w for w in kept[2:] if not w.startswith("filter=")])
    topic, group, start = _sub_args(rest, "SUB <topic> [group_id]", new=True)
    if start is not None and group is None and is_pattern(topic):
        raise ProtocolError("from= is not supported for wildcard fanout subscriptions")
    if ordering is not None and is_pattern(topic):
        raise ProtocolError("ordering= is not supported for wildcard groups")
    if header_filter is not None and is_pattern(topic):
        raise ProtocolError("filter= is not supported for wildcard groups")
    return Sub(topic, group, start, ordering, header_filter)


ORDERINGS: Final = ("none", "key", "fifo")
"""A group's ``ordering=``: ``fifo`` holds every later message behind a retried one, ``key``
(the default) holds a message's ``key=``, ``none`` holds nothing."""


def _unsub(rest: str) -> Command:
    topic, group, start = _sub_args(rest, "UNSUB <topic> [group_id]")
    if start is not None:
        raise ProtocolError("usage: UNSUB <topic> [group_id]")
    return Unsub(topic, group)


def _position(text: str) -> Position:
    """``earliest``, ``latest``, an offset, ``time:<epoch seconds>`` or ``ago:<duration>``."""
    if text in ("earliest", "latest"):
        return Position(text)
    if text.isdigit() and int(text) >= 1:
        return Position("offset", int(text))
    kind, _, value = text.partition(":")
    try:
        if kind == "time":
            return Position("time", float(value))
        if kind == "ago":
            return Position("time", -parse_duration(value))
    except (ValueError, ProtocolError):
        pass
    raise ProtocolError(
        "position must be earliest, latest, an offset, time:<epoch seconds> or ago:<duration>"
    )


def _seek(rest: str) -> Command:
    args = rest.split()
    if len(args) != 3:
        raise ProtocolError("usage: SEEK <topic> <group> <position>")
    return Seek(_topic(args[0]), _group(args[1]), _position(args[2]))


def _history(rest: str) -> Command:
    args = rest.split()
    if len(args) != 2:
        raise ProtocolError("usage: HISTORY <topic> <n>")
    topic = _topic(args[0])
    return History(topic, _count(args[1]))


def _count(arg: str) -> int:
    try:
        n = int(arg)
    except ValueError:
        raise ProtocolError("n must be an integer") from None
    if n < 0:
        raise ProtocolError("n must not be negative")
    return n


def _one_id(rest: str, usage: str) -> str:
    args = rest.split()
    if len(args) != 1:
        raise ProtocolError(f"usage: {usage}")
    return args[0]


def _ack(rest: str) -> Command:
    return Ack(_one_id(rest, "ACK <message_id>"))


TOUCH_PROGRESS_USAGE: Final = "usage: TOUCH <message_id> [progress=<0-100|text>]"


def _touch(rest: str) -> Command:
    """``TOUCH <id> [progress=<0-100> [note...] | progress=<note...>]``: the rest of the line."""
    head, sep, text = rest.partition("progress=")
    if sep and head and not head[-1].isspace():
        sep = ""  # "progress=" inside a word is no progress
    if not sep:
        return Touch(_one_id(rest, "TOUCH <message_id>"))
    args = head.split()
    if len(args) != 1:
        raise ProtocolError(TOUCH_PROGRESS_USAGE)
    text = text.strip(_WHITESPACE)
    first, _, note = text.partition(" ")
    percent = _percent(first)
    if percent is None:
        note = text  # no leading number: it is all a note
    note = note.strip(_WHITESPACE)
    if percent is None and not note:
        raise ProtocolError("progress must be a number from 0 to 100, or text")
    return Touch(args[0], percent, _reason(note, MAX_NOTE_BYTES) if note else None)


def _percent(word: str) -> float | None:
    """A progress percentage (``50``, ``12.5``, ``50%``); None if ``word`` is not a number."""
    try:
        value = float(word.removesuffix("%"))
    except ValueError:
        return None
    if not 0 <= value <= 100:  # also NaN
        raise ProtocolError("progress must be a number from 0 to 100, or text")
    return value


CLEAN_USAGE: Final = "usage: CLEAN <topic> [acked] older=<duration>|keep=<n>"


def _clean(rest: str) -> Command:
    """``CLEAN <topic> [acked] older=<duration> keep=<n>``: either option, or both."""
    args = rest.split()
    if len(args) > 1 and args[1] == "acked":
        del args[1]
    if not 2 <= len(args) <= 3:
        raise ProtocolError(CLEAN_USAGE)
    older: float | None = None
    keep: int | None = None
    for arg in args[1:]:
        key, _, value = arg.partition("=")
        if key == "older" and older is None:
            try:
                older = parse_duration(value)
            except (ValueError, ProtocolError):
                raise ProtocolError("older must be a duration (30s, 12h, 7d)") from None
        elif key == "keep" and keep is None:
            if not (value.isascii() and value.isdigit()):
                raise ProtocolError("keep must be a non-negative integer")
            keep = int(value)
        else:
            raise ProtocolError(CLEAN_USAGE)
    return Clean(_topic(args[0]), older, keep)


def _status(rest: str) -> Command:
    args = rest.split()
    if len(args) != 2:
        raise ProtocolError("usage: STATUS <topic> <message_id>|<offset>")
    topic = _topic(args[0])
    if args[1].isascii() and args[1].isdigit():
        return Status(topic, offset=int(args[1]))
    return Status(topic, id=args[1])


NACK_USAGE: Final = "usage: NACK <message_id> [delay_seconds] [reason=<text>]"


def _nack(rest: str) -> Command:
    """``NACK <id> [delay] [reason=<text...>]``: the reason, last, runs to the end of the line."""
    head, sep, reason = rest.partition("reason=")
    if sep and head and not head[-1].isspace():
        head, sep, reason = rest, "", ""  # "reason=" inside a word is no reason
    args = head.split()
    if not 1 <= len(args) <= 2:
        raise ProtocolError(NACK_USAGE if sep else "usage: NACK <message_id> [delay_seconds]")
    text = _reason(reason) if sep else None
    if len(args) == 1:
        return Nack(args[0], None, text)
    try:
        delay = float(args[1])
    except ValueError:
        try:  # "5s", "1.5m": the duration syntax of PUT and the flags
            delay = parse_duration(args[1])
        except ValueError:
            delay = math.nan
    if not (0 <= delay <= 365 * 86400):
        raise ProtocolError("delay must be a number of seconds between 0 and 31536000")
    return Nack(args[0], delay, text)


def _term(rest: str) -> Command:
    """``TERM <id> [reason text]``: everything after the id is the reason."""
    parts = rest.split(None, 1)
    if not parts:
        raise ProtocolError("usage: TERM <message_id> [reason text]")
    reason = parts[1].strip(_WHITESPACE) if len(parts) == 2 else ""
    return Term(parts[0], _reason(reason) if reason else None)


def _reason(text: str, limit: int = MAX_REASON_BYTES) -> str:
    """A consumer's failure text, trimmed and cut to ``limit`` bytes (whole characters)."""
    text = text.strip(_WHITESPACE)
    if not text:
        raise ProtocolError("reason must not be empty")
    raw = text.encode()
    if len(raw) <= limit:
        return text
    keep = limit - len(REASON_CUT)
    return raw[:keep].decode("utf-8", "ignore") + REASON_CUT


def _auth(rest: str) -> Command:
    return Auth(_one_id(rest, "AUTH <token>"))


def _groups(rest: str) -> Command:
    args = rest.split()
    if len(args) != 1:
        raise ProtocolError("usage: GROUPS <topic>")
    return Groups(_topic(args[0]))


POLICY_USAGE: Final = "usage: POLICY <topic> [<group> [key=value ...]]"


def _policy(rest: str) -> Command:
    """``POLICY <topic>``, ``POLICY <topic> <group>``, ``POLICY <topic> <group> k=v ...``:
    the settings' names and values are checked where policies live (delivery/)."""
    args = rest.split()
    if len(args) == 1:
        return Policy(_topic(args[0]))
    if not args or "=" in args[1]:
        raise ProtocolError("usage: POLICY <topic>" if len(args) < 2 else POLICY_USAGE)
    changes: dict[str, str] = {}
    for pair in args[2:]:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise ProtocolError(POLICY_USAGE)
        if key in changes:
            raise ProtocolError(f"{key} given twice")
        changes[key] = value
    return Policy(_topic(args[0]), _group(args[1]), tuple(changes.items()))


def _dlq(rest: str) -> Command:
    args = rest.split()
    if not 1 <= len(args) <= 2:
        raise ProtocolError("usage: DLQ <topic> [n]")
    n = _count(args[1]) if len(args) == 2 else DEFAULT_DLQ_LIST
    return DlqList(_topic(args[0]), n)


def _replay(rest: str) -> Command:
    args = rest.split()
    if len(args) != 2:
        raise ProtocolError("usage: REPLAY <topic> <message_id>|ALL")
    topic = _topic(args[0])
    target = None if args[1].upper() == "ALL" else args[1]
    return Replay(topic, target)


def _put(rest: str) -> Command:
    args = rest.split()
    if len(args) < 2:
        raise ProtocolError("usage: PUT <topic> <nbytes> [option=value ...]")
    topic = _topic(args[0])  # whether it may be created is checked with its payload
    if not args[1].isdigit():
        raise ProtocolError("nbytes must be a non-negative integer")
    return PutHeader(topic, int(args[1]), tuple(args[2:]))


def _stats(rest: str) -> Command:
    args = rest.split()
    if len(args) > 1:
        raise ProtocolError("usage: STATS [topic]")
    return Stats(_topic(args[0]) if args else None)


def _group_args(rest: str, usage: str) -> tuple[str, str]:
    args = rest.split()
    if len(args) != 2:
        raise ProtocolError(f"usage: {usage}")
    return _topic(args[0]), _group(args[1])


def _pause(rest: str) -> Command:
    return Pause(*_group_args(rest, "PAUSE <topic> <group>"))


def _resume(rest: str) -> Command:
    return Resume(*_group_args(rest, "RESUME <topic> <group>"))


def _delete(rest: str) -> Command:
    args = rest.split()
    if len(args) == 1 or (len(args) == 2 and args[1] == FORCE_TOPIC):
        return DeleteTopic(_topic(args[0]), len(args) == 2)
    force = len(args) == 3 and args[2].lower() == "force"
    if len(args) != 2 and not force:
        raise ProtocolError("usage: DELETE <topic> <group> [force]")
    name = args[0]
    topic = name if is_valid_pattern(name) and is_pattern(name) else _topic(name)
    return Delete(topic, _group(args[1]), force)


def _purge(rest: str) -> Command:
    args = rest.split()
    if not 1 <= len(args) <= 2:
        raise ProtocolError("usage: PURGE <topic>.dlq")
    topic = _topic(args[0])
    if not topic.endswith(".dlq"):
        raise ProtocolError("only dead-letter topics (<topic>.dlq) can be purged")
    return Purge(topic, args[1] if len(args) == 2 else None)


_HANDLERS: Final[dict[str, Callable[[str], Command]]] = {
    "PING": _no_args("PING", Ping()),
    "QUIT": _no_args("QUIT", Quit()),
    "HEARTBEAT": _no_args("HEARTBEAT", Heartbeat()),
    "AUTH": _auth,
    "PUB": _pub,
    "SUB": _sub,
    "UNSUB": _unsub,
    "HISTORY": _history,
    "ACK": _ack,
    "NACK": _nack,
    "TERM": _term,
    "TOUCH": _touch,
    "GROUPS": _groups,
    "DLQ": _dlq,
    "REPLAY": _replay,
    "STATS": _stats,
    "PUT": _put,
    "HELLO": parse_hello,
    "SEEK": _seek,
    "PAUSE": _pause,
    "RESUME": _resume,
    "PURGE": _purge,
    "DELETE": _delete,
    "STATUS": _status,
    "CLEAN": _clean,
    "POLICY": _policy,
    "SCHEDULE": parse_schedule,
    "SCHEDULES": parse_schedules,
    "UNSCHEDULE": parse_unschedule,
}
