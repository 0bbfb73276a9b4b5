"""The group journal's lines: the hot events (take, deliver, ack, filtered) as sealed bytes
without a JSON encoder, how replay reads their values, and the fields each event needs.

What each event means, and the transition it replays, is lifecycle.py's table. Journals
of every release replay, so these bytes only ever gain events and optional fields.
"""

from __future__ import annotations

from typing import Final

from linemq.broker.storage.checksum import seal


def take_line(first: int, n: int) -> bytes:
    return seal(b'{"e":"t","o":%d,"n":%d}' % (first, n))


def deliver_line(offset: int, n: int, attempts: int, ts: bytes) -> bytes:
    if n == 1:
        return seal(b'{"e":"d","o":%d,"a":%d,"t":%b}' % (offset, attempts, ts))
    return seal(b'{"e":"d","o":%d,"n":%d,"a":%d,"t":%b}' % (offset, n, attempts, ts))


def ack_line(offsets: list[int]) -> bytes:
    """Acks read together: one line."""
    if len(offsets) == 1:
        return seal(b'{"e":"a","o":%d}' % offsets[0])
    return seal(b'{"e":"a","o":%b}' % repr(offsets).encode())  # a list's repr is its JSON


def filtered_line(runs: list[list[int]]) -> bytes:
    """``fl``: runs of consecutive offsets as ``[first, count]`` (a list's repr is its JSON)."""
    return seal(b'{"e":"fl","r":%b}' % repr(runs).encode())


def offsets_read(o: object) -> list[int]:
    """An ``a`` line names one offset, or a list of acks read together."""
    if type(o) is list:
        return o
    if type(o) is int:
        return [o]
    raise TypeError(f"ack of {o!r}")


def runs_read(r: object) -> list[list[int]]:
    if type(r) is not list or not all(
        type(x) is list and len(x) == 2 and all(type(i) is int for i in x) for x in r
    ):
        raise TypeError(f"filtered runs {r!r}")
    return r


EVENT_FIELDS: Final = {
    "start": ("o",),
    "d": ("o", "a", "t"),
    "r": ("o", "a", "at"),
    "a": ("o",),
    "x": ("o",),
    "g": ("o",),
    "exp": ("o",),
    "t": ("o", "n"),
    "skip": ("o",),
    "seek": ("o",),
    "pause": ("v",),
    "order": ("v",),
    "filter": ("v",),
    "fl": ("r",),
    "pol": ("v",),
    "floor": ("o",),
    "snap": ("start", "cursor", "pending", "completed", "dead"),
}


def is_event(entry: dict[str, object]) -> bool:
    """A journal line lifecycle.py wrote (anything else is damage, cut off like a torn line)."""
    kind = entry.get("e")
    fields = EVENT_FIELDS.get(kind) if isinstance(kind, str) else None
    return fields is not None and all(f in entry for f in fields)
