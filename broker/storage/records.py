"""The persistent record: what one line of a topic log holds.

Kept apart from delivery bookkeeping (attempts, timers) the way beanstalkd keeps
its on-disk ``Jobrec`` apart from the in-memory ``Job``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

NORMAL_PRIORITY = 1
_META_KEYS = ("b64", "h", "k", "p", "at", "exp", "pid", "mr")


@dataclass(frozen=True, slots=True)
class Meta:
    """What a protocol-v2 publish may add to a message; absent for plain ``PUB``.

    ``data`` holds the exact payload when it is not one line of UTF-8 (the record's
    ``msg`` then holds the text v1 clients are shown). Times are epoch seconds, 0
    for none. Higher ``priority`` goes first; 1 is normal.
    """

    data: bytes | None = None
    headers: dict[str, str] | None = None
    key: str | None = None
    priority: int = NORMAL_PRIORITY
    deliver_at: float = 0.0
    expires_at: float = 0.0
    pid: str | None = None
    max_retries: int | None = None
    """``PUT ... max_retries=``: this message's limit over its topic's policy."""

    def encode(self) -> dict[str, object]:
        """The short JSON fields stored next to id/offset/ts/msg (only those set)."""
        out: dict[str, object] = {}
        if self.data is not None:
            out["b64"] = base64.b64encode(self.data).decode()
        if self.headers:
            out["h"] = self.headers
        if self.key is not None:
            out["k"] = self.key
        if self.priority != NORMAL_PRIORITY:
            out["p"] = self.priority
        if self.deliver_at:
            out["at"] = self.deliver_at
        if self.expires_at:
            out["exp"] = self.expires_at
        if self.pid is not None:
            out["pid"] = self.pid
        if self.max_retries is not None:
            out["mr"] = self.max_retries
        return out

    @classmethod
    def decode(cls, obj: dict[str, object]) -> Meta | None:
        """The metadata of a stored record, None for a plain one; malformed fields are dropped."""
        if len(obj) <= 4 or not any(k in obj for k in _META_KEYS):
            return None
        b64, headers, key, prio = obj.get("b64"), obj.get("h"), obj.get("k"), obj.get("p")
        at, exp, pid, mr = obj.get("at"), obj.get("exp"), obj.get("pid"), obj.get("mr")
        data = None
        if isinstance(b64, str):
            try:
                data = base64.b64decode(b64, validate=True)
            except ValueError:
                data = None
        return cls(
            data=data,
            headers=(
                {str(k): str(v) for k, v in headers.items()} if isinstance(headers, dict) else None
            ),
            key=key if isinstance(key, str) else None,
            priority=prio if type(prio) is int else NORMAL_PRIORITY,
            deliver_at=float(at) if isinstance(at, int | float) else 0.0,
            expires_at=float(exp) if isinstance(exp, int | float) else 0.0,
            pid=pid if isinstance(pid, str) else None,
            max_retries=mr if type(mr) is int and mr >= 0 else None,
        )


@dataclass(slots=True)
class Record:
    """One stored message. ``offset`` counts from 1 within its topic.

    Treat it as immutable. It is not ``frozen`` only because one is built per
    published message and a frozen dataclass takes three times as long to build.
    """

    offset: int
    id: str
    ts: float
    msg: str
    meta: Meta | None = None

    @property
    def payload(self) -> bytes:
        """The exact bytes published."""
        meta = self.meta
        if meta is not None and meta.data is not None:
            return meta.data
        return self.msg.encode()


class StorageError(Exception):
    """An append could not be made durable (disk full, I/O error...).

    Raised after the log has been rolled back, so nothing half-written is served.
    """
