"""One consumer group on one topic: round-robin over members with room, timers, retries.

Failures, retries, dead letters and the timers' callbacks are in group_failures.py.

Messages not yet delivered stay in the topic log. The group takes up to
``LOOKAHEAD`` of them at a time into its ready queue, where priority, offset
and per-key holds decide what goes next (scheduler.py); everything else waits
in the log behind the cursor. Ack deadlines all share one timeout, so
in-flight deliveries kept in delivery order are also in deadline order: one
timer per group, no scans. Retries, delays and backoff share one heap.

Every message in flight is a row of its member's holdings (holdings.py); what
happens to it is a transition of lifecycle.py, which journals it.

There is one deliver path: a pass (``pump``) hands the next ready messages to
members with room, in turn, and when it stops makes them rows, journals them and
sends each member one write. Most of the time nothing waits in the ready queue
and no record from the cursor on has a key, priority, delay or TTL; the queue
would hand records out in offset order anyway, so the pass takes them from the
tail cache and gives them out as they are, without a ``Pending`` each: the same
path with nothing to keep while they are out.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Coroutine
from typing import Final

import structlog

from linemq.broker.delivery.clients import ClientState, Member
from linemq.broker.delivery.context import DeliveryContext
from linemq.broker.delivery.group_failures import TERMINATED, GroupFailures
from linemq.broker.delivery.holdings import Holdings
from linemq.broker.delivery.lifecycle import GroupState
from linemq.broker.delivery.log_reads import LogReads
from linemq.broker.delivery.pending import Pending, Phase
from linemq.broker.delivery.policy import settings, with_overrides
from linemq.broker.delivery.rate import TokenBucket
from linemq.broker.delivery.scheduler import ReadyQueue
from linemq.broker.delivery.timers import AckDeadlines, DueHeap
from linemq.broker.storage.log_store import LogStore, TopicView
from linemq.broker.storage.records import Record

log = structlog.get_logger(__name__)

LOOKAHEAD: Final = 512
"""Messages taken ahead of delivery; priorities order the messages within it."""
DISK_READ: Final = 4 * LOOKAHEAD
"""Records per read from disk for a group behind the tail cache. Each read is a
worker-thread round trip that competes with the loop for the GIL; fewer, larger
reads drain a backlog about 14% faster than reads of LOOKAHEAD."""


class ConsumerGroup:
    def __init__(
        self,
        topic: str,
        name: str,
        log_: TopicView,
        state: GroupState,
        ctx: DeliveryContext,
        store: LogStore,
    ) -> None:
        self.topic = topic
        self.name = name
        self.log = log_
        self.state = state
        self.ctx = ctx
        # Bound once, and called through a local (a method-style call on an instance
        # attribute takes CPython's slow lookup): they run on every pump.
        self._deliveries = ctx.encoder.deliveries
        self._redeliveries = ctx.encoder.group_deliveries
        self.policy = with_overrides(ctx.policy_for(topic), state.overrides)
        self.members: list[Member] = []
        self._rr = 0
        self._queue = ReadyQueue(fifo=state.ordering == "fifo", keys=state.ordering != "none")
        self._plain_match = state.filter is None or state.filter.plain
        self._rate: TokenBucket | None = None
        self.rate_limited = 0  # waits of earlier buckets (a policy change makes a new one)
        self._deadlines = AckDeadlines(
            ctx.loop, self.policy.ack_timeout, self._on_ack_timeout, state.holdings
        )
        self._due = DueHeap(ctx.loop, self._on_due)
        # The running pass's deliveries: the records each member gets, in order; those
        # that waited as ``Pending``s; the attempts of redeliveries by offset; records
        # picked from the ready queue and not given yet; the publish times of first
        # deliveries (see pump).
        self._out: dict[Member, list[Record]] = {}
        self._sent: list[Pending] = []
        self._again: dict[int, int] = {}
        self._picked: list[Record] = []
        self._fresh: list[float] = []
        self._reads = LogReads(store, topic, log_, DISK_READ, self._spawn)
        self._failures = GroupFailures(
            topic,
            name,
            ctx,
            state,
            self._queue,
            self.policy.retry,
            schedule=self._schedule,
            recall=self._recall,
            pump_soon=lambda: ctx.pump_soon(self),
            spawn=self._spawn,
        )
        self._closed = False
        self._set_rate()
        self.delivered = 0
        self.redelivered = 0
        # Pending messages from before a restart need their records (key, priority,
        # delay) before anything can be scheduled.
        self._loading = bool(state.pending)
        if self._loading:
            self._spawn(self._load_pending())

    # -- membership --------------------------------------------------------------

    def join(self, client: ClientState) -> Member:
        member = Member(client, (self.topic, self.name))
        self.members.append(member)
        self.state.holdings.append(member.holdings)
        self.pump()
        return member

    def leave(self, member: Member, *, died: bool) -> None:
        """Hand the member's deliveries back; a death counts as a failed attempt, a leave not."""
        self.members.remove(member)
        rows = list(member.holdings.rows())
        ps = self.unhold(member, rows, "consumer dead" if died else "unsubscribed")
        self.state.holdings.remove(member.holdings)
        for p in ps:
            if died:
                self._failures.fail(p, "consumer_dead", delay=0.0)
            else:
                p.attempts -= 1
                self._failures.retry(p, 0.0)
        self.pump()

    # -- consumer commands ---------------------------------------------------------

    def acked(self, offsets: list[int]) -> None:
        """Acks read together, rows already taken (``ClientState.ack_row``): one journal
        line, then more deliveries."""
        for p in self.state.ack(offsets):
            if p.meta is not None:  # only a message with a key has something to release
                self._queue.release(p)
        if self._queue.fifo:
            self._queue.release_fifo(offsets)
        self._failures.after_done()

    def unhold(self, member: Member, rows: list[int], why: str) -> list[Pending]:
        """Rows of ``member``'s holdings leave without an ack and become waiting
        ``Pending``s; from now on their ids are refused, and ``why`` says so."""
        taken = member.holdings.take(rows)
        member.holding -= len(taken)
        forget, unhold = member.client.forget, self.state.unhold
        ps = []
        for offset, id, sent, _ in taken:
            forget(id, why)
            ps.append(unhold(offset, sent))
        return ps

    def nack(self, member: Member, row: int, delay: float | None, error: str | None = None) -> None:
        """No ``delay``: the retry backoff, as an ack timeout (``nack_backoff:off``: now)."""
        (p,) = self.unhold(member, [row], "nacked")
        if delay is None and not self.policy.nack_backoff:
            delay = 0.0
        self._failures.fail(p, "nacked", delay=delay, error=error)
        self.pump()

    def touch(self, member: Member, row: int) -> None:
        member.holdings.touch(row, self._deadlines.deadline())

    def term(self, member: Member, row: int, error: str | None) -> None:
        """``TERM``: dead-letter now (group_failures.py says how a crash cannot undo it)."""
        (p,) = self.unhold(member, [row], TERMINATED)
        self._failures.terminate(p, error)
        self.pump()

    def set_paused(self, paused: bool) -> None:
        """A paused group keeps collecting messages but delivers none (in-flight ones finish)."""
        if paused != self.state.paused:
            self.state.set_paused(paused)
            self.ctx.changed()
        self.pump()

    def seek(self, offset: int) -> None:
        """Start over at ``offset``: in-flight and waiting messages are forgotten."""
        for member in self.members:
            self.unhold(member, list(member.holdings.rows()), "group was reset with SEEK")
        self._due.clear()
        self._queue.clear()
        self.state.seek(offset)
        self.ctx.changed()
        self.pump()

    def apply_policy(self) -> None:
        """The group's settings changed (``POLICY <topic> <group> ...``): in force at once.
        An ack timeout applies to later deliveries; a shorter one also brings in-flight
        deadlines down to it, so deadlines stay in delivery order."""
        self.policy = with_overrides(self.ctx.policy_for(self.topic), self.state.overrides)
        self._failures.policy = self.policy.retry
        self._deadlines.set_timeout(self.policy.ack_timeout)
        self._set_rate()
        self.pump()

    def reorder(self) -> None:
        """The group's ordering changed while nothing is in flight: what waits is queued
        again under it (retries keep their keys, as after a restart)."""
        queue, now = self._queue, time.time()
        queue.reorder(self.state.ordering)
        waiting = [self.state.pending[o] for o in sorted(self.state.pending)]
        for p in waiting:
            if p.attempts:
                queue.hold(p)
        for p in waiting:
            if p.phase is Phase.WAITING and not p.retry_at > now:  # else in the timer heap
                p.retry_at = 0.0
                queue.push(p)
        self.pump()

    def _set_rate(self) -> None:
        rate, old = self.policy.rate, self._rate
        if old is not None and old.setting == rate:
            return
        if old is not None:
            old.close()
            self.rate_limited += old.waits
        self._rate = None if rate is None else TokenBucket(self.ctx.loop, rate, self.pump)

    @property
    def rate_waits(self) -> int:
        """Times deliveries waited for the group's rate limit since the broker started."""
        return self.rate_limited + (self._rate.waits if self._rate is not None else 0)

    def settings(self) -> dict[str, str]:
        """The effective policy, as ``GROUPS`` and ``POLICY <topic> <group>`` show it."""
        return settings(self.policy, self.state.ordering)

    # -- scheduling ----------------------------------------------------------------

    def on_written(self, records: list[Record]) -> None:
        self.pump()

    def pump(self) -> None:
        """Deliver while some member has room and something is ready.

        ``_give_out`` decides what each member gets; what the deliveries of a pass
        share is done once when it stops (``_hold``): one write per member (rather
        than a send, and its slow-consumer check, per message), the journal lines,
        the ack deadlines, rows in the holdings and the latency histogram.
        """
        now = time.time()
        self._give_out(now)
        if self._picked:
            self._give(self._picked)
            self._picked = []
        if self._out:
            self._hold(now)
        if self._fresh:
            fresh, self._fresh = self._fresh, []
            observe = self.ctx.deliver_latency.observe
            for ts, run in itertools.groupby(fresh):  # a publish run shares a timestamp
                observe(now - ts, len(list(run)))

    def _give_out(self, now: float) -> None:
        """The one deliver path: the next ready messages, in turn, to members with room.

        What waits in the ready queue goes first (``_deliver``). With nothing there,
        plain records at the cursor go straight from the log (``_give_plain``): the
        same path with no ``Pending`` to keep while they are out. ``now`` stamps every
        delivery of this pass: they leave together.
        """
        queue = self._queue
        room = -1  # the members' free slots, counted once something is ready
        more = True  # the log may hold records not taken yet; nothing is written mid-pass
        while not (self._closed or self.state.paused or self._loading or self.ctx.draining):
            ready = queue.ready
            if not ready and self._plain_at_cursor():
                if room < 0:
                    room = self._room()
                if room and (given := self._give_plain(room, now)):
                    room -= given
                    continue
            if more and (ready + queue.parked if queue.fifo else ready) < LOOKAHEAD // 2:
                # Delayed messages go to the timer heap, so keep taking until one is ready
                # (in a FIFO group, what is taken waits behind the head: once is enough).
                while (more := self._take(LOOKAHEAD - self._ahead())) and not queue.ready:
                    if queue.fifo and queue.parked:  # (a take all filtered out parks none)
                        break
                if not queue.ready:
                    return
            if room < 0:
                room = self._room()
            if not room:
                return
            if self._rate is not None and queue.ready and not self._rate.available():
                self._rate.wait()
                return
            p = queue.pop()
            if p is None:
                return
            if self.state.pending.get(p.offset) is p and p.phase is Phase.WAITING:
                if p.record is None and not self._recall(p, self._queue.push):
                    continue  # read back from disk, then queued again
                room -= self._deliver(p, now)

    def _ahead(self) -> int:
        """Messages taken ahead of delivery (LOOKAHEAD bounds them): the ready ones, and in
        a FIFO group those waiting behind its head."""
        queue = self._queue
        return queue.ready + queue.parked if queue.fifo else queue.ready

    def _room(self) -> int:
        limit, room = self.policy.max_inflight, 0
        for m in self.members:
            if m.holding < limit:
                room += limit - m.holding
        return room

    def _plain_at_cursor(self) -> bool:
        """Every record from the cursor on is plain (no key, priority, delay or TTL) and
        matches the filter, the next is in the tail cache's range, and the group is not
        FIFO: the ready queue would hand them out in offset order anyway, so they may go
        straight from the log (``_give_plain``). Records read from disk take the queue's
        way (``_take``)."""
        if self._queue.fifo or not self._plain_match or self._reads.fetching:
            return False
        log_, cursor = self.log, self.state.cursor
        # (past the written offset: nothing new; below the first: deleted, ``_take`` says so)
        return log_.first_offset <= cursor <= log_.written_offset and (
            log_.meta_last_offset < cursor
        )

    def _give_plain(self, room: int, now: float) -> int:
        """Up to ``room`` plain records at the cursor, taken and delivered at once, with no
        ``Pending``s: how many (0: not now; they are taken into the ready queue)."""
        log_, cursor = self.log, self.state.cursor
        rate = self._rate
        if rate is not None and not (room := min(room, rate.available())):
            rate.wait()
            return 0
        records = log_.read_cached(cursor, min(room, LOOKAHEAD))
        if not records or records[0].offset != cursor:
            return 0
        n = len(records)
        if rate is not None:
            rate.take(n)
        self.state.take_and_deliver(cursor, n, now)
        self.delivered += n
        self._fresh += [r.ts for r in records]
        if self._picked:  # given in the order they were picked
            self._give(self._picked)
            self._picked = []
        self._give(records)
        return n

    def _give(self, records: list[Record]) -> None:
        """Each record to the next member in turn with room (there is room for all)."""
        out = self._out
        for record in records:
            member = self._member_with_room()
            assert member is not None
            member.holding += 1
            got = out.get(member)
            if got is None:
                out[member] = [record]
            else:
                got.append(record)

    def _hold(self, now: float) -> None:
        """The pass's deliveries become rows of their members' holdings, then leave, one
        write per member. Those that waited as ``Pending``s are journaled here (the plain
        ones were with their take) and keep what a row cannot say (``GroupState.hold``)."""
        out, self._out = self._out, {}
        sent = self._sent
        if sent:
            self._sent = []
            self.state.deliver(sent, now)
            self.state.hold(sent)
        deadline = self._deadlines.deadline()
        for member, records in out.items():
            member.holdings.add([r.id for r in records], [r.offset for r in records], now, deadline)
        self._deadlines.rows_added()
        again = self._again
        if again:
            self._again = {}
        topic = self.topic
        for member, records in out.items():  # rows first: a send that drops its client unholds them
            client = member.client
            if again:
                for r in records:
                    if r.offset in again:  # it may have been taken from this client
                        client.forgotten.pop(r.id, None)
                client.sender.send(self._redeliveries(client.version, topic, records, again))
            else:
                client.sender.send(self._deliveries(client.version, topic, records))
        for p in sent:
            p.record = None  # read back if it is ever needed again
        self.ctx.changed()

    def _member_with_room(self) -> Member | None:
        """The next member in turn with room (most often the very next one)."""
        members = self.members
        n = len(members)
        limit = self.policy.max_inflight
        rr = self._rr if self._rr < n else 0
        for _ in range(n):
            member = members[rr]
            rr = rr + 1 if rr + 1 < n else 0
            if member.holding < limit:
                self._rr = rr
                return member
        return None

    def _take(self, count: int) -> bool:
        """Move up to ``count`` messages from the log into the ready set; False if none."""
        if not self.members or self._reads.fetching:
            # An offline group costs nothing: its backlog stays in the log. A read from
            # disk already under way brings the next records.
            return False
        cursor = self.state.cursor
        if cursor < self.log.first_offset:
            self._skip_deleted(self.log.first_offset)
            cursor = self.state.cursor
        if cursor > self.log.written_offset:
            return False
        records = self._reads.ahead(cursor, count)
        if records is None:
            records = self.log.read_cached(cursor, count)
        if records is None:
            self._reads.fetch(cursor, self._fetched)
            return False
        return self._take_records(records)

    def _fetched(self, offset: int, records: list[Record]) -> None:
        """A read from disk (``DISK_READ`` records): at most ``LOOKAHEAD`` are taken ahead
        of delivery (GROUPS' ``waiting`` promises it); the rest are kept for the next takes."""
        if offset == self.state.cursor:
            room = max(1, LOOKAHEAD - self._ahead())
            self._reads.keep(records[room:])
            self._take_records(records[:room])
        self.pump()

    def _take_records(self, records: list[Record]) -> bool:
        if not records:
            return False
        if records[0].offset > self.state.cursor:
            self._skip_deleted(records[0].offset)
        if records[0].offset != self.state.cursor:
            return False
        header_filter = self.state.filter
        if header_filter is None:
            ps = self.state.take(records)
        else:
            ps = self.state.take_filtered(records, header_filter)
            if not ps:
                self.ctx.changed()
                return True
        if not self._queue.push_plain(ps):
            for p in ps:
                self._schedule(p)
        self.ctx.changed()
        return True

    def _skip_deleted(self, first: int) -> None:
        log.warning(
            "undelivered_messages_deleted",
            topic=self.topic,
            group=self.name,
            count=first - self.state.cursor,
        )
        self.state.skip_to(first)
        self.ctx.changed()

    def _schedule(self, p: Pending) -> None:
        """A waiting message: into the ready queue now, or the timer heap until it is due."""
        due = p.retry_at
        meta = p.meta
        if p.attempts == 0 and meta is not None and meta.deliver_at > due:
            due = meta.deliver_at
        if due and due > time.time():  # most messages are due at once: skip the clock
            p.retry_at = due
            self._due.push(due, p.offset)
        else:
            self._queue.push(p)

    async def _load_pending(self) -> None:
        """After a restart: read the records of pending messages, then schedule them."""
        pending = self.state.pending
        records = await self._reads.records_at(sorted(pending))
        for offset in sorted(pending):
            p = pending[offset]
            p.record = records.get(offset)
            if p.record is None:
                self._failures.gone(p)
                continue
            p.meta = p.record.meta
            if self._filtered_out(p):
                continue
            if p.attempts:
                self._queue.hold(p)  # a retried message keeps holding its key
        for offset in sorted(pending):
            self._schedule(pending[offset])
        self._loading = False
        self.ctx.changed()
        self.pump()

    def _filtered_out(self, p: Pending) -> bool:
        """A message taken but never delivered that the filter rejects: done now (a crash
        lost the ``fl`` line written with its take)."""
        header_filter, meta = self.state.filter, p.meta
        if header_filter is None or p.attempts or p.first_ts:
            return False
        if header_filter.matches(meta.headers if meta is not None else None):
            return False
        self.state.filter_out(p.offset)
        return True

    def _recall(self, p: Pending, then: Callable[[Pending], None]) -> bool:
        """Give ``p`` its record back: True if the tail cache had it, else ``then(p)`` once
        it is read from disk (a delivered message is retried or dead-lettered)."""
        record = self._reads.recall(p.offset, lambda r: self._recalled(p, r, then))
        p.record = record
        return record is not None

    def _recalled(self, p: Pending, record: Record | None, then: Callable[[Pending], None]) -> None:
        if self._closed or self.state.pending.get(p.offset) is not p:
            return  # acked, sought past or gone meanwhile
        p.record = record
        if record is None:
            self._failures.gone(p)
        else:
            then(p)
        self.ctx.pump_soon(self)

    def _spawn(self, work: Coroutine[object, object, None]) -> None:
        self.ctx.loop.create_task(work).add_done_callback(_log_failure)

    # -- delivering ----------------------------------------------------------------

    def _deliver(self, p: Pending, now: float) -> int:
        """``p`` goes in this pass: 1, or 0 if it expired or is dead-lettered. Its member is
        chosen with the records picked after it, in one ``_give``: the same members, in
        turn, with one call for a run."""
        record = p.record
        assert record is not None
        meta = record.meta
        if meta is not None and meta.expires_at and now >= meta.expires_at:
            self._failures.expire(p)
            return 0
        if p.attempts and (p.reason == TERMINATED or self._failures.out_of_attempts(p)):
            # Out of attempts already (e.g. it was in flight each time the broker died),
            # or a TERM whose letter a crash kept from being written.
            self._failures.dead_letter(p)
            return 0
        p.attempts += 1
        self.delivered += 1
        if self._rate is not None:
            self._rate.take()
        if p.attempts > 1:
            self.redelivered += 1
            self._again[p.offset] = p.attempts
        else:
            self._fresh.append(record.ts)
        p.phase = Phase.IN_FLIGHT  # popped again in this pass: not delivered twice
        self._sent.append(p)  # its transition waits for the pass's end
        self._picked.append(record)  # given to members with the next run (``_give``)
        return 1

    # -- timers ----------------------------------------------------------------------

    def _on_ack_timeout(self, rows: list[tuple[Holdings, list[int]]]) -> None:
        owners = {m.holdings: m for m in self.members}
        expired: list[Pending] = []
        for holdings, held in rows:
            expired += self.unhold(owners[holdings], held, "ack timeout expired")
        for p in expired:
            log.info(
                "ack_timeout",
                topic=self.topic,
                group=self.name,
                offset=p.offset,
                attempts=p.attempts,
            )
            self._failures.fail(p, "ack_timeout")
        self.pump()

    def _on_due(self, due: list[tuple[float, int]]) -> None:
        for at, offset in due:
            p = self.state.pending.get(offset)
            if p is not None and p.phase is Phase.WAITING and p.retry_at == at:
                p.retry_at = 0.0
                self._queue.push(p)
        self.pump()

    # -- inspection and shutdown -------------------------------------------------

    def info(self) -> dict[str, int]:
        inflight = self.state.inflight
        pending = self.state.count
        return {
            "members": len(self.members),
            "inflight": inflight,
            "waiting": pending - inflight,
            "lag": self.lag(pending),
            "acked": self.state.acked_count,
            "dead": self.state.dead,
            "next_offset": self.state.next_undelivered,
            "paused": int(self.state.paused),
            **({} if self.state.filter is None else {"filtered": self.state.filtered_count}),
        }

    @property
    def inflight(self) -> int:
        """Deliveries waiting for an ack (what a stopping broker gives time to finish)."""
        return self.state.inflight

    def lag(self, pending: int | None = None) -> int:
        """Messages not finished: not yet taken + pending (cheap: for every chart sample)."""
        if pending is None:
            pending = self.state.count
        return max(0, self.log.last_offset - self.state.cursor + 1) + pending

    @property
    def failures(self) -> dict[str, int]:
        """Failed attempts by reason, durable (counted by the journal lines, lifecycle.py)."""
        return self._failures.failures

    @property
    def member_count(self) -> int:
        return len(self.members)

    def counters(self) -> dict[str, int]:
        """``info()`` plus counters since the broker started (for STATS and metrics)."""
        return {
            **self.info(),
            "delivered": self.delivered,
            "redelivered": self.redelivered,
            "dropped": self.state.dropped,
            "expired": self.state.expired_count,
            "filtered": self.state.filtered_count,
            "rate_limited": self.rate_waits,
        }

    def delete(self) -> None:
        """The group is deleted: what its members hold is forgotten (a later ACK of it is
        refused, saying why) and nothing more is delivered or journaled."""
        for member in self.members:
            self.unhold(member, list(member.holdings.rows()), "group deleted")
        self.members.clear()
        self.close()

    def close(self) -> None:
        self._closed = True
        self._reads.closed = True
        self._deadlines.close()
        self._due.close()
        if self._rate is not None:
            self._rate.close()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("group_task_failed", error=repr(task.exception()))
