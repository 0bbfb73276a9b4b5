"""A message's life in a consumer group: every transition, the journal event it writes, replay.

=========  ===================  ==============================================
event      transition           from -> to
=========  ===================  ==============================================
``t``      ``take``             the log -> waiting (read ahead of delivery)
``d``      ``deliver``          waiting -> in flight (a row of a member's holdings)
``a``      ``ack``              in flight -> done (acked)
``r``      ``retry``            in flight -> waiting, due at ``at`` (NACK with its
                                delay, ack timeout, consumer gone, TERM's decision)
``x``      ``dead_letter``      waiting -> done (dead-lettered: out of retries, TERM)
``exp``    ``expire``           waiting -> done (its TTL passed before delivery)
``g``      ``gone``             waiting -> done (its record was deleted)
``skip``   ``skip_to``          the log -> done (deleted before this group took it)
``seek``   ``seek``             everything -> forgotten; the cursor moves
``pause``  ``set_paused``       delivering <-> paused
``order``  ``set_ordering``     ``fifo``: a message out or waiting for a retry holds
                                back every later one (scheduler.py); ``key`` (the
                                default); ``none``: keys are not held
``pol``    ``set_policy``       the group's own policy settings (``POLICY <topic>
                                <group> key=value``), all of them, over its topic's
                                policy
``filter`` ``set_filter``       the group's header filter (``SUB ... filter=``)
``fl``     ``take_filtered``    the log -> done (taken, does not match the filter;
                                written with the ``t`` line that takes it)
``start``  ``create``           where a new group starts
``floor``  (compaction)         everything below is done
``snap``   (compaction)         the whole state, written after a ``floor``
(none)     ``restart``          in flight -> waiting, at the end of a replay: the
                                broker stopped while it was out (attempt kept)
=========  ===================  ==============================================

A failed attempt (NACK, ack timeout, a member dying with it, TERM) is counted by
the event that records it: its ``r`` line (or the ``x`` line, when that failure
dead-letters the message at once) carries ``"f": <reason>``, and replaying that
line counts it again. A retry that is no failure (a clean leave, a letter that
could not be written yet) has no ``f``. The counts go into every ``snap``, so
they are durable like ``acked`` and ``dead``; lines and snapshots of earlier
releases have none, so their failures count from 0.

A key is held from a message's first delivery until it is done; that follows
from the states above (scheduler.py holds and releases; after a restart the
retried messages hold their keys again), so it has no event of its own.

Each transition is one ``_on_*`` function here. The live method applies it and
journals its event; replay decodes each line and calls the same function
through ``_REPLAY``, the one table of events. In flight a message is a row of
its member's ``Holdings`` (arrays, holdings.py); a message with more history
than a plain first delivery (a key, a priority, a retry) keeps it in
``history`` while it is out. During a replay there are no members, so a
delivery marks the waiting ``Pending`` (pending.py) in flight and ``restart``
makes it waiting again. The lines' bytes are group_events.py's, the snapshot's
group_snapshot.py's, and the checks of the group's settings group_settings.py's.

Every offset below the cursor (the next offset never delivered) was delivered
and is either done or still pending, so the cursor and what is pending are the
whole state: the acks above the lowest pending offset are implied, and
compaction rewrites the journal as one snapshot, so its size (and the memory)
follows what is pending, not the group's history.

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

from collections.abc import Callable, Iterable
from typing import Any, Final

import structlog

from linemq.broker.delivery.group_events import (
    ack_line,
    deliver_line,
    filtered_line,
    is_event,
    offsets_read,
    runs_read,
    take_line,
)
from linemq.broker.delivery.group_settings import ORDERING_WRITTEN, ordering_read, overrides_read
from linemq.broker.delivery.group_snapshot import encode_snapshot, read_snapshot
from linemq.broker.delivery.holdings import Holdings
from linemq.broker.delivery.pending import Pending, Phase
from linemq.broker.protocol.filters import HeaderFilter, parse_filter
from linemq.broker.storage.records import Record
from linemq.broker.storage.state_store import EventLog

__all__ = ["GroupState", "Pending", "Phase"]

log = structlog.get_logger(__name__)

COMPACT_MIN_BYTES: Final = 256 * 1024
COMPACT_RATIO: Final = 8
SNAPSHOT_BYTES_PER_ENTRY: Final = 48


class GroupState:
    """Cursor, waiting messages and in-flight rows of one group, kept in a journal."""

    def __init__(self, journal: EventLog) -> None:
        self.journal = journal
        self.start = 1
        self.cursor = 1
        self.pending: dict[int, Pending] = {}  # waiting (and, in a replay, in flight)
        self.history: dict[int, Pending] = {}  # in flight, with more than a row says
        self.holdings: list[Holdings] = []  # one per member: the rows in flight
        self.completed = 0
        self.dead = 0
        self.dropped = 0
        self.expired_count = 0
        self.acked_count = 0
        self.failures: dict[str, int] = {}  # failed attempts by reason (see above)
        self.paused = False
        self.ordering = "key"
        self.overrides: dict[str, str] = {}  # POLICY <topic> <group> settings, as given
        self.filter: HeaderFilter | None = None
        self.filtered_count = 0

    # -- live transitions (each applies, then journals) ------------------------------

    def create(self, start: int) -> None:
        """Two lines say where the group starts, so one damaged line cannot lose it."""
        self._record({"e": "start", "o": start})
        self._record({"e": "floor", "o": start})

    def take(self, records: list[Record]) -> list[Pending]:
        """Records from the cursor on become waiting (not delivered yet)."""
        first, n = records[0].offset, records[-1].offset - records[0].offset + 1
        self.journal.append_line(take_line(first, n))
        return self._on_take(first, n, records)

    def deliver(self, ps: list[Pending], ts: float) -> None:
        """A pump's deliveries, all at ``ts`` (attempts already counted): one journal line
        per run of consecutive offsets with the same attempt count. The caller makes them
        rows (``hold``)."""
        self._on_deliver(ps, ts)
        text = repr(ts).encode()
        lines = []
        first, n = ps[0], 1
        for p in ps[1:]:
            if p.offset == first.offset + n and p.attempts == first.attempts:
                n += 1
                continue
            lines.append(deliver_line(first.offset, n, first.attempts, text))
            first, n = p, 1
        lines.append(deliver_line(first.offset, n, first.attempts, text))
        self.journal.append_line(b"".join(lines))

    def take_and_deliver(self, first: int, n: int, ts: float) -> None:
        """Records ``first`` .. ``first + n - 1``, at the cursor, delivered at once for the
        first time, straight to rows (never ``Pending``s): ``take`` and ``deliver`` in one."""
        assert first == self.cursor
        self.journal.append_line(take_line(first, n) + deliver_line(first, n, 1, repr(ts).encode()))
        self.cursor = first + n

    def hold(self, ps: list[Pending]) -> None:
        """``ps`` just became rows: they leave ``pending``; what a row cannot say stays
        (the caller drops their records once sent)."""
        pending, history = self.pending, self.history
        for p in ps:
            del pending[p.offset]
            if not p.is_plain():
                history[p.offset] = p
        if not pending:
            self.pending = {}  # a dict keeps its largest size: give the memory back

    def ack(self, offsets: list[int]) -> list[Pending]:
        """Acks read together (each a row taken): one journal line. Returns the history of
        those that had one (a key to release)."""
        self.journal.append_line(ack_line(offsets))
        return self._on_ack(offsets)

    def unhold(self, offset: int, id_sent: float) -> Pending:
        """A row leaves its holdings without an ack (NACK, TERM, timeout, the member left,
        SEEK): a waiting ``Pending`` again, with its history, not journaled yet (``retry``,
        ``dead_letter`` or ``seek`` follows)."""
        p = self.history.pop(offset, None)
        if p is None:
            p = Pending(offset)
            p.attempts = 1
            p.first_ts = id_sent
        p.last_ts = id_sent
        p.phase = Phase.WAITING
        self.pending[offset] = p
        return p

    def retry(self, p: Pending, failed: bool = False) -> None:
        """``failed``: this retry is a failed attempt of ``p.reason``, counted."""
        entry = {"e": "r", "o": p.offset, "a": p.attempts, "at": p.retry_at, "why": p.reason}
        if p.error:
            entry["err"] = p.error
        if failed:
            entry["f"] = p.reason
        self.journal.append(entry)
        self._on_retry(p.offset, p.attempts, p.retry_at, p.reason, p.error, entry.get("f"))

    def dead_letter(self, offset: int, failed: str | None = None) -> None:
        """``failed``: the failed attempt (its reason) that dead-letters it, counted."""
        self._record(
            {"e": "x", "o": offset} if failed is None else {"e": "x", "o": offset, "f": failed}
        )

    def expire(self, offset: int) -> None:
        """A message's TTL passed before it could be delivered: it is done."""
        self._record({"e": "exp", "o": offset})

    def gone(self, offset: int) -> None:
        """A pending message whose record was deleted (retention, purge): it is done."""
        self._record({"e": "g", "o": offset})

    def skip_to(self, offset: int) -> None:
        """Records below ``offset`` were deleted before this group got to them."""
        self._record({"e": "skip", "o": offset})

    def seek(self, offset: int) -> None:
        """Start over at ``offset``: everything pending is forgotten (rows are unheld first)."""
        self._record({"e": "seek", "o": offset})

    def set_paused(self, paused: bool) -> None:
        self._record({"e": "pause", "v": paused})

    def set_ordering(self, ordering: str) -> None:
        self._record({"e": "order", "v": ORDERING_WRITTEN[ordering]})

    def set_policy(self, overrides: dict[str, str]) -> None:
        """The group's settings over its topic's policy: the whole set each time."""
        self._record({"e": "pol", "v": dict(overrides)})

    def set_filter(self, header_filter: HeaderFilter) -> None:
        self._record({"e": "filter", "v": header_filter.texts})

    def take_filtered(self, records: list[Record], header_filter: HeaderFilter) -> list[Pending]:
        """``take`` for a group with a filter: the records that do not match are done at
        once (``fl``, in the same write as the ``t``), never delivered nor attempted."""
        runs: list[list[int]] = []
        keep: list[Record] = []
        matches = header_filter.matches
        for r in records:
            meta = r.meta
            if matches(meta.headers if meta is not None else None):
                keep.append(r)
            elif runs and runs[-1][0] + runs[-1][1] == r.offset:
                runs[-1][1] += 1
            else:
                runs.append([r.offset, 1])
        first, n = records[0].offset, records[-1].offset - records[0].offset + 1
        if not runs:
            self.journal.append_line(take_line(first, n))
            return self._on_take(first, n, records)
        self.journal.append_line(take_line(first, n) + filtered_line(runs))
        self._on_take(first, n, [])
        self._on_filtered(runs)
        ps = [Pending(r.offset, r) for r in keep]
        self.pending.update((p.offset, p) for p in ps)
        return ps

    def filter_out(self, offset: int) -> None:
        """A message taken and never delivered that does not match (after a restart that
        lost the ``fl`` line written with its ``t``)."""
        self.journal.append_line(filtered_line([[offset, 1]]))
        self._on_filtered([[offset, 1]])

    # -- the transitions -------------------------------------------------------------

    def _on_take(
        self, first: int, count: int, records: list[Record] | None = None
    ) -> list[Pending]:
        """A ``t`` starts at the cursor; in a replay anywhere else a line was lost: what it
        passes is pending again (redelivered), never skipped."""
        self._fill_to(first)
        pending = self.pending
        if records is not None:
            ps = [Pending(r.offset, r) for r in records]
            pending.update(zip([p.offset for p in ps], ps, strict=True))
        else:
            ps = [pending.setdefault(o, Pending(o)) for o in range(first, first + count)]
        if first + count > self.cursor:
            self.cursor = first + count
        return ps

    def _on_deliver(self, ps: list[Pending], ts: float) -> None:
        for p in ps:
            p.last_ts = ts
            if not p.first_ts:
                p.first_ts = ts
            p.phase = Phase.IN_FLIGHT
            if p.offset >= self.cursor:  # only in a replay: a live delivery was taken first
                self.cursor = p.offset + 1

    def _on_ack(self, offsets: Iterable[int]) -> list[Pending]:
        pending, history = self.pending, self.history
        n = 0
        had: list[Pending] = []
        for offset in offsets:
            n += 1
            pending.pop(offset, None)  # (in a replay: live, an acked message is a row)
            if history and (p := history.pop(offset, None)) is not None:
                had.append(p)
        self.completed += n
        self.acked_count += n
        return had

    def _on_retry(
        self, offset: int, attempts: int, at: float, why: str, err: str, failed: object = None
    ) -> None:
        p = self.pending_for(offset)
        p.attempts, p.retry_at, p.reason, p.error = attempts, at, why, err
        p.phase = Phase.WAITING
        if failed is not None:
            self._on_failed(failed)

    def _on_done(self, offset: int, counter: str, failed: object = None) -> None:
        """Dead-lettered (``dead``), deleted (``dropped``) or expired (``expired_count``)."""
        if self.pending.pop(offset, None) is not None:
            self.completed += 1
        setattr(self, counter, getattr(self, counter) + 1)
        if failed is not None:
            self._on_failed(failed)

    def _on_failed(self, reason: object) -> None:
        if not isinstance(reason, str):
            raise TypeError(f"failure reason {reason!r}")
        self.failures[reason] = self.failures.get(reason, 0) + 1

    def _on_filtered(self, runs: list[list[int]]) -> None:
        pending = self.pending
        for first, n in runs:
            for offset in range(first, first + n):
                pending.pop(offset, None)
            self.completed += n
            self.filtered_count += n

    def _on_skip(self, offset: int) -> None:
        if offset > self.cursor:
            self.dropped += offset - self.cursor
            self.cursor = offset

    def _on_seek(self, offset: int) -> None:
        self.pending.clear()
        self.history.clear()
        self.cursor = offset

    def _on_start(self, offset: int) -> None:
        self.start = self.cursor = offset

    def _on_restart(self) -> None:
        """The broker stopped while these were out: retry at once, attempts kept, so a
        message that crashes the broker still reaches the DLQ."""
        for p in self.pending.values():
            if p.phase is Phase.IN_FLIGHT:
                p.phase = Phase.WAITING
                p.retry_at = 0.0
                p.reason = p.reason or "broker_restart"

    # -- replay ------------------------------------------------------------------------

    def load(self, fallback: int = 1) -> bool:
        """Replay the journal through the transitions; True if the group existed.

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
            kind = str(entry["e"])  # (is_event let only known strings through)
            if not known and kind not in _FLOORS:
                if lost:  # the lines that said where the group started are lost
                    self.start = self.cursor = fallback
                known = True
            try:
                _REPLAY[kind](self, entry)
            except (KeyError, TypeError, ValueError) as exc:  # a damaged journal of format 1
                lost += 1
                log.error("group_journal_entry_unusable", path=self.journal.label, error=repr(exc))
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
                path=self.journal.label,
                lines_lost=lost,
                cursor=self.cursor,
                pending=len(self.pending),
                guarantee="at-least-once: what lost lines said is delivered again, never skipped",
            )
        untaken = self._untake()
        if entries and (lost or untaken or self.journal.needs_rewrite):
            self.journal.rewrite_now(self.snapshot_entries())
        self._on_restart()
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

    def _replay_deliver(self, e: dict[str, Any]) -> None:
        """``n``: a run of consecutive offsets delivered together."""
        self._fill_to(e["o"])
        ps = [self.pending_for(o) for o in range(e["o"], e["o"] + e.get("n", 1))]
        for p in ps:
            p.attempts = e["a"]
        self._on_deliver(ps, e["t"])

    def _record(self, entry: dict[str, Any]) -> None:
        _REPLAY[entry["e"]](self, entry)
        self.journal.append(entry)

    def _fill_to(self, offset: int) -> None:
        """Offsets from the cursor up to ``offset`` become pending (only after a lost line)."""
        if offset > self.cursor:
            for o in range(self.cursor, offset):
                if o not in self.pending:
                    self.pending[o] = Pending(o)
            self.cursor = offset

    def pending_for(self, offset: int) -> Pending:
        p = self.pending.get(offset)
        if p is None:
            p = self.pending[offset] = Pending(offset)
        return p

    # -- figures ---------------------------------------------------------------------

    @property
    def inflight(self) -> int:
        return sum(h.left for h in self.holdings)

    @property
    def count(self) -> int:
        """Messages pending: taken from the log and not done."""
        return len(self.pending) + self.inflight

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
        return encode_snapshot(self)

    def _restore(self, e: dict[str, Any]) -> None:
        """All or nothing: a snapshot that does not make sense raises before changing a thing."""
        snap = read_snapshot(e)
        self.start, self.cursor = snap.start, snap.cursor
        self.pending, self.history = snap.pending, {}
        self.completed, self.dead, self.acked_count = snap.completed, snap.dead, snap.acked
        self.dropped, self.expired_count, self.failures = snap.dropped, snap.expired, snap.failures
        self.paused, self.ordering, self.overrides = snap.paused, snap.ordering, snap.overrides
        self.filter, self.filtered_count = snap.filter, snap.filtered


def _floor(s: GroupState, e: dict[str, Any]) -> None:
    s.pending.clear()
    s.cursor = e["o"]


def _pause(s: GroupState, e: dict[str, Any]) -> None:
    s.paused = bool(e["v"])


def _filter(s: GroupState, e: dict[str, Any]) -> None:
    s.filter = parse_filter(e["v"])


def _order(s: GroupState, e: dict[str, Any]) -> None:
    s.ordering = ordering_read(e["v"])


def _policy(s: GroupState, e: dict[str, Any]) -> None:
    s.overrides = overrides_read(e["v"])


_REPLAY: Final[dict[str, Callable[[GroupState, dict[str, Any]], object]]] = {
    "t": lambda s, e: s._on_take(e["o"], e["n"]),
    "d": GroupState._replay_deliver,
    "a": lambda s, e: s._on_ack(offsets_read(e["o"])),
    "r": lambda s, e: s._on_retry(
        e["o"], e["a"], e["at"], e.get("why", ""), e.get("err", ""), e.get("f")
    ),
    "x": lambda s, e: s._on_done(e["o"], "dead", e.get("f")),
    "exp": lambda s, e: s._on_done(e["o"], "expired_count"),
    "g": lambda s, e: s._on_done(e["o"], "dropped"),
    "skip": lambda s, e: s._on_skip(e["o"]),
    "seek": lambda s, e: s._on_seek(e["o"]),
    "pause": _pause,
    "order": _order,
    "filter": _filter,
    "fl": lambda s, e: s._on_filtered(runs_read(e["r"])),
    "pol": _policy,
    "start": lambda s, e: s._on_start(e["o"]),
    "floor": _floor,
    "snap": GroupState._restore,
}
"""Every journal event and the transition it replays (the live methods call the same)."""

_FLOORS: Final = ("start", "floor", "snap", "seek")
