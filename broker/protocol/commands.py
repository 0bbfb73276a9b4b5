"""Commands a client can send, as small frozen values the server dispatches on by type."""

from __future__ import annotations

from dataclasses import dataclass, field

from linemq.broker.protocol.filters import HeaderFilter
from linemq.broker.protocol.positions import Position
from linemq.broker.protocol.schedules import ListSchedules, Schedule, ScheduleHeader, Unschedule
from linemq.broker.protocol.v2 import Hello, Put, PutHeader


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class Heartbeat:
    pass


@dataclass(frozen=True, slots=True)
class Auth:
    token: str = field(repr=False)


@dataclass(slots=True)
class Pub:
    """Treat as immutable; not ``frozen`` because one is built per published message
    and a frozen dataclass takes three times as long to build."""

    topic: str
    msg: str


@dataclass(frozen=True, slots=True)
class Sub:
    """``topic`` may be a pattern (``orders.*``, ``orders.>``)."""

    topic: str
    group: str | None = None
    start: Position | None = None
    ordering: str | None = None  # ``fifo`` | ``none``: a group's order (protocol.md)
    filter: HeaderFilter | None = None  # ``filter=``: a new group's header filter


@dataclass(frozen=True, slots=True)
class Seek:
    topic: str
    group: str
    position: Position


@dataclass(frozen=True, slots=True)
class Unsub:
    topic: str
    group: str | None = None


@dataclass(frozen=True, slots=True)
class History:
    topic: str
    n: int


@dataclass(frozen=True, slots=True)
class Ack:
    id: str


@dataclass(frozen=True, slots=True)
class Nack:
    id: str
    delay: float | None = None
    reason: str | None = None
    """Why the consumer failed it (``reason=<text>``), bounded, stored with the attempt."""


@dataclass(frozen=True, slots=True)
class Term:
    """Fail a held message for good: it is dead-lettered now, with ``reason`` if given."""

    id: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Touch:
    """``progress``: 0-100 if the consumer gave a number; ``note``: its text, if any."""

    id: str
    progress: float | None = None
    note: str | None = None

    @property
    def reports(self) -> bool:
        """A ``TOUCH ... progress=``: something to show in ``STATUS``."""
        return self.progress is not None or self.note is not None


@dataclass(frozen=True, slots=True)
class Status:
    """Where one message of ``topic`` is, by ``offset`` or by ``id`` (one of them is set)."""

    topic: str
    offset: int | None = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Groups:
    topic: str


@dataclass(frozen=True, slots=True)
class Policy:
    """The delivery policy ``topic``'s groups use (``--topic-policy`` or the flags); with
    ``group``, that group's, and ``changes`` (``key=value``) to set on it first."""

    topic: str
    group: str | None = None
    changes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class DlqList:
    topic: str
    n: int


@dataclass(frozen=True, slots=True)
class Stats:
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class Pause:
    topic: str
    group: str


@dataclass(frozen=True, slots=True)
class Resume:
    topic: str
    group: str


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete a consumer group (``topic`` may be a pattern); ``force``: even with members."""

    topic: str
    group: str
    force: bool = False


@dataclass(frozen=True, slots=True)
class DeleteTopic:
    """Delete a topic, its dead letters and every group of both; ``force``: even with
    subscribers or members attached."""

    topic: str
    force: bool = False


@dataclass(frozen=True, slots=True)
class Clean:
    """Delete the oldest whole segments of ``topic`` that every group has finished, and that
    are older than ``older`` seconds and/or beyond the newest ``keep`` messages."""

    topic: str
    older: float | None = None
    keep: int | None = None


@dataclass(frozen=True, slots=True)
class Purge:
    """Empty a dead-letter topic (only ``<topic>.dlq`` names), or remove one ``letter`` of it
    (a dlq offset, a dlq id, or the original message's id)."""

    topic: str
    letter: str | None = None


@dataclass(frozen=True, slots=True)
class Replay:
    """Republish dead letters of ``topic``; ``id`` None means every one not yet replayed."""

    topic: str
    id: str | None


Command = (
    Ping
    | Auth
    | Quit
    | Heartbeat
    | Pub
    | Sub
    | Unsub
    | History
    | Ack
    | Nack
    | Term
    | Touch
    | Groups
    | Policy
    | DlqList
    | Replay
    | Stats
    | Pause
    | Resume
    | Purge
    | Delete
    | DeleteTopic
    | Status
    | Clean
    | Seek
    | Hello
    | PutHeader
    | Put
    | ScheduleHeader
    | Schedule
    | ListSchedules
    | Unschedule
)
