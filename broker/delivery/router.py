"""Routes written records to fanout subscribers and consumer groups; owns liveness."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

import structlog

from linemq.broker.delivery.catchup import catch_up
from linemq.broker.delivery.clients import ClientState, Member
from linemq.broker.delivery.context import DeliveryContext, Sender
from linemq.broker.delivery.group import ConsumerGroup
from linemq.broker.delivery.group_policy import PolicyError, describe_group, set_group_policy
from linemq.broker.delivery.lifecycle import GroupState
from linemq.broker.delivery.patterns import PatternRegistry
from linemq.broker.delivery.policy import DeliveryPolicy
from linemq.broker.delivery.progress import ProgressBoard
from linemq.broker.protocol.filters import HeaderFilter
from linemq.broker.protocol.names import (
    is_dead_letter_topic,
    is_pattern,
    topic_matches,
)
from linemq.broker.protocol.positions import Position
from linemq.broker.storage.damage import UNOPENABLE, Damage
from linemq.broker.storage.log_store import LogStore
from linemq.broker.storage.records import Record
from linemq.broker.storage.state_store import EventLog

log = structlog.get_logger(__name__)


class DeliveryError(Exception):
    """A consumer command that cannot be honoured; ``reason`` becomes the ERR text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Router:
    def __init__(self, store: LogStore, ctx: DeliveryContext) -> None:
        self.store = store
        self.state = ctx.state
        self.ctx = ctx
        self._deliveries = ctx.encoder.deliveries  # bound once (see ConsumerGroup)
        self.fanout: dict[str, dict[ClientState, None]] = {}
        self.groups: dict[str, dict[str, ConsumerGroup]] = {}
        self._liveness: OrderedDict[ClientState, float] = OrderedDict()
        self._liveness_timer: asyncio.TimerHandle | None = None
        self.patterns = PatternRegistry(ctx.state.patterns_log())
        self._known_topics: set[str] = set()
        # Counters of deleted groups, so broker-wide totals summed over groups never fall.
        self.retired = {"delivered": 0, "redelivered": 0, "acked": 0, "dead": 0, "failures": 0}
        self.progress = ProgressBoard()  # TOUCH ... progress=, shown by STATUS

    # -- start-up -----------------------------------------------------------------

    def open(self) -> None:
        """Load every durable group; cost follows what is pending, not the log's size.

        A group that cannot be opened is reported (UNOPENABLE) and left out: the
        broker serves every other one.
        """
        self._known_topics = set(self.store.topics())
        try:
            self.patterns.open()
        except OSError as exc:
            self._unopenable(self.patterns.journal.label, None, None, exc)
        for topic, name in self.state.groups():
            journal = self.state.group_log(topic, name)
            try:
                self._open_group(topic, name, create=False, journal=journal)
            except Exception as exc:  # one group's trouble is never the broker's
                self._unopenable(journal.label, topic, name, exc)

    def _unopenable(self, path: str, topic: str | None, group: str | None, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        self.ctx.damage.report(Damage(UNOPENABLE, path, topic=topic, group=group, reason=reason))

    def _open_group(
        self,
        topic: str,
        name: str,
        *,
        create: bool,
        start: int | None = None,
        ordering: str | None = None,
        header_filter: HeaderFilter | None = None,
        journal: EventLog | None = None,
    ) -> ConsumerGroup:
        if journal is None:
            journal = self.state.group_log(topic, name)
        state = GroupState(journal)
        log_ = self.store.topic(topic)
        try:
            existed = state.load(fallback=log_.first_offset)
        except BaseException:
            journal.close()
            raise
        if not existed:
            state.create(log_.last_offset + 1 if start is None else start)
            if ordering is None:  # a SUB's ordering=, else the topic's policy
                ordering = self.ctx.policy_for(topic).ordering
            if ordering != state.ordering:
                state.set_ordering(ordering)
            if header_filter is not None:
                state.set_filter(header_filter)
            self.ctx.changed()
        group = ConsumerGroup(topic, name, log_, state, self.ctx, self.store)
        self.groups.setdefault(topic, {})[name] = group
        if existed and not create:
            log.info("group_recovered", topic=topic, group=name, **group.info())
        return group

    async def resolve(self, topic: str, position: Position | None) -> int | None:
        """The offset a position names in ``topic`` (None: latest, the default)."""
        if position is None or position.kind == "latest":
            return None
        log_ = self.store.get(topic)
        if log_ is None:
            return 1
        if position.kind == "earliest":
            return log_.first_offset
        if position.kind == "offset":
            return max(log_.first_offset, min(int(position.value), log_.last_offset + 1))
        ts = position.value if position.value >= 0 else time.time() + position.value
        return await self.store.offset_at(topic, ts)

    # -- clients -------------------------------------------------------------------

    def client(self, sender: Sender) -> ClientState:
        return ClientState(sender)

    def subscribe(self, client: ClientState, topic: str, start: int | None = None) -> None:
        """Fanout from now on; from ``start`` first, if given (then live, without a gap)."""
        if topic in client.topics:
            return
        client.topics.add(topic)
        if start is None or self.store.get(topic) is None:
            subs = self.fanout.setdefault(topic, {})
            if not subs and is_pattern(topic):
                self.patterns.fanout.added(topic)
            subs[client] = None
            return
        task = self.ctx.loop.create_task(
            catch_up(self.store, self._deliveries, client, topic, start, self.go_live)
        )
        task.add_done_callback(_log_failure)

    def go_live(self, client: ClientState, topic: str) -> None:
        """A catch-up reader reached the end of the log: switch to live fanout."""
        if topic in client.topics:
            self.fanout.setdefault(topic, {})[client] = None

    def unsubscribe(self, client: ClientState, topic: str) -> bool:
        if topic not in client.topics:
            return False
        client.topics.discard(topic)
        subs = self.fanout.get(topic)
        if subs is not None:
            subs.pop(client, None)
            if not subs:
                del self.fanout[topic]
                if is_pattern(topic):
                    self.patterns.fanout.removed(topic)
        return True

    async def join(
        self,
        client: ClientState,
        topic: str,
        name: str,
        start: Position | None = None,
        ordering: str | None = None,
        header_filter: HeaderFilter | None = None,
    ) -> None:
        """Join a group; a pattern joins the group on every matching topic, now and later.
        ``ordering`` (``fifo``, ``none``): a new group's order; an existing group with
        another one is refused (its members rely on it). ``header_filter`` likewise."""
        if is_pattern(topic):
            if (topic, name) in client.patterns:
                return
            client.patterns.add((topic, name))
            self.patterns.register(topic, name)
            self.patterns.members.setdefault((topic, name), {})[client] = None
            for existing in sorted(self._known_topics):
                if topic_matches(topic, existing) and _may_read(client, existing):
                    await self.join(client, existing, name, start)
            return
        group = self.groups.get(topic, {}).get(name)
        if group is not None and ordering not in (None, group.state.ordering):
            raise DeliveryError(f"group {name} on {topic} has ordering={group.state.ordering}")
        if group is not None:
            _check_filter(group, header_filter)
        if (topic, name) in client.members:
            return
        if group is None:
            offset = await self.resolve(topic, start)
            group = self.groups.get(topic, {}).get(name) or self._open_group(
                topic,
                name,
                create=True,
                start=offset,
                ordering=ordering,
                header_filter=header_filter,
            )
            _check_filter(group, header_filter)
        if ordering is not None and ordering != group.state.ordering:
            raise DeliveryError(f"group {name} on {topic} has ordering={group.state.ordering}")
        self._join_group(client, group)

    def _join_group(self, client: ClientState, group: ConsumerGroup) -> None:
        if (group.topic, group.name) in client.members:
            return
        self._liveness[client] = time.monotonic()
        self._arm_liveness()
        client.members[(group.topic, group.name)] = group.join(client)

    def leave(self, client: ClientState, topic: str, name: str) -> bool:
        if is_pattern(topic):
            if (topic, name) not in client.patterns:
                return False
            client.patterns.discard((topic, name))
            self.patterns.members.get((topic, name), {}).pop(client, None)
            for t, g in list(client.members):
                if g == name and topic_matches(topic, t):
                    self.leave(client, t, g)
            return True
        member = client.members.pop((topic, name), None)
        if member is None:
            return False
        self._group(member).leave(member, died=False)
        if not client.members:
            self._liveness.pop(client, None)
        return True

    def seek(self, topic: str, name: str, offset: int) -> EventLog:
        group = self.groups.get(topic, {}).get(name)
        if group is None:
            raise DeliveryError(f"no group {name} on {topic}")
        log.info("group_seek", topic=topic, group=name, offset=offset)
        group.seek(offset)
        return group.state.journal

    def disconnect(self, client: ClientState) -> None:
        """The connection is gone: its deliveries go back to their groups as failed attempts."""
        for topic in list(client.topics):
            self.unsubscribe(client, topic)
        for key in client.patterns:
            self.patterns.members.get(key, {}).pop(client, None)
        client.patterns.clear()
        for member in list(client.members.values()):
            self._group(member).leave(member, died=True)
        client.members.clear()
        self._liveness.pop(client, None)

    def heard_from(self, client: ClientState) -> None:
        if client in self._liveness:
            self._liveness[client] = time.monotonic()
            self._liveness.move_to_end(client)

    # -- publishing ------------------------------------------------------------------

    def on_written(self, topic: str, records: list[Record]) -> int:
        """Fan new records out and hand them to groups; returns fanout messages sent."""
        sent = 0
        if topic not in self._known_topics:
            self._topic_appeared(topic, records[0].offset)
        subs = self.fanout.get(topic)
        patterns = self.patterns.fanout.matching(topic)
        if patterns:
            subs = dict(subs) if subs else {}
            for pattern in patterns:
                subs.update(self.fanout.get(pattern, {}))
            if is_dead_letter_topic(topic):
                subs = {c: None for c in subs if _may_read(c, topic)}
        if subs:
            encoded: dict[int, bytes] = {}
            encode = self._deliveries
            for client in list(subs):
                data = encoded.get(client.version)
                if data is None:
                    data = encoded[client.version] = encode(client.version, topic, records)
                client.sender.send(data)
            sent = len(subs) * len(records)
        groups = self.groups.get(topic)
        if groups:
            for group in groups.values():
                group.on_written(records)
        return sent

    def _topic_appeared(self, topic: str, first: int) -> None:
        """A topic got its first records: pattern groups get a group on it from there."""
        self._known_topics.add(topic)
        for pattern, name in self.patterns.matching(topic):
            group = self.groups.get(topic, {}).get(name)
            if group is None:
                group = self._open_group(topic, name, create=True, start=first)
            for client in list(self.patterns.members.get((pattern, name), {})):
                if _may_read(client, topic):
                    self._join_group(client, group)

    # -- consumer commands ---------------------------------------------------------

    def _group(self, member: Member) -> ConsumerGroup:
        topic, name = member.key
        return self.groups[topic][name]

    def _holder(self, client: ClientState, id: str) -> tuple[ConsumerGroup, Member, int]:
        """The group, member and row of what ``client`` holds as ``id``."""
        found = client.find_row(id)
        if found is None:
            raise _not_held(client, id)
        member, row = found
        return self._group(member), member, row

    def ack_run(self, client: ClientState, ids: list[str]) -> list[EventLog | DeliveryError]:
        """Acks read together, settled in order (a repeated id is refused like a late
        one); each group journals its share as one line. A result per id: the journal
        to be written before saying OK, or why the ack is refused."""
        if len(ids) > 1 and (run := client.ack_rows(ids)) is not None:
            member, in_order = run  # the usual case: the next rows of one member, in order
            group = self._group(member)
            group.acked(in_order)
            return [group.state.journal] * len(ids)
        results: list[EventLog | DeliveryError] = []
        settled: dict[ConsumerGroup, list[int]] = {}
        for id in ids:
            acked = client.ack_row(id)
            if acked is None:
                results.append(_not_held(client, id))
                continue
            member, offset = acked
            group = self._group(member)
            offsets = settled.get(group)
            if offsets is None:
                settled[group] = [offset]
            else:
                offsets.append(offset)
            results.append(group.state.journal)
        for group, offsets in settled.items():
            group.acked(offsets)
        return results

    def nack(
        self, client: ClientState, id: str, delay: float | None, reason: str | None = None
    ) -> EventLog:
        group, member, row = self._holder(client, id)
        group.nack(member, row, delay, reason)
        return group.state.journal

    def term(self, client: ClientState, id: str, reason: str | None) -> EventLog:
        """``TERM``: the journal whose write makes the dead-lettering stick."""
        group, member, row = self._holder(client, id)
        group.term(member, row, reason)
        return group.state.journal

    def touch(self, client: ClientState, id: str) -> tuple[ConsumerGroup, int, int]:
        """Restart the ack timer of what ``client`` holds as ``id``: its group, offset and
        attempt (for a progress report)."""
        group, member, row = self._holder(client, id)
        offset = member.holdings.offsets[row]
        known = group.state.history.get(offset)
        group.touch(member, row)
        return group, offset, known.attempts if known is not None else 1

    def pause(self, topic: str, name: str, paused: bool) -> EventLog:
        group = self.groups.get(topic, {}).get(name)
        if group is None:
            raise DeliveryError(f"no group {name} on {topic}")
        group.set_paused(paused)
        return group.state.journal

    def delete(self, topic: str, name: str, force: bool) -> list[str]:
        """Delete a group (``topic`` a pattern: its registration and its group on every
        topic it matches). Refused while it has members, unless ``force``: they are
        dropped from it, and what they hold is forgotten. Returns the topics whose group
        deletions ``StateStore.sync_deletes`` must make durable (their logs are gone)."""
        key = (topic, name)
        if is_pattern(topic):
            found = [
                gs[name] for t, gs in self.groups.items() if name in gs and topic_matches(topic, t)
            ]
            registered = key in self.patterns.groups
        else:
            found = [g] if (g := self.groups.get(topic, {}).get(name)) is not None else []
            registered = False
        if not found and not registered:
            raise DeliveryError(f"no group {name} on {topic}")
        if not force and (self.patterns.members.get(key) or any(g.members for g in found)):
            raise DeliveryError("group has members")
        topics = []
        for group in found:
            self.state.delete_group(group.topic, name)  # first: if it fails, nothing changed
            topics.append(group.topic)
            for member in group.members:
                client = member.client
                client.members.pop((group.topic, name), None)
                if not client.members:
                    self._liveness.pop(client, None)
            group.delete()
            retired = self.retired
            retired["delivered"] += group.delivered
            retired["redelivered"] += group.redelivered
            retired["acked"] += group.state.acked_count
            retired["dead"] += group.state.dead
            retired["failures"] += sum(group.failures.values())
            del self.groups[group.topic][name]
            if not self.groups[group.topic]:
                del self.groups[group.topic]
        if registered:
            for client in self.patterns.unregister(topic, name):
                client.patterns.discard(key)
        return topics

    def drop_topic(self, topic: str) -> None:
        """``DELETE <topic>``: every group of it goes (as ``delete`` with force), its fanout
        subscribers get nothing more, and the name is forgotten, so wildcard groups make
        their group again if the topic comes back (``StateStore.drop_topic`` makes its
        groups' deletion durable)."""
        for name in list(self.groups.get(topic, {})):
            self.delete(topic, name, True)
        for client in list(self.fanout.pop(topic, {})):
            client.topics.discard(topic)
        self._known_topics.discard(topic)

    def deleted_before(self, topic: str) -> None:
        """Retention or a purge removed old records: let groups skip past them."""
        for group in self.groups.get(topic, {}).values():
            group.pump()

    def stop_delivering(self) -> None:
        """The broker is stopping: no group delivers again; acks, nacks and timeouts of
        what is in flight still count."""
        self.ctx.draining = True

    def inflight(self) -> int:
        """Deliveries waiting for an ack, over every group."""
        return sum(g.inflight for gs in self.groups.values() for g in gs.values())

    def policy(self, topic: str) -> DeliveryPolicy:
        """What ``topic``'s groups use (``POLICY``), whether or not it has any yet."""
        return self.ctx.policy_for(topic)

    def group_info(self, topic: str) -> list[tuple[str, dict[str, int | str]]]:
        """``GROUPS``: each group's figures, then its effective policy."""
        return [
            (name, {**g.info(), **g.settings()})
            for name, g in sorted(self.groups.get(topic, {}).items())
        ]

    def group_policy(
        self, topic: str, name: str, changes: tuple[tuple[str, str], ...] = ()
    ) -> tuple[dict[str, str], EventLog]:
        """``POLICY <topic> <group> [key=value ...]``: apply the changes (if any), and the
        group's effective policy with the journal to write before saying so."""
        group = self.groups.get(topic, {}).get(name)
        if group is None:
            raise DeliveryError(f"no group {name} on {topic}")
        if changes:
            try:
                set_group_policy(group, changes)
            except PolicyError as e:
                raise DeliveryError(str(e)) from None
        return describe_group(group), group.state.journal

    # -- heartbeats ------------------------------------------------------------------

    def _arm_liveness(self) -> None:
        if self._liveness_timer is None and self._liveness:
            first = next(iter(self._liveness.values()))
            delay = max(0.0, first + self.ctx.config.heartbeat_timeout - time.monotonic())
            self._liveness_timer = self.ctx.loop.call_later(delay, self._on_liveness_timer)

    def _on_liveness_timer(self) -> None:
        self._liveness_timer = None
        deadline = time.monotonic() - self.ctx.config.heartbeat_timeout
        dead: list[ClientState] = []
        for client, seen in self._liveness.items():  # in last-heard order
            if seen > deadline:
                break
            dead.append(client)
        for client in dead:
            log.warning("consumer_dead", reason="heartbeat timeout", groups=list(client.members))
            self._liveness.pop(client, None)
            self.disconnect(client)
            client.sender.kill("heartbeat timeout", notice=True)
        self._arm_liveness()

    def close(self) -> None:
        for groups in self.groups.values():
            for group in groups.values():
                group.close()


def _may_read(client: ClientState, topic: str) -> bool:
    """A wildcard matched ``topic``: only dead-letter topics can be outside what the
    client's user may read (the wildcard itself was checked when it subscribed)."""
    return client.reads is None or not is_dead_letter_topic(topic) or client.reads(topic)


def _check_filter(group: ConsumerGroup, header_filter: HeaderFilter | None) -> None:
    """A ``SUB`` with a ``filter=`` joins only a group with that very filter."""
    if header_filter is None or header_filter == group.state.filter:
        return
    has = "no filter" if group.state.filter is None else f"{group.state.filter}"
    raise DeliveryError(f"group {group.name} on {group.topic} has {has}")


def _not_held(client: ClientState, id: str) -> DeliveryError:
    if not client.members:
        return DeliveryError("no pending messages for this consumer")
    why = client.forgotten.get(id)
    suffix = f" ({why})" if why else ""
    return DeliveryError(f"message {id} not found in pending messages{suffix}")


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("catch_up_failed", error=repr(task.exception()))
