"""A group's whole state as one journal line (``snap``), and back.

Compaction rewrites a group's journal as a ``floor`` line and a ``snap`` line
(lifecycle.py), and so does a replay that met damage. The snapshot holds the
cursor, every message pending (waiting, and in flight as rows of the members'
holdings), the counters and the group's own settings; lines of earlier releases
lack some fields, which then take the value those releases behaved by.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from linemq.broker.delivery.group_settings import ORDERING_WRITTEN, ordering_read, overrides_read
from linemq.broker.delivery.holdings import Holdings
from linemq.broker.delivery.pending import Pending, Phase
from linemq.broker.protocol.filters import HeaderFilter, parse_filter


class Snapshotted(Protocol):
    """What a snapshot is made of (``GroupState``)."""

    start: int
    cursor: int
    pending: dict[int, Pending]
    history: dict[int, Pending]
    holdings: list[Holdings]
    completed: int
    dead: int
    dropped: int
    expired_count: int
    acked_count: int
    failures: dict[str, int]
    paused: bool
    ordering: str
    overrides: dict[str, str]
    filter: HeaderFilter | None
    filtered_count: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A ``snap`` line read and checked whole, so a replay applies all of it or none."""

    start: int
    cursor: int
    pending: dict[int, Pending]
    completed: int
    dead: int
    dropped: int
    expired: int
    acked: int
    failures: dict[str, int]
    paused: bool
    ordering: str
    overrides: dict[str, str]
    filter: HeaderFilter | None
    filtered: int


def encode_snapshot(state: Snapshotted) -> dict[str, Any]:
    rows = []
    history = state.history
    for h in state.holdings:
        for row in h.rows():
            offset, sent = h.offsets[row], h.sent_at(row)
            p = history.get(offset)
            if p is None:
                rows.append([offset, 1, sent, sent, 0.0, "", "in_flight"])
            else:
                rows.append(_snapshot_row(p, "in_flight", sent))
    snap: dict[str, Any] = {
        "e": "snap",
        "start": state.start,
        "cursor": state.cursor,
        "completed": state.completed,
        "dead": state.dead,
        "dropped": state.dropped,
        "expired": state.expired_count,
        "acked": state.acked_count,
        "paused": state.paused,
        "pending": [_snapshot_row(p, p.phase.value, p.last_ts) for p in state.pending.values()]
        + rows,
    }
    if state.ordering != "key":
        snap["ordering"] = ORDERING_WRITTEN[state.ordering]
    if state.overrides:
        snap["policy"] = dict(state.overrides)
    if state.failures:
        snap["failures"] = dict(state.failures)
    if state.filter is not None:
        snap["filter"] = state.filter.texts
        snap["filtered"] = state.filtered_count
    return snap


def read_snapshot(e: Mapping[str, Any]) -> Snapshot:
    """Raises ``KeyError``, ``TypeError`` or ``ValueError`` for a line that does not make sense."""
    pending: dict[int, Pending] = {}
    for row in e["pending"]:
        offset, attempts, first_ts, last_ts, retry_at, reason, phase, *error = row
        if len(error) > 1:
            raise ValueError(f"snapshot row of {len(row)} fields")
        p = pending[int(offset)] = Pending(int(offset))
        p.attempts, p.first_ts, p.last_ts = int(attempts), float(first_ts), float(last_ts)
        p.retry_at, p.reason, p.phase = float(retry_at), str(reason), Phase(phase)
        p.error = str(error[0]) if error else ""
    counts = e.get("failures", {})  # none before failures were counted: from 0
    if not isinstance(counts, dict):
        raise TypeError(f"failures {counts!r}")
    completed, dead = int(e["completed"]), int(e["dead"])
    return Snapshot(
        start=int(e["start"]),
        cursor=int(e["cursor"]),
        pending=pending,
        completed=completed,
        dead=dead,
        dropped=int(e.get("dropped", 0)),
        expired=int(e.get("expired", 0)),
        acked=int(e.get("acked", completed - dead)),
        failures={str(reason): int(n) for reason, n in counts.items()},
        paused=bool(e.get("paused", False)),
        ordering=ordering_read(e.get("ordering", "key")),
        overrides=overrides_read(e.get("policy", {})),
        filter=parse_filter(e["filter"]) if "filter" in e else None,
        filtered=int(e.get("filtered", 0)),
    )


def _snapshot_row(p: Pending, phase: str, last_ts: float) -> list[object]:
    row: list[object] = [p.offset, p.attempts, p.first_ts, last_ts, p.retry_at, p.reason, phase]
    return [*row, p.error] if p.error else row
