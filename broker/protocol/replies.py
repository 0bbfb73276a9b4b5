"""Every line the broker sends, built in one place so the seed's exact texts live here only."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, Protocol

BANNER: Final = b"OK connected\n"
PONG: Final = b"OK pong\n"
AUTHENTICATED: Final = b"OK authenticated\n"
BYE: Final = b"OK bye\n"
PUBLISHED: Final = b"OK published\n"
ACK_RECEIVED: Final = b"OK ack_received\n"
NACK_RECEIVED: Final = b"OK nack_received\n"
TOUCHED: Final = b"OK touched\n"
TERMINATED: Final = b"OK terminated\n"
HEARTBEAT_RECEIVED: Final = b"OK heartbeat_received\n"
HISTORY_END: Final = b"OK history end\n"
GROUPS_END: Final = b"OK groups end\n"
POLICY_END: Final = b"OK policy end\n"
DLQ_END: Final = b"OK dlq end\n"
STATS_END: Final = b"OK stats end\n"
STATUS_END: Final = b"OK status end\n"


def err(reason: str) -> bytes:
    return f"ERR {reason}\n".encode()


def storage_unavailable(error: BaseException) -> bytes:
    """The reply to anything that could not be stored or made durable: one wording."""
    return err(f"storage unavailable: {error}")


def subscribed(topic: str, group: str | None) -> bytes:
    if group is None:
        return f"OK subscribed {topic}\n".encode()
    return f"OK subscribed {topic} in group {group}\n".encode()


def unsubscribed(topic: str, group: str | None) -> bytes:
    if group is None:
        return f"OK unsubscribed {topic}\n".encode()
    return f"OK unsubscribed {topic} from group {group}\n".encode()


class _FloatText:
    """``repr(ts)``, remembering the last one.

    A float's repr costs twice the rest of a MSG line, and the records of one
    publish run share a timestamp, so runs of deliveries ask for the same one.
    Zero is not remembered: -0.0 equals 0.0 but prints differently. The pair
    is one tuple, so a reader in another thread never sees half an update.
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = (0.0, "0.0")

    def __call__(self, ts: float) -> str:
        value, text = self._last
        if ts != value or not ts:
            text = repr(ts)
            self._last = (ts, text)
        return text


ts_text: Final = _FloatText()


class Message(Protocol):
    """What a delivery line shows of a stored message."""

    @property
    def id(self) -> str: ...
    @property
    def offset(self) -> int: ...
    @property
    def ts(self) -> float: ...
    @property
    def msg(self) -> str: ...


def message_lines(kind: str, topic: str, messages: Iterable[Message]) -> bytes:
    """``MSG``/``HISTORY <topic> <id> <offset> <ts> <msg>`` lines, encoded once for them all.

    ts is printed as Python prints floats, as the seed does.
    """
    return "".join(
        [f"{kind} {topic} {m.id} {m.offset} {ts_text(m.ts)} {m.msg}\n" for m in messages]
    ).encode()


def group_line(topic: str, group: str, fields: Mapping[str, int | str]) -> bytes:
    pairs = " ".join(f"{k}={v}" for k, v in fields.items())
    return f"GROUP {topic} {group} {pairs}\n".encode()


def policy_line(topic: str, fields: dict[str, str], group: str | None = None) -> bytes:
    pairs = " ".join(f"{k}={v}" for k, v in fields.items())
    names = topic if group is None else f"{topic} {group}"
    return f"POLICY {names} {pairs}\n".encode()


def policy_set(topic: str, group: str) -> bytes:
    return f"OK policy set {topic} {group}\n".encode()


def dlq_line(topic: str, dlq_offset: int, json_text: str) -> bytes:
    return f"DLQ {topic} {dlq_offset} {json_text}\n".encode()


def replayed(count: int, skipped: int = 0) -> bytes:
    """``skipped``: letters that fail a publish's checks, left in the DLQ (protocol.md)."""
    if skipped:
        return f"OK replayed {count} skipped {skipped}\n".encode()
    return f"OK replayed {count}\n".encode()


def stat_line(kind: str, names: tuple[str, ...], fields: Mapping[str, float]) -> bytes:
    """``STAT broker k=v ...``, ``STAT topic <t> k=v ...``, ``STAT group <t> <g> k=v ...``."""
    pairs = " ".join(f"{k}={v}" for k, v in fields.items())
    return f"STAT {' '.join((kind, *names))} {pairs}\n".encode()


def paused(topic: str, group: str) -> bytes:
    return f"OK paused {topic} {group}\n".encode()


def resumed(topic: str, group: str) -> bytes:
    return f"OK resumed {topic} {group}\n".encode()


def deleted(topic: str, group: str) -> bytes:
    return f"OK deleted {topic} {group}\n".encode()


def purged(count: int) -> bytes:
    return f"OK purged {count}\n".encode()


def sought(topic: str, group: str, offset: int) -> bytes:
    return f"OK seek {topic} {group} {offset}\n".encode()


def message_status(topic: str, offset: int, id: str, fields: Mapping[str, str]) -> bytes:
    """``MESSAGE <topic> <offset> <id> k=v ...``: the first line of a ``STATUS`` reply."""
    pairs = "".join(f" {k}={v}" for k, v in fields.items())
    return f"MESSAGE {topic} {offset} {id}{pairs}\n".encode()


def group_status(
    topic: str, offset: int, group: str, state: str, fields: Mapping[str, str]
) -> bytes:
    """``STATUS <topic> <offset> <group> state=<state> k=v ...``: one per group."""
    pairs = "".join(f" {k}={v}" for k, v in fields.items())
    return f"STATUS {topic} {offset} {group} state={state}{pairs}\n".encode()


def cleaned(count: int) -> bytes:
    return f"OK cleaned {count}\n".encode()


def topic_deleted(topic: str) -> bytes:
    return f"OK deleted {topic}\n".encode()
