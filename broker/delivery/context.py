"""What groups and clients need from the rest of the broker, passed in rather than imported."""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from linemq.broker.config import Config
from linemq.broker.delivery.backoff import ExponentialBackoff, RetryPolicy
from linemq.broker.delivery.policy import DeliveryPolicy, resolve
from linemq.broker.observe.histogram import Histogram
from linemq.broker.storage.damage import DamageReport
from linemq.broker.storage.journal import Journal, OpenFiles
from linemq.broker.storage.records import Meta, Record


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
    publish: Callable[[str, str, Meta | None], Record]
    """Append a message to a topic (used for dead letters and replays)."""
    changed: Callable[[], None]
    """Something was journaled or sent: schedule a commit tick."""
    encoder: Encoder
    deliver_latency: Histogram = field(default_factory=Histogram)
    """Publish to first delivery, per group delivery."""
    dirty_journals: dict[Journal, None] = field(default_factory=dict)
    """Journals with buffered entries: the tick writes these and no others."""
    to_pump: dict[Any, None] = field(default_factory=dict)
    """Groups with room freed since the last tick (see ``pump_soon``)."""
    damage: DamageReport = field(default_factory=DamageReport)
    """Where damaged journal lines and unopenable groups are reported (the broker's one)."""
    files: OpenFiles = field(default_factory=lambda: OpenFiles(journal_fd_limit()))
    """Bounds the journals' open descriptors, however many groups there are."""
    draining: bool = False
    """The broker is stopping (``--shutdown-grace``): groups deliver nothing more, and
    what is in flight may still be acked."""

    def journal(self, path: Path) -> Journal:
        """A journal the commit tick will write whenever something is appended to it."""
        return Journal(
            path,
            self.journal_pending,
            sync_each_write=self.config.fsync == "always",
            files=self.files,
            damage=self.damage,
        )

    def journal_pending(self, journal: Journal) -> None:
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
        publish: Callable[[str, str, Meta | None], Record],
        changed: Callable[[], None],
        encoder: Encoder,
        damage: DamageReport | None = None,
    ) -> DeliveryContext:
        backoff = ExponentialBackoff(config.retry_backoff_base, config.retry_backoff_max)
        policy = RetryPolicy(config.max_retries, backoff)
        if damage is None:
            return cls(loop, config, policy, publish, changed, encoder)
        return cls(loop, config, policy, publish, changed, encoder, damage=damage)


def journal_fd_limit() -> int:
    """A quarter of the open-files limit for journals: the rest is for segments and sockets."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(16, min(1024, soft // 4))
