"""A consumer group's durable bookkeeping: what is done, what is pending, and how often it failed.

Every offset below the cursor (the next offset never delivered) was delivered
and is either done (acked or dead-lettered) or still pending, so the cursor and
what is pending are the whole state: the ack floor is the lowest pending offset
and the acks above it are implied. What is pending is the ``Pending`` map plus
the first deliveries in flight that the members' holdings keep as rows
(holdings.py). Every change is a journal event; recovery replays the journal
through the same ``_apply`` the live code uses, and compaction rewrites it as
one snapshot, so the file's size (and the memory) follows what is pending, not
the group's history.

Damage never skips (at-least-once holds). Every line carries a check
(journal.py); a line that fails it is lost, and the state falls back to what
can only cause redelivery:

- a lost ack, dead letter, expiry or retry leaves its message pending: it is
  delivered again;
- a lost cursor advance (``t``, ``d``, ``seek``, ``skip``) cannot make a later
  line skip: any advance of the cursor makes every offset it passes pending,
  and a later ``t`` below the cursor makes its offsets pending again;
- a lost ``snap`` or ``start`` falls back to the ``floor`` line written with it
  (every offset below it was done when it was written); with that lost too, to
  the topic's first offset (the caller's ``fallback``).

After a damaged replay (or one of a journal of an earlier format) the state is
written back at once as a fresh snapshot, so the damage is reported once.
"""

from __future__ import annotations

import enum
from typing import Any, Final

import structlog

from linemq.broker.delivery.holdings import Holdings
from linemq.broker.storage.checksum import seal
from linemq.broker.storage.journal import Journal
from linemq.broker.storage.records import Record

log = structlog.get_logger(__name__)

COMPACT_MIN_BYTES: Final = 256 * 1024
COMPACT_RATIO: Final = 8
SNAPSHOT_BYTES_PER_ENTRY: Final = 48


class Phase(enum.Enum):
    """A pending delivery's life: in flight -> acked | waiting (retry) | dead-lettered."""

    IN_FLIGHT = "in_flight"
    WAITING = "waiting"


class Pending:
    """A message of this group taken from the log and not done yet.

    ``record`` is there while it waits; a delivery drops it (in-flight messages
    are most of a busy group's memory) and keeps the ``id`` and ``meta`` that
    acks and key holds need. A redelivery reads the record back.
    """

    __slots__ = (
        "attempts",
        "deadline",
        "error",
        "first_ts",
        "id",
        "last_ts",
        "member",
        "meta",
        "offset",
        "phase",
        "reason",
        "record",
        "retry_at",
    )

    def __init__(self, offset: int, record: Record | None = None) -> None:
        self.offset = offset
        self.record = record
        self.meta = record.meta if record is not None else None
        self.attempts = 0
        self.first_ts = 0.0
        self.last_ts = 0.0
        self.phase = Phase.WAITING
        self.retry_at = 0.0
        self.reason = ""
        self.error = ""  # the consumer's text for the last failure (NACK reason=, TERM)
        self.id = ""
        self.member: Any = None
        self.deadline = 0.0


class GroupState:
    """Cursor and pending map for one group, kept in a journal."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.start = 1
        self.cursor = 1
        self.pending: dict[int, Pending] = {}
        self.holdings: list[Holdings] = []  # one per member, shared with the ack deadlines
        self.completed = 0
        self.dead = 0
        self.dropped = 0
        self.expired_count = 0
        self.acked_count = 0
        self.paused = False

    # -- lifecycle ---------------------------------------------------------------

    def create(self, start: int) -> None:
        """Two lines say where the group starts, so one damaged line cannot lose it."""
        self._record({"e": "start", "o": start})
        self._record({"e": "floor", "o": start})

    def load(self, fallback: int = 1) -> bool:
        """Replay the journal; True if the group existed. In-flight deliveries become waiting.

        ``fallback``: where the group starts over when damage lost every line that
        said where it was (the topic's first offset: every message is delivered again).
        """
        entries = self.journal.replay_lines(is_event)
        known = False  # a start, floor or snapshot said where the group was
        lost = 0
        for entry in entries:
            if entry is None:
                lost += 1
                continue
            kind = entry["e"]
            if not known and kind not in _FLOORS:
                if lost:  # the lines that said where the group started are lost
                    self.start = self.cursor = fallback
                known = True
            try:
                self._apply(entry)
            except (KeyError, TypeError, ValueError) as exc:  # a damaged journal of format 1
                lost += 1
                log.error(
                    "group_journal_entry_unusable", path=str(self.journal.path), error=repr(exc)
                )
                continue
            known = known or kind in _FLOORS
        if entries and not known:
            self.start = self.cursor = fallback
        top = max(self.pending, default=0)
        if top >= self.cursor:  # a lost line moved the cursor past what later lines name
            self._fill_to(top + 1)
        if lost:
            log.error(
                "group_journal_damaged",
                path=str(self.journal.path),
                lines_lost=lost,
                cursor=self.cursor,
                pending=len(self.pending),
                guarantee="at-least-once: what lost lines said is delivered again, never skipped",
            )
        untaken = self._untake()
        if entries and (lost or untaken or self.journal.needs_rewrite):
            self.journal.rewrite_now(self.snapshot_entries())
        for p in self.pending.values():
            if p.phase is Phase.IN_FLIGHT:
                # The broker stopped while this was out: retry at once, attempts kept,
                # so a message that crashes the broker still reaches the DLQ.
                p.phase = Phase.WAITING
                p.retry_at = 0.0
                p.reason = p.reason or "broker_restart"
        return bool(entries)

    def _untake(self) -> int:
        """Messages taken ahead of delivery and never delivered, just below the cursor, go
        back to the log: the read-ahead belongs to a running group with members, so after
        a restart ``waiting`` counts only what was delivered, and the cursor is the next
        message never delivered. Returns how many (the caller writes a snapshot then)."""
        pending, cursor = self.pending, self.cursor
        while (p := pending.get(cursor - 1)) is not None and not (p.first_ts or p.attempts):
            del pending[cursor - 1]
            cursor -= 1
        untaken, self.cursor = self.cursor - cursor, cursor
        return untaken

    # -- live changes (each one journaled) ----------------------------------------

    def delivered(self, ps: list[Pending], ts: float) -> None:
        """A pump's deliveries, all at ``ts`` (attempts already counted): one journal
        line per run of consecutive offsets with the same attempt count."""
        self._delivered(ps, ts)
        text = repr(ts).encode()
        lines = []
        first, n = ps[0], 1
        for p in ps[1:]:
            if p.offset == first.offset + n and p.attempts == first.attempts:
                n += 1
                continue
            lines.append(_delivered_line(first.offset, n, first.attempts, text))
            first, n = p, 1
        lines.append(_delivered_line(first.offset, n, first.attempts, text))
        self.journal.append_line(b"".join(lines))

    def failed(self, p: Pending) -> None:
        entry = {"e": "r", "o": p.offset, "a": p.attempts, "at": p.retry_at, "why": p.reason}
        if p.error:
            entry["err"] = p.error
        self._record(entry)

    def acked(self, offsets: list[int]) -> None:
        """Acks read together (each one held: a ``Pending`` or a row): one journal line."""
        pending = self.pending
        for offset in offsets:
            pending.pop(offset, None)
        self.completed += len(offsets)
        self.acked_count += len(offsets)
        if len(offsets) == 1:
            self.journal.append_line(seal(b'{"e":"a","o":%d}' % offsets[0]))
        else:  # a list's repr is its JSON
            self.journal.append_line(seal(b'{"e":"a","o":%b}' % repr(offsets).encode()))

    def dead_lettered(self, offset: int) -> None:
        self._record({"e": "x", "o": offset})

    def taken(self, records: list[Record]) -> list[Pending]:
        """Records from the cursor on join the group's ready set (not delivered yet)."""
        first, last = records[0].offset, records[-1].offset
        self.journal.append_line(seal(b'{"e":"t","o":%d,"n":%d}' % (first, last - first + 1)))
        ps = [Pending(r.offset, r) for r in records]
        self.pending.update(zip([p.offset for p in ps], ps, strict=True))
        self.cursor = last + 1
        return ps

    def taken_and_delivered(self, first: int, n: int, ts: float) -> None:
        """Records ``first`` .. ``first + n - 1``, at the cursor, delivered at once for the
        first time, as rows of the members' holdings (never ``Pending``s here): the
        journal lines ``taken`` and ``delivered`` would write for them."""
        assert first == self.cursor
        self.journal.append_line(
            seal(b'{"e":"t","o":%d,"n":%d}' % (first, n))
            + _delivered_line(first, n, 1, repr(ts).encode())
        )
        self.cursor = first + n

    def expired(self, offset: int) -> None:
        """A message's TTL passed before it could be delivered: it is done."""
        self._record({"e": "exp", "o": offset})

    def seek(self, offset: int) -> None:
        """Start over at ``offset``: everything pending is forgotten."""
        self._record({"e": "seek", "o": offset})

    def gone(self, offset: int) -> None:
        """A pending message whose record was deleted (retention, purge): it is done."""
        self._record({"e": "g", "o": offset})

    def skip_to(self, offset: int) -> None:
        """Records below ``offset`` were deleted before this group got to them."""
        self._record({"e": "skip", "o": offset})

    def set_paused(self, paused: bool) -> None:
        self._record({"e": "pause", "v": paused})

    # -- internals ---------------------------------------------------------------

    def _record(self, entry: dict[str, Any]) -> None:
        self._apply(entry)
        self.journal.append(entry)

    def _apply(self, e: dict[str, Any]) -> None:
        kind = e["e"]
        if kind == "d":  # "n": a run of consecutive offsets delivered together
            self._fill_to(e["o"])
            ps = [self.pending_for(o) for o in range(e["o"], e["o"] + e.get("n", 1))]
            for p in ps:
                p.attempts = e["a"]
            self._delivered(ps, e["t"])
        elif kind == "r":
            p = self.pending_for(e["o"])
            p.attempts = e["a"]
            p.retry_at = e["at"]
            p.reason = e.get("why", "")
            p.error = e.get("err", "")
            p.phase = Phase.WAITING
        elif kind == "t":
            self._taken(e["o"], e["n"])
        elif kind == "a":  # one offset, or a list of acks read together
            offsets = e["o"] if type(e["o"]) is list else [e["o"]]
            for offset in offsets:
                self._finish(offset)
            self.acked_count += len(offsets)
        elif kind in ("x", "g", "exp"):
            self._finish(e["o"])
            if kind == "x":
                self.dead += 1
            elif kind == "g":
                self.dropped += 1
            elif kind == "exp":
                self.expired_count += 1
        elif kind == "seek":
            self.pending.clear()
            self.cursor = e["o"]
        elif kind == "skip":
            if e["o"] > self.cursor:
                self.dropped += e["o"] - self.cursor
                self.cursor = e["o"]
        elif kind == "pause":
            self.paused = bool(e["v"])
        elif kind == "start":
            self.start = self.cursor = e["o"]
        elif kind == "floor":
            self.pending.clear()
            self.cursor = e["o"]
        elif kind == "snap":
            self._restore(e)
        else:
            raise ValueError(f"unknown group journal event {kind!r}")

    def _taken(self, first: int, count: int) -> None:
        """A journal's ``t`` starts at the cursor; anywhere else a line was lost: what
        it passes is pending again (redelivered), never skipped."""
        self._fill_to(first)
        pending = self.pending
        for offset in range(first, first + count):
            if offset not in pending:
                pending[offset] = Pending(offset)
        if first + count > self.cursor:
            self.cursor = first + count

    def _fill_to(self, offset: int) -> None:
        """Offsets from the cursor up to ``offset`` become pending (only after a lost line)."""
        if offset > self.cursor:
            for o in range(self.cursor, offset):
                if o not in self.pending:
                    self.pending[o] = Pending(o)
            self.cursor = offset

    def _delivered(self, ps: list[Pending], ts: float) -> None:
        for p in ps:
            p.last_ts = ts
            if not p.first_ts:
                p.first_ts = ts
            p.phase = Phase.IN_FLIGHT
            if p.offset >= self.cursor:  # only in a replay: a live delivery was taken first
                self.cursor = p.offset + 1

    def pending_for(self, offset: int) -> Pending:
        p = self.pending.get(offset)
        if p is None:
            p = self.pending[offset] = Pending(offset)
        return p

    def _finish(self, offset: int) -> None:
        if self.pending.pop(offset, None) is not None:
            self.completed += 1

    @property
    def count(self) -> int:
        """Messages pending: taken from the log and not done."""
        return len(self.pending) + sum(h.left for h in self.holdings)

    @property
    def next_undelivered(self) -> int:
        """The lowest offset never delivered: one taken ahead (priorities reorder what is
        taken), else the cursor. A scan of what is pending: for inspection only."""
        return min((o for o, p in self.pending.items() if not p.first_ts), default=self.cursor)

    @property
    def floor(self) -> int:
        """Every offset below this is done (computed: only for inspection)."""
        lowest = [o for h in self.holdings if (o := h.lowest_offset()) is not None]
        return min([*self.pending, *lowest, self.cursor])

    # -- compaction --------------------------------------------------------------

    def needs_compaction(self) -> bool:
        """The journal is much larger than a snapshot of this state would be."""
        size = self.journal.size
        if size < COMPACT_MIN_BYTES:
            return False
        return size >= COMPACT_RATIO * (SNAPSHOT_BYTES_PER_ENTRY * self.count + 128)

    async def compact(self) -> bool:
        """Rewrite the journal as one snapshot, with the file work off the loop."""
        return await self.journal.rewrite_off_loop(self.snapshot_entries())

    def snapshot_entries(self) -> list[dict[str, object]]:
        """A snapshot, after a ``floor`` line a lost snapshot falls back to."""
        snap = self.snapshot()
        lowest = min((row[0] for row in snap["pending"]), default=self.cursor)
        return [{"e": "floor", "o": min(lowest, self.cursor)}, snap]

    def snapshot(self) -> dict[str, Any]:
        return {
            "e": "snap",
            "start": self.start,
            "cursor": self.cursor,
            "completed": self.completed,
            "dead": self.dead,
            "dropped": self.dropped,
            "expired": self.expired_count,
            "acked": self.acked_count,
            "paused": self.paused,
            "pending": [
                [p.offset, p.attempts, p.first_ts, p.last_ts, p.retry_at, p.reason, p.phase.value]
                + ([p.error] if p.error else [])
                for p in self.pending.values()
            ]
            + [
                [h.offsets[row], 1, h.sent[row], h.sent[row], 0.0, "", Phase.IN_FLIGHT.value]
                for h in self.holdings
                for row in h.rows()
            ],
        }

    def _restore(self, e: dict[str, Any]) -> None:
        """All or nothing: a snapshot that does not make sense raises before changing a thing."""
        pending: dict[int, Pending] = {}
        for row in e["pending"]:
            offset, attempts, first_ts, last_ts, retry_at, reason, phase, *error = row
            if len(error) > 1:
                raise ValueError(f"snapshot row of {len(row)} fields")
            p = pending[int(offset)] = Pending(int(offset))
            p.attempts, p.first_ts, p.last_ts = int(attempts), float(first_ts), float(last_ts)
            p.retry_at, p.reason, p.phase = float(retry_at), str(reason), Phase(phase)
            p.error = str(error[0]) if error else ""
        start, cursor = int(e["start"]), int(e["cursor"])
        completed, dead = int(e["completed"]), int(e["dead"])
        self.start, self.cursor, self.completed, self.dead = start, cursor, completed, dead
        self.dropped = e.get("dropped", 0)
        self.expired_count = e.get("expired", 0)
        self.acked_count = e.get("acked", self.completed - self.dead)
        self.paused = e.get("paused", False)
        self.pending = pending


def _delivered_line(offset: int, n: int, attempts: int, ts: bytes) -> bytes:
    if n == 1:
        return seal(b'{"e":"d","o":%d,"a":%d,"t":%b}' % (offset, attempts, ts))
    return seal(b'{"e":"d","o":%d,"n":%d,"a":%d,"t":%b}' % (offset, n, attempts, ts))


_FLOORS: Final = ("start", "floor", "snap", "seek")


_EVENT_FIELDS: Final = {
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
    "floor": ("o",),
    "snap": ("start", "cursor", "pending", "completed", "dead"),
}


def is_event(entry: dict[str, object]) -> bool:
    """A journal line this module wrote (anything else is damage, cut off like a torn line)."""
    kind = entry.get("e")
    fields = _EVENT_FIELDS.get(kind) if isinstance(kind, str) else None
    return fields is not None and all(f in entry for f in fields)
