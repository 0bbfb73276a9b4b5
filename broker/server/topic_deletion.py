"""``DELETE <topic>``: a topic, its dead letters, and every group of both, for good.

The in-memory part happens in one step on the loop, so nothing can publish to
the old log or join its groups in between: what was appended is written first,
the groups are deleted as ``DELETE <topic> <group> force`` does, then the store
stops serving the topics (``LogUpkeep.delete_topics``: a publish to the name
meanwhile gets ``ERR storage unavailable: topic <t> is being deleted``) and
connections forget them. The store's removal (for files: a tombstone, then the
files, in worker threads) and the journals' then finish, and the reply waits for
them, so a crash after ``OK deleted`` never brings the topic back, and a topic
made again under its name never reuses an offset.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from linemq.broker.delivery.dead_letters import DeadLetters
from linemq.broker.delivery.router import DeliveryError, Router
from linemq.broker.engine.engine import Engine
from linemq.broker.protocol.names import is_dead_letter_topic, source_topic
from linemq.broker.server.connection import Connection
from linemq.broker.server.schedules import Schedules
from linemq.broker.storage.log_store import Store
from linemq.broker.storage.records import StorageError


class Broker(Protocol):
    """The parts of ``server.app.Broker`` a deletion reaches into."""

    @property
    def store(self) -> Store: ...
    @property
    def router(self) -> Router: ...
    @property
    def dead_letters(self) -> DeadLetters: ...
    @property
    def engine(self) -> Engine: ...
    @property
    def connections(self) -> Collection[Connection]: ...
    @property
    def schedules(self) -> Schedules: ...


async def delete_topic(broker: Broker, topic: str, force: bool) -> None:
    """Delete ``topic`` (and ``<topic>.dlq``; a ``.dlq`` name: only that topic). Refused
    with ``DeliveryError`` for an unknown topic, or one with subscribers unless ``force``."""
    store, router = broker.store, broker.router
    names = [topic] if is_dead_letter_topic(topic) else [topic, f"{topic}.dlq"]
    if store.get(topic) is None and not router.groups.get(topic):
        raise DeliveryError(f"no topic {topic}")
    if not force and _attached(broker, names):
        raise DeliveryError("topic has subscribers")
    broker.engine.flush()
    # What can fail (deleting group logs) goes first: if it does, the logs are still served.
    for name in names:
        router.drop_topic(name)
    broker.dead_letters.forget(source_topic(topic))
    schedules_gone = broker.schedules.drop_topic(names)  # before a timer could recreate it
    removed = store.delete_topics(names)
    for name in names:
        for conn in broker.connections:
            conn.vetted.discard(name)
            conn.client.topics.discard(name)  # a catch-up reader stops too
        broker.engine.dedup.drop(name)
    broker.engine.schedule()  # members' replies and the groups' last writes settle
    try:
        await removed
        for name in names:
            await broker.engine.state.drop_topic(name)
        await schedules_gone
    except OSError as exc:
        raise StorageError(str(exc)) from exc


def _attached(broker: Broker, names: list[str]) -> bool:
    """Whether a connection subscribes to one of ``names`` or is a member of a group on it."""
    for conn in broker.connections:
        client = conn.client
        if any(name in client.topics for name in names):
            return True
        if any(t in names for t, _ in client.members):
            return True
    return False
