"""``Operations``: everything the HTTP side may ask of the broker, and nothing more.

The HTTP API, ``/metrics``, probes and the dashboard's charts are written against
this Protocol, never against the broker's classes, so ``ops`` imports nothing of
``server``; the broker hands over an object that has these members
(``server.face.BrokerFace``). Changes only reach memory and the broker's write
buffers: ``durable()`` is the ticket to await before answering, as a connection's
``OK`` waits for the commit tick and, under ``--fsync always``, the fsync.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Protocol

from linemq.broker.auth import Users
from linemq.broker.config import Config
from linemq.broker.delivery.dead_letters import Replayed
from linemq.broker.delivery.lookup import Place
from linemq.broker.observe.histogram import Histogram
from linemq.broker.observe.stats import Figures
from linemq.broker.storage.damage import Damage
from linemq.broker.storage.records import Record


class ScheduleFacts(Protocol):
    """One repeatable job as ``SCHEDULES`` lists it (``every``, or ``cron`` with ``tz``)."""

    @property
    def topic(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def every(self) -> str | None: ...
    @property
    def cron(self) -> str | None: ...
    @property
    def tz(self) -> str | None: ...
    @property
    def next_due(self) -> float: ...
    @property
    def last_due(self) -> float | None: ...
    @property
    def fired(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def options(self) -> tuple[str, ...]: ...


class Operations(Figures, Protocol):
    @property
    def config(self) -> Config: ...
    @property
    def ready(self) -> bool:
        """Recovery is done and the broker serves."""
        ...

    @property
    def users(self) -> Users | None:
        """The ``--auth-file`` users; None: auth is off."""
        ...

    @property
    def publish_latency(self) -> Histogram: ...
    @property
    def deliver_latency(self) -> Histogram: ...

    def unopenable(self) -> list[Damage]:
        """Topics and groups that could not be opened at start (``/readyz`` lists them)."""
        ...

    def group_policy(self, topic: str, group: str) -> dict[str, str] | None:
        """``POLICY <topic> <group>``'s fields (settings, ``source``, ``overrides``); None:
        no such group."""
        ...

    def group_filter(self, topic: str, group: str) -> list[str] | None:
        """The group's header filter tests (``SUB ... filter=``); None: it has none."""
        ...

    def schedules(self, topic: str | None) -> Sequence[ScheduleFacts]:
        """``SCHEDULES [topic]``: the repeatable jobs, sorted by topic and name."""
        ...

    async def dead_letters(self, topic: str, n: int) -> list[tuple[int, str]]:
        """The last ``n`` dead letters of ``topic``: (offset in ``<topic>.dlq``, JSON text)."""
        ...

    async def replay(self, topic: str, id: str | None) -> Replayed:
        """``REPLAY``; raises ``DeadLetterNotFound``."""
        ...

    async def purge(self, topic: str) -> int:
        """``PURGE``; raises ``StorageError``."""
        ...

    def pause(self, topic: str, group: str, paused: bool) -> None:
        """``PAUSE``/``RESUME``; raises ``DeliveryError``."""
        ...

    async def delete_topic(self, topic: str, force: bool) -> None:
        """``DELETE <topic>``: ``DeliveryError`` if refused."""
        ...

    async def message_status(
        self, topic: str, offset: int | None, id: str | None
    ) -> tuple[Record, dict[str, str], list[Place]]:
        """``STATUS``: the message and its place in each group; ``NotThere`` if absent."""
        ...

    async def delete_group(self, topic: str, group: str, force: bool) -> None:
        """``DELETE``; raises ``DeliveryError`` or ``StorageError``."""
        ...

    def durable(self) -> Awaitable[None]:
        """Done once every change made so far is written and durable per ``--fsync``."""
        ...
