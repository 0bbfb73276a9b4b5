"""One consumer group on one topic: round-robin over members with capacity, timers, retries.

Messages not yet delivered stay in the topic log: the group holds a cursor and a
small prefetch, never the backlog. Redeliveries (due retries, messages handed
back by dead members) go out before fresh messages; fresh messages go out in
offset order. Ack deadlines all share one timeout, so in-flight deliveries kept
in delivery order are also in deadline order: one timer per group, no scans.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import deque
from typing import Final

import orjson
import structlog

from broker.delivery.clients import ClientState
from broker.delivery.context import DeliveryContext
from broker.delivery.group_state import GroupState, Pending, Phase
from broker.protocol import replies
from broker.storage.records import Record
from broker.storage.topic_log import TopicLog

log = structlog.get_logger(__name__)

PREFETCH: Final = 512


class Member:
    """A client's place in a group, with the deliveries it holds."""

    __slots__ = ("client", "group", "inflight")

    def __init__(self, client: ClientState, group: ConsumerGroup) -> None:
        self.client = client
        self.group = group
        self.inflight: dict[int, Pending] = {}


class ConsumerGroup:
    def __init__(
        self, topic: str, name: str, log_: TopicLog, state: GroupState, ctx: DeliveryContext
    ) -> None:
        self.topic = topic
        self.name = name
        self.log = log_
        self.state = state
        self.ctx = ctx
        self.members: list[Member] = []
        self._rr = 0
        self._ready: deque[int] = deque()
        self._retry_heap: list[tuple[float, int]] = []
        self._by_deadline: dict[int, Pending] = {}
        self._prefetch: deque[Record] = deque()
        self._fetching = False
        self._ack_timer: asyncio.TimerHandle | None = None
        self._retry_timer: asyncio.TimerHandle | None = None
        self._retry_timer_at = 0.0
        self._closed = False
        self.delivered = 0
        self.redelivered = 0
        for p in state.pending.values():
            self._schedule_retry(p)

    # -- membership --------------------------------------------------------------

    def join(self, client: ClientState) -> Member:
        member = Member(client, self)
        self.members.append(member)
        self.pump()
        return member

    def leave(self, member: Member, *, died: bool) -> None:
        """Hand the member's deliveries back; a death counts as a failed attempt, a leave not."""
        self.members.remove(member)
        for p in list(member.inflight.values()):
            self._take_back(p, "consumer dead" if died else "unsubscribed")
            if died:
                self._fail(p, "consumer_dead", delay=0.0)
            else:
                p.attempts -= 1
                self._retry(p, 0.0)
        self.pump()

    # -- consumer commands ---------------------------------------------------------

    def ack(self, member: Member, offset: int) -> None:
        p = member.inflight[offset]
        self._take_back(p, "acked")
        self.state.acked(offset)
        self._after_done()

    def nack(self, member: Member, offset: int, delay: float) -> None:
        p = member.inflight[offset]
        self._take_back(p, "nacked")
        self._fail(p, "nacked", delay=delay)
        self.pump()

    def touch(self, member: Member, offset: int) -> None:
        p = self._by_deadline.pop(offset)
        p.deadline = self.ctx.loop.time() + self.ctx.config.ack_timeout
        self._by_deadline[offset] = p

    # -- new messages ------------------------------------------------------------

    def on_written(self, records: list[Record]) -> None:
        """Records just written to the log; keep them if they continue our prefetch."""
        expected = self._prefetch[-1].offset + 1 if self._prefetch else self.state.cursor
        if records and records[0].offset <= expected <= records[-1].offset:
            room = PREFETCH - len(self._prefetch)
            if room > 0:
                start = expected - records[0].offset
                self._prefetch.extend(records[start : start + room])
        self.pump()

    # -- scheduling ----------------------------------------------------------------

    def set_paused(self, paused: bool) -> None:
        """A paused group keeps collecting messages but delivers none (in-flight ones finish)."""
        if paused != self.state.paused:
            self.state.set_paused(paused)
            self.ctx.changed()
        self.pump()

    def pump(self) -> None:
        """Deliver while some member has room and something is ready."""
        while not self._closed and not self.state.paused:
            member = self._member_with_room()
            if member is None:
                return
            if self._ready:
                p = self.state.pending.get(self._ready[0])
                if p is None or p.phase is not Phase.WAITING:
                    self._ready.popleft()
                    continue
                if p.record is None:
                    if p.offset < self.log.first_offset:
                        self._ready.popleft()
                        self._gone(p)
                        continue
                    self._fetch(p.offset)
                    return
                self._ready.popleft()
                self._deliver(member, p)
                continue
            record = self._next_fresh()
            if record is None:
                return
            p = self.state.pending_for(record.offset)
            p.record = record
            self._deliver(member, p)

    def _member_with_room(self) -> Member | None:
        members = self.members
        n = len(members)
        limit = self.ctx.config.max_inflight
        for i in range(n):
            member = members[(self._rr + i) % n]
            if len(member.inflight) < limit:
                self._rr = (self._rr + i + 1) % n
                return member
        return None

    def _gone(self, p: Pending) -> None:
        log.warning("pending_message_deleted", topic=self.topic, group=self.name, offset=p.offset)
        self.state.gone(p.offset)
        self.ctx.changed()

    def _next_fresh(self) -> Record | None:
        first = self.log.first_offset
        if self.state.cursor < first:
            log.warning(
                "undelivered_messages_deleted",
                topic=self.topic,
                group=self.name,
                count=first - self.state.cursor,
            )
            self.state.skip_to(first)
            self.ctx.changed()
        cursor = self.state.cursor
        while self._prefetch and self._prefetch[0].offset < cursor:
            self._prefetch.popleft()
        if self._prefetch:
            return self._prefetch.popleft()
        if cursor > self.log.last_offset:
            return None
        cached = self.log.read_cached(cursor, PREFETCH)
        if cached is None:
            self._fetch(cursor)
            return None
        self._prefetch.extend(cached)
        return self._prefetch.popleft() if self._prefetch else None

    def _fetch(self, offset: int) -> None:
        if not self._fetching:
            self._fetching = True
            self.ctx.loop.create_task(self._fetch_from_disk(offset))

    async def _fetch_from_disk(self, offset: int) -> None:
        try:
            records = await asyncio.to_thread(self.log.read, offset, PREFETCH)
        except Exception:
            log.exception("group_read_failed", topic=self.topic, group=self.name, offset=offset)
            records = []
        finally:
            self._fetching = False
        if self._closed:
            return
        pending = self.state.pending
        for record in records:
            p = pending.get(record.offset)
            if p is not None and p.record is None:
                p.record = record
        if records and offset == self.state.cursor:
            self._prefetch.clear()
            self._prefetch.extend(records)
        self.pump()
        self.ctx.changed()

    def _deliver(self, member: Member, p: Pending) -> None:
        record = p.record
        assert record is not None
        if self.ctx.policy.should_dead_letter(p.attempts):
            # Out of attempts already (e.g. it was in flight each time the broker died).
            self._dead_letter(p)
            return
        now = time.time()
        p.attempts += 1
        self.delivered += 1
        if p.attempts > 1:
            self.redelivered += 1
        else:
            self.ctx.deliver_latency.observe(now - record.ts)
        p.last_ts = now
        if not p.first_ts:
            p.first_ts = now
        p.phase = Phase.IN_FLIGHT
        p.member = member
        p.deadline = self.ctx.loop.time() + self.ctx.config.ack_timeout
        self.state.delivered(p)
        member.inflight[p.offset] = p
        member.client.ids[record.id] = (member, p.offset)
        member.client.forgotten.pop(record.id, None)
        self._by_deadline[p.offset] = p
        if self._ack_timer is None:
            self._arm_ack_timer()
        member.client.sender.send(
            replies.msg(self.topic, record.id, record.offset, record.ts, record.msg)
        )
        self.ctx.changed()

    # -- failures, retries, dead letters ------------------------------------------

    def _take_back(self, p: Pending, why: str) -> None:
        member = p.member
        member.inflight.pop(p.offset, None)
        self._by_deadline.pop(p.offset, None)
        if p.record is not None:
            member.client.forget(p.record.id, "already acknowledged" if why == "acked" else why)
        p.member = None

    def _fail(self, p: Pending, reason: str, *, delay: float | None = None) -> None:
        p.reason = reason
        if self.ctx.policy.should_dead_letter(p.attempts):
            self._dead_letter(p)
            return
        self._retry(p, self.ctx.policy.delay(p.attempts) if delay is None else delay)

    def _retry(self, p: Pending, delay: float) -> None:
        p.phase = Phase.WAITING
        p.retry_at = time.time() + delay if delay > 0 else 0.0
        self.state.failed(p)
        self._schedule_retry(p)
        self.ctx.changed()

    def _schedule_retry(self, p: Pending) -> None:
        if p.phase is not Phase.WAITING:
            return
        if p.retry_at <= time.time():
            self._ready.append(p.offset)
            return
        heapq.heappush(self._retry_heap, (p.retry_at, p.offset))
        if self._retry_timer is None or p.retry_at < self._retry_timer_at:
            self._arm_retry_timer()

    def _dead_letter(self, p: Pending) -> None:
        if p.record is None:
            p.phase = Phase.WAITING
            self._ready.appendleft(p.offset)
            self._fetch(p.offset)
            return
        record = p.record
        letter = {
            "topic": self.topic,
            "id": record.id,
            "offset": record.offset,
            "ts": record.ts,
            "msg": record.msg,
            "group": self.name,
            "attempts": p.attempts,
            "reason": p.reason or "ack_timeout",
            "first_delivery_ts": p.first_ts,
            "last_delivery_ts": p.last_ts,
            "dead_ts": time.time(),
        }
        self.ctx.publish(self.topic + ".dlq", orjson.dumps(letter).decode())
        log.warning(
            "dead_lettered",
            topic=self.topic,
            group=self.name,
            id=record.id,
            offset=record.offset,
            attempts=p.attempts,
            reason=letter["reason"],
        )
        self.state.dead_lettered(p.offset)
        self._after_done()

    def _after_done(self) -> None:
        self.state.maybe_compact()
        self.ctx.changed()
        self.pump()

    # -- timers ----------------------------------------------------------------

    def _arm_ack_timer(self) -> None:
        if self._by_deadline and not self._closed:
            first = next(iter(self._by_deadline.values()))
            self._ack_timer = self.ctx.loop.call_at(first.deadline, self._on_ack_timer)
        else:
            self._ack_timer = None

    def _on_ack_timer(self) -> None:
        now = self.ctx.loop.time()
        expired: list[Pending] = []
        for p in self._by_deadline.values():
            if p.deadline > now:
                break
            expired.append(p)
        for p in expired:
            log.info(
                "ack_timeout",
                topic=self.topic,
                group=self.name,
                offset=p.offset,
                attempts=p.attempts,
            )
            self._take_back(p, "ack timeout expired")
            self._fail(p, "ack_timeout")
        self._arm_ack_timer()
        self.pump()

    def _arm_retry_timer(self) -> None:
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        if self._retry_heap and not self._closed:
            at = self._retry_heap[0][0]
            self._retry_timer_at = at
            delay = max(0.0, at - time.time())
            self._retry_timer = self.ctx.loop.call_later(delay, self._on_retry_timer)

    def _on_retry_timer(self) -> None:
        self._retry_timer = None
        now = time.time()
        heap = self._retry_heap
        while heap and heap[0][0] <= now:
            at, offset = heapq.heappop(heap)
            p = self.state.pending.get(offset)
            if p is not None and p.phase is Phase.WAITING and p.retry_at == at:
                self._ready.append(offset)
        self._arm_retry_timer()
        self.pump()

    # -- inspection and shutdown -------------------------------------------------

    def info(self) -> dict[str, int]:
        inflight = len(self._by_deadline)
        return {
            "members": len(self.members),
            "inflight": inflight,
            "waiting": len(self.state.pending) - inflight,
            "lag": max(0, self.log.last_offset - self.state.cursor + 1) + len(self.state.pending),
            "acked": self.state.completed - self.state.dead,
            "dead": self.state.dead,
            "next_offset": self.state.cursor,
            "paused": int(self.state.paused),
        }

    def counters(self) -> dict[str, int]:
        """``info()`` plus counters since the broker started (for STATS and metrics)."""
        return {
            **self.info(),
            "delivered": self.delivered,
            "redelivered": self.redelivered,
            "dropped": self.state.dropped,
        }

    def close(self) -> None:
        self._closed = True
        for timer in (self._ack_timer, self._retry_timer):
            if timer is not None:
                timer.cancel()
