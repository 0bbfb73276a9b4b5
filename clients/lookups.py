"""``STATUS`` and ``TOUCH ... progress=``: pure encoders, and the reply's lines parsed.

Kept apart from ``clients/protocol.py`` like the operator verbs; ``Client.status``
and ``Message.touch(progress=...)`` send them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from linemq.clients.errors import ProtocolError
from linemq.clients.protocol import check_name
from linemq.clients.replies import StatusLine

MAX_NOTE_BYTES = 200


@dataclass(frozen=True, slots=True)
class GroupPlace:
    """Where the message is in one group: ``state`` is ``waiting``, ``inflight``, ``dead``,
    ``done`` or ``before_start`` (protocol.md, Where a message is); ``fields`` has the rest."""

    group: str
    state: str
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def attempts(self) -> int:
        """Deliveries so far (``attempt`` of an in-flight one, ``attempts`` otherwise)."""
        return int(self.fields.get("attempt") or self.fields.get("attempts") or 0)

    @property
    def progress(self) -> float | None:
        value = self.fields.get("progress")
        return float(value) if value is not None else None

    @property
    def note(self) -> str | None:
        return self.fields.get("note")

    @property
    def member(self) -> str | None:
        return self.fields.get("member")

    @property
    def reason(self) -> str | None:
        return self.fields.get("reason")

    @property
    def error(self) -> str | None:
        return self.fields.get("error")


@dataclass(frozen=True, slots=True)
class MessageStatus:
    """``Client.status``: the message (``fields``: key, priority, expires_at...) and its groups."""

    topic: str
    offset: int
    id: str
    ts: float
    fields: Mapping[str, str]
    groups: tuple[GroupPlace, ...]

    def group(self, name: str) -> GroupPlace | None:
        return next((g for g in self.groups if g.group == name), None)


def encode_status(topic: str, message: str | int) -> bytes:
    """``STATUS <topic> <id|offset>``: an int is an offset, a str a message id."""
    if isinstance(message, bool) or (isinstance(message, int) and message < 1):
        raise ValueError("an offset is a positive integer")
    what = str(message)
    if not what or any(c.isspace() for c in what):
        raise ValueError("message id must be non-empty and without whitespace")
    return f"STATUS {check_name(topic)} {what}\n".encode()


def encode_touch_progress(
    message_id: str, progress: float | None = None, note: str | None = None
) -> bytes:
    """``TOUCH <id> progress=<0-100> [note]`` (or just the note)."""
    if any(c.isspace() for c in message_id) or not message_id:
        raise ValueError("message id must be non-empty and without whitespace")
    words = []
    if progress is not None:
        if isinstance(progress, bool) or not (0 <= progress <= 100) or math.isnan(progress):
            raise ValueError("progress must be a number from 0 to 100")
        words.append(str(int(progress)) if progress == int(progress) else repr(float(progress)))
    if note is not None:
        note = " ".join(note.split())
        if not note:
            raise ValueError("note must not be blank")
        if progress is None and _looks_numeric(note.split()[0]):
            raise ValueError("a note without progress must not start with a number")
        words.append(note)
    if not words:
        raise ValueError("give progress, a note, or both")
    return f"TOUCH {message_id} progress={' '.join(words)}\n".encode()


def _looks_numeric(word: str) -> bool:
    try:
        float(word.removesuffix("%"))
    except ValueError:
        return False
    return True


def to_message_status(lines: list[StatusLine]) -> MessageStatus:
    heads = [line for line in lines if line.kind == "MESSAGE"]
    if len(heads) != 1:
        raise ProtocolError("STATUS reply without one MESSAGE line")
    head = heads[0]
    groups = tuple(
        GroupPlace(line.name, line.fields.get("state", ""), {k: v for k, v in line.fields.items()})
        for line in lines
        if line.kind == "STATUS"
    )
    try:
        ts = float(head.fields.get("ts", "0"))
    except ValueError:
        raise ProtocolError(f"malformed MESSAGE ts: {head.fields.get('ts')!r}") from None
    return MessageStatus(head.topic, head.offset, head.name, ts, dict(head.fields), groups)
