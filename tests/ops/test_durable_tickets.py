"""HTTP changes wait on a durability ticket the broker settles, not on a polled counter."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from linemq.broker.engine import durability
from linemq.broker.engine.tickets import Tickets
from linemq.broker.ops import api
from tests.conftest import BrokerFactory
from tests.ops.http import Http
from tests.wire import Wire


async def test_tickets_are_settled_in_generation_order_up_to_the_durable_one() -> None:
    tickets = Tickets()
    first, second, third = tickets.take(3), tickets.take(1), tickets.take(2)
    tickets.settle(2)
    assert second.done() and third.done() and not first.done()
    assert tickets
    tickets.settle(3)
    assert first.done() and not tickets


async def test_a_ticket_given_up_on_is_skipped_when_settled() -> None:
    tickets = Tickets()
    waiter = tickets.take(1)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await waiter
    tickets.settle(1)  # no InvalidStateError: a cancelled ticket is dropped
    assert waiter.cancelled() and not tickets


class HeldFsync:
    """Every fsync pass of the group commit waits in its thread until ``release``."""

    def __init__(self) -> None:
        self.running = threading.Event()
        self.go = threading.Event()

    def release(self) -> None:
        self.go.set()


@pytest.fixture
def held_fsync(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldFsync]:
    held = HeldFsync()
    real = durability._sync_all

    def sync(files: list[durability.Syncable]) -> None:
        held.running.set()
        held.go.wait(10)
        real(files)

    monkeypatch.setattr(durability, "_sync_all", sync)
    yield held
    held.release()


async def test_an_http_change_with_nothing_to_write_is_answered_after_the_running_fsync(
    brokers: BrokerFactory, held_fsync: HeldFsync, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``--fsync always`` a purge that writes nothing waits for the fsync under way,
    then answers at once: it is not left waiting for some later write."""
    monkeypatch.setattr(api, "DURABLE_TIMEOUT", 3.0)
    broker = await brokers.start(http_port=0, fsync="always")
    publisher = await Wire.open(broker.port)
    await publisher.send("PUB jobs one\n")  # its group commit starts an fsync, held
    while not held_fsync.running.is_set():
        await asyncio.sleep(0.005)
    purge = asyncio.create_task(Http(broker).post("/api/dlq/purge", {"topic": "jobs"}))
    while not broker.engine.tickets:  # the purge is done in memory and waits for its ticket
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)
    assert not purge.done()
    held_fsync.release()
    assert await asyncio.wait_for(purge, 2.0) == {"purged": 0}
    assert await publisher.line() == "OK published"
