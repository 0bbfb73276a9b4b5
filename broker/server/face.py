"""What the broker shows the operations side: the one object ``ops`` and ``observe`` get.

``ops`` (HTTP API, metrics, dashboard) and ``observe`` (STATS snapshots, chart
samples) state what they need as Protocols of their own (``ops.port.Operations``,
``observe.stats.Figures``) and import nothing of the server; this facade answers
them from the broker's parts. It is the only place that knows where a counter or
an operation lives inside the broker, so those parts can move without touching the
HTTP side.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from linemq.broker.auth import Users
from linemq.broker.config import Config
from linemq.broker.delivery.clients import ClientState
from linemq.broker.delivery.dead_letters import DeadLetters, Replayed
from linemq.broker.delivery.group import ConsumerGroup
from linemq.broker.delivery.lookup import Place, message_status
from linemq.broker.delivery.router import Router
from linemq.broker.observe.histogram import Histogram
from linemq.broker.server.schedules import Schedules
from linemq.broker.storage.damage import Damage, DamageReport
from linemq.broker.storage.log_store import Store
from linemq.broker.storage.records import Record


class HttpServer(Protocol):
    """The operations HTTP endpoint (``--http-port``) as the broker sees it."""

    @property
    def port(self) -> int: ...

    async def close(self) -> None: ...


StartHttp = Callable[["BrokerFace"], Awaitable[HttpServer]]
"""Starts the HTTP side on ``--http-host:--http-port`` (the CLI passes ``ops.http.start_http``)."""


class Connected(Protocol):
    @property
    def client(self) -> ClientState: ...


class Parts(Protocol):
    """The broker's members this facade reads (``server.app.Broker`` has them)."""

    @property
    def config(self) -> Config: ...
    @property
    def ready(self) -> bool: ...
    @property
    def users(self) -> Users | None: ...
    @property
    def started_at(self) -> float: ...
    @property
    def connections(self) -> Collection[Connected]: ...
    @property
    def store(self) -> Store: ...
    @property
    def router(self) -> Router: ...
    @property
    def dead_letters(self) -> DeadLetters: ...
    @property
    def damage(self) -> DamageReport: ...
    @property
    def published(self) -> Mapping[str, int]: ...
    @property
    def fanout_sent(self) -> int: ...
    @property
    def publish_latency(self) -> Histogram: ...
    @property
    def schedules(self) -> Schedules: ...

    async def purge(self, topic: str) -> int: ...
    async def delete_group(self, topic: str, group: str, force: bool) -> None: ...
    async def delete_topic(self, topic: str, force: bool) -> None: ...
    def committed(self) -> Awaitable[None]: ...


@dataclass(frozen=True, slots=True)
class TopicFigures:
    """One topic's figures for ``observe.stats``, from its view and its footprint."""

    first_offset: int
    last_offset: int
    size_bytes: int
    segment_count: int


class BrokerFace:
    """The broker's counters and operator actions, for STATS, ``/metrics`` and ``/api``."""

    def __init__(self, broker: Parts) -> None:
        self._broker = broker

    # -- observe.stats.Figures -------------------------------------------------------

    @property
    def started_at(self) -> float:
        return self._broker.started_at

    @property
    def connection_count(self) -> int:
        return len(self._broker.connections)

    @property
    def fanout_sent(self) -> int:
        return self._broker.fanout_sent

    @property
    def retired(self) -> Mapping[str, int]:
        return self._broker.router.retired

    def topic_names(self) -> list[str]:
        return self._broker.store.topics()

    def topic(self, name: str) -> TopicFigures | None:
        store = self._broker.store
        view = store.get(name)
        if view is None:
            return None
        footprint = store.footprint(name)
        return TopicFigures(view.first_offset, view.last_offset, footprint.bytes, footprint.parts)

    def published(self, topic: str) -> int:
        return self._broker.published.get(topic, 0)

    def published_total(self) -> int:
        return sum(self._broker.published.values())

    def subscribers(self, topic: str) -> int:
        return len(self._broker.router.fanout.get(topic, ()))

    def subscribing_connections(self) -> int:
        return sum(1 for c in self._broker.connections if c.client.subscribes)

    def groups_of(self, topic: str) -> Mapping[str, ConsumerGroup]:
        return self._broker.router.groups.get(topic, {})

    def all_groups(self) -> Iterator[tuple[str, str, ConsumerGroup]]:
        for topic, groups in self._broker.router.groups.items():
            for name, group in groups.items():
                yield topic, name, group

    def damage_counts(self) -> dict[str, int]:
        return self._broker.damage.counts()

    def schedule_counts(self) -> dict[str, int]:
        schedules = self._broker.schedules
        return {"schedules": len(schedules), "schedule_fires": schedules.fires}

    # -- ops.port.Operations ---------------------------------------------------------

    @property
    def config(self) -> Config:
        return self._broker.config

    @property
    def ready(self) -> bool:
        return self._broker.ready

    @property
    def users(self) -> Users | None:
        return self._broker.users

    @property
    def publish_latency(self) -> Histogram:
        return self._broker.publish_latency

    @property
    def deliver_latency(self) -> Histogram:
        return self._broker.router.ctx.deliver_latency

    def unopenable(self) -> list[Damage]:
        return self._broker.damage.unopenable()

    async def dead_letters(self, topic: str, n: int) -> list[tuple[int, str]]:
        return await self._broker.dead_letters.list(topic, n)

    async def replay(self, topic: str, id: str | None) -> Replayed:
        return await self._broker.dead_letters.replay(topic, id)

    async def purge(self, topic: str) -> int:
        return await self._broker.purge(topic)

    def pause(self, topic: str, group: str, paused: bool) -> None:
        self._broker.router.pause(topic, group, paused)

    async def delete_group(self, topic: str, group: str, force: bool) -> None:
        await self._broker.delete_group(topic, group, force)

    async def delete_topic(self, topic: str, force: bool) -> None:
        await self._broker.delete_topic(topic, force)

    async def message_status(
        self, topic: str, offset: int | None, id: str | None
    ) -> tuple[Record, dict[str, str], list[Place]]:
        b = self._broker
        return await message_status(b.store, b.router, b.dead_letters, topic, offset, id)

    def durable(self) -> Awaitable[None]:
        return self._broker.committed()
