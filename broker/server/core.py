"""``Core``: what the command handlers ask of the broker, stated here so that
``handlers`` does not import ``app`` (which builds it) and no import runs in a circle.
"""

from __future__ import annotations

from typing import Protocol

from linemq.broker.auth import Users
from linemq.broker.config import Config
from linemq.broker.delivery.dead_letters import DeadLetters
from linemq.broker.delivery.router import Router
from linemq.broker.engine.durability import Writable
from linemq.broker.observe.stats import Figures
from linemq.broker.protocol.v2 import Put
from linemq.broker.server.connection import Connection
from linemq.broker.server.schedules import Schedules
from linemq.broker.storage.log_store import Store


class Core(Protocol):
    @property
    def config(self) -> Config: ...
    @property
    def users(self) -> Users | None: ...
    @property
    def store(self) -> Store: ...
    @property
    def router(self) -> Router: ...
    @property
    def dead_letters(self) -> DeadLetters: ...
    @property
    def schedules(self) -> Schedules: ...
    @property
    def face(self) -> Figures:
        """The counters ``STATS`` shows (``observe.stats.collect``)."""
        ...

    def publish(self, conn: Connection, topic: str, msg: str) -> None: ...
    def publish_put(self, conn: Connection, put: Put) -> None: ...
    def append_gathered(self) -> None:
        """Append PUBs gathered for the tick before a command that may see offsets."""
        ...

    def reply_after_write(
        self, conn: Connection, target: Writable, reply: bytes, count: int = 1
    ) -> None: ...
    async def purge(self, topic: str) -> int: ...
    async def delete_group(self, topic: str, group: str, force: bool) -> None: ...
    async def delete_topic(self, topic: str, force: bool) -> None: ...
