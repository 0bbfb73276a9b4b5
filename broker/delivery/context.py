"""What groups and clients need from the rest of the broker, passed in rather than imported."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from linemq.broker.config import Config
from linemq.broker.delivery.backoff import ExponentialBackoff, RetryPolicy
from linemq.broker.delivery.policy import DeliveryPolicy, resolve
from linemq.broker.observe.histogram import Histogram
from linemq.broker.storage.damage import DamageReport
from linemq.broker.storage.records import Meta, Record
from linemq.broker.storage.state_store import EventLog, StateStore
from linemq.broker.storage.ticket import Appended


class Sender(Protocol):
    """The connection side of a client: queue bytes for it, or drop it."""

    def send(self, data: bytes) -> None: ...

    def kill(self, reason: str, *, notice: bool = False) -> None:
        """Drop the connection; ``notice``: the transport is healthy, so a connection that
        asked for notices is told ``CLOSING <reason>`` first."""

    async def writable(self) -> None:
        """Return once the client has read enough that more may be sent."""


@dataclass(frozen=True, slots=True)
class Encoder:
    """Records as the bytes a client gets, by the protocol version it asked for.

    Delivery sends them but knows no wire format: the server gives it these.
    """

    deliveries: Callable[[int, str, Sequence[Record]], bytes]
    """``(version, topic, records)``: fanout, catch-up and group deliveries of first attempts."""
    group_deliveries: Callable[[int, str, Sequence[Record], Mapping[int, int]], bytes]
    """``(version, topic, records, attempts)``: a pump's deliveries to one member, some of
    them again: ``attempts`` by offset of those not on their first attempt."""


@dataclass(slots=True)
class DeliveryContext:
    loop: asyncio.AbstractEventLoop
    config: Config
    policy: RetryPolicy
    publish: Callable[[str, str, Meta | None], Appended]
    """Append a message to a topic (used for dead letters and replays)."""
    changed: Callable[[], None]
    """Something was journaled or sent: schedule a commit tick."""
    encoder: Encoder
    state: StateStore
    """Where group, pattern and replay logs are kept (storage/state_store.py)."""
    deliver_latency: Histogram = field(default_factory=Histogram)
    """Publish to first delivery, per group delivery."""
    dirty_journals: dict[EventLog, None] = field(default_factory=dict)
    """Journals with buffered entries: the tick writes these and no others."""
    to_pump: dict[Any, None] = field(default_factory=dict)
    """Groups with room freed since the last tick (see ``pump_soon``)."""
    damage: DamageReport = field(default_factory=DamageReport)
    """Where damaged journal lines and unopenable groups are reported (the broker's one)."""
    draining: bool = False
    """The broker is stopping (``--shutdown-grace``): groups deliver nothing more, and
    what is in flight may still be acked."""

    def journal_pending(self, journal: EventLog) -> None:
        """``journal`` has buffered entries: the coming tick writes it (``StateStore.open``)."""
        self.dirty_journals[journal] = None
        self.changed()

    def policy_for(self, topic: str) -> DeliveryPolicy:
        """The policy every group of ``topic`` uses: the most specific ``--topic-policy``
        matching it over the broker-wide flags (policy.py)."""
        config = self.config
        default = DeliveryPolicy(self.policy, config.ack_timeout, config.max_inflight)
        return resolve(config.topic_policy, default, topic)

    def pump_soon(self, group: Any) -> None:
        """Deliver for ``group`` in the coming tick rather than now."""
        if group not in self.to_pump:  # acks come in runs: one request per tick
            self.to_pump[group] = None
            self.changed()

    def run_pumps(self) -> None:
        while self.to_pump:
            groups, self.to_pump = self.to_pump, {}
            for group in groups:
                group.pump()

    @classmethod
    def build(
        cls,
        loop: asyncio.AbstractEventLoop,
        config: Config,
        publish: Callable[[str, str, Meta | None], Appended],
        changed: Callable[[], None],
        encoder: Encoder,
        state: StateStore,
        damage: DamageReport | None = None,
    ) -> DeliveryContext:
        """The context, with ``state`` opened to tell it which logs the tick must write."""
        backoff = ExponentialBackoff(config.retry_backoff_base, config.retry_backoff_max)
        policy = RetryPolicy(config.max_retries, backoff)
        if damage is None:
            ctx = cls(loop, config, policy, publish, changed, encoder, state)
        else:
            ctx = cls(loop, config, policy, publish, changed, encoder, state, damage=damage)
        state.open(ctx.journal_pending)
        return ctx
