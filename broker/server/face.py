"""What the broker shows the operations side: the one object ``ops`` and ``observe`` get.

``ops`` (HTTP API, metrics, dashboard) and ``observe`` (STATS snapshots, chart
samples) state what they need as Protocols of their own (``ops.port.Operations``,
``observe.stats.Figures``) and import nothing of the server; this facade answers
them from the engine (counters, operations, durability tickets) and, for what only
the TCP side knows (connections, users, readiness, deleting a topic its
connections publish to), from the server. It is the only place that knows where a
counter or an operation lives, so those parts can move without touching the HTTP
side.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from linemq.broker.auth import Users
from linemq.broker.config import Config
from linemq.broker.delivery.clients import ClientState
from linemq.broker.delivery.dead_letters import Replayed
from linemq.broker.delivery.group import ConsumerGroup
from linemq.broker.delivery.group_policy import describe_group
from linemq.broker.delivery.lookup import Place, message_status
from linemq.broker.engine.engine import Engine
from linemq.broker.observe.histogram import Histogram
from linemq.broker.server.schedules import Listed, Schedules
from linemq.broker.storage.damage import Damage
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
    """What this facade reads of the server (``server.app.Broker`` has it)."""

    @property
    def engine(self) -> Engine: ...
    @property
    def ready(self) -> bool: ...
    @property
    def users(self) -> Users | None: ...
    @property
    def started_at(self) -> float: ...
    @property
    def connections(self) -> Collection[Connected]: ...
    @property
    def schedules(self) -> Schedules: ...

    async def delete_topic(self, topic: str, force: bool) -> None: ...


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
        self._engine = broker.engine

    # -- observe.stats.Figures -------------------------------------------------------

    @property
    def started_at(self) -> float:
        return self._broker.started_at

    @property
    def connection_count(self) -> int:
        return len(self._broker.connections)

    @property
    def fanout_sent(self) -> int:
        return self._engine.fanout_sent

    @property
    def retired(self) -> Mapping[str, int]:
        return self._engine.router.retired

    def topic_names(self) -> list[str]:
        return self._engine.store.topics()

    def topic(self, name: str) -> TopicFigures | None:
        store = self._engine.store
        view = store.get(name)
        if view is None:
            return None
        footprint = store.footprint(name)
        return TopicFigures(view.first_offset, view.last_offset, footprint.bytes, footprint.parts)

    def published(self, topic: str) -> int:
        return self._engine.published.get(topic, 0)

    def published_total(self) -> int:
        return sum(self._engine.published.values())

    def subscribers(self, topic: str) -> int:
        return len(self._engine.router.fanout.get(topic, ()))

    def subscribing_connections(self) -> int:
        return sum(1 for c in self._broker.connections if c.client.subscribes)

    def groups_of(self, topic: str) -> Mapping[str, ConsumerGroup]:
        return self._engine.router.groups.get(topic, {})

    def all_groups(self) -> Iterator[tuple[str, str, ConsumerGroup]]:
        for topic, groups in self._engine.router.groups.items():
            for name, group in groups.items():
                yield topic, name, group

    def damage_counts(self) -> dict[str, int]:
        return self._engine.damage.counts()

    def schedule_counts(self) -> dict[str, int]:
        schedules = self._broker.schedules
        return {"schedules": len(schedules), "schedule_fires": schedules.fires}

    # -- ops.port.Operations ---------------------------------------------------------

    @property
    def config(self) -> Config:
        return self._engine.config

    @property
    def ready(self) -> bool:
        return self._broker.ready

    @property
    def users(self) -> Users | None:
        return self._broker.users

    @property
    def publish_latency(self) -> Histogram:
        return self._engine.publish_latency

    @property
    def deliver_latency(self) -> Histogram:
        return self._engine.router.ctx.deliver_latency

    def unopenable(self) -> list[Damage]:
        return self._engine.damage.unopenable()

    def group_policy(self, topic: str, group: str) -> dict[str, str] | None:
        found = self._engine.router.groups.get(topic, {}).get(group)
        return None if found is None else describe_group(found)

    def group_filter(self, topic: str, group: str) -> list[str] | None:
        found = self._engine.router.groups.get(topic, {}).get(group)
        tests = None if found is None else found.state.filter
        return None if tests is None else tests.texts

    def schedules(self, topic: str | None) -> list[Listed]:
        return self._broker.schedules.listing(topic)

    async def dead_letters(self, topic: str, n: int) -> list[tuple[int, str]]:
        return await self._engine.dead_letters.list(topic, n)

    async def replay(self, topic: str, id: str | None) -> Replayed:
        return await self._engine.dead_letters.replay(topic, id)

    async def purge(self, topic: str) -> int:
        return await self._engine.purge(topic)

    def pause(self, topic: str, group: str, paused: bool) -> None:
        self._engine.router.pause(topic, group, paused)

    async def delete_group(self, topic: str, group: str, force: bool) -> None:
        await self._engine.delete_group(topic, group, force)

    async def delete_topic(self, topic: str, force: bool) -> None:
        await self._broker.delete_topic(topic, force)

    async def message_status(
        self, topic: str, offset: int | None, id: str | None
    ) -> tuple[Record, dict[str, str], list[Place]]:
        e = self._engine
        return await message_status(e.store, e.router, e.dead_letters, topic, offset, id)

    def durable(self) -> Awaitable[None]:
        return self._engine.committed()
