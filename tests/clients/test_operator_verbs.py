"""``Client.pause``/``resume``/``purge_dlq``/``delete_group`` (and the sync ones) against a real
broker."""

from __future__ import annotations

import asyncio

import pytest

from linemq.broker.server.app import Broker
from linemq.clients import Client
from linemq.clients.aio import BrokerError
from linemq.clients.operator_verbs import (
    encode_delete_group,
    encode_pause,
    encode_purge_dlq,
    encode_resume,
    parse_purged,
)
from linemq.clients.protocol import ProtocolError
from linemq.clients.sync import SyncClient
from tests.conftest import BrokerFactory


def test_encoders_check_names_and_purge_takes_the_base_topic() -> None:
    assert encode_pause("jobs", "workers") == b"PAUSE jobs workers\n"
    assert encode_resume("jobs", "workers") == b"RESUME jobs workers\n"
    assert encode_purge_dlq("jobs") == b"PURGE jobs.dlq\n"
    with pytest.raises(ValueError):
        encode_pause("jobs", "bad group")
    assert parse_purged("purged 12") == 12
    with pytest.raises(ProtocolError):
        parse_purged("purged x")


async def test_pause_stops_deliveries_until_resume(broker: Broker) -> None:
    async with Client(port=broker.port) as member, Client(port=broker.port) as admin:
        sub = await member.subscribe_to("jobs", "workers")
        await admin.pause("jobs", "workers")
        await admin.publish("jobs", "held")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sub.next(), 0.3)
        await admin.resume("jobs", "workers")
        m = await asyncio.wait_for(sub.next(), 5)
        assert m.text == "held"
        await m.ack()
        with pytest.raises(BrokerError, match="no group nope on jobs"):
            await admin.pause("jobs", "nope")


async def test_purge_dlq_deletes_dead_letters_and_counts_them(brokers: BrokerFactory) -> None:
    broker = await brokers.start(max_retries=0)
    async with Client(port=broker.port) as c:
        sub = await c.subscribe_to("jobs", "workers")
        await c.publish("jobs", "poison")
        m = await asyncio.wait_for(sub.next(), 5)
        await m.nack()
        await dead_letters(c, "jobs", 1)

    def sync_purge() -> tuple[int, int]:
        with SyncClient(port=broker.port) as s:
            return s.purge_dlq("jobs"), len(s.dlq("jobs"))

    assert await asyncio.to_thread(sync_purge) == (1, 0)


async def dead_letters(c: Client, topic: str, n: int) -> None:
    """Wait until ``topic`` has ``n`` dead letters (a NACK dead-letters asynchronously)."""
    for _ in range(500):
        if len(await c.dlq(topic)) >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{topic} never had {n} dead letters")


def test_delete_group_encoder_takes_patterns_and_force() -> None:
    assert encode_delete_group("jobs", "typo") == b"DELETE jobs typo\n"
    assert encode_delete_group("jobs.*", "w", force=True) == b"DELETE jobs.* w force\n"
    with pytest.raises(ValueError):
        encode_delete_group("jobs", "bad group")


async def test_delete_group_needs_force_while_members_are_connected(broker: Broker) -> None:
    async with Client(port=broker.port) as member, Client(port=broker.port) as admin:
        await member.subscribe_to("jobs", "workers")
        with pytest.raises(BrokerError, match="group has members"):
            await admin.delete_group("jobs", "workers")
        await admin.delete_group("jobs", "workers", force=True)
        assert await admin.groups("jobs") == []
        with pytest.raises(BrokerError, match="no group workers on jobs"):
            await admin.delete_group("jobs", "workers")

    def sync_delete() -> list[object]:
        with SyncClient(port=broker.port) as s:
            s.subscribe("jobs", "again").unsubscribe()
            s.delete_group("jobs", "again")
            return list(s.groups("jobs"))

    assert await asyncio.to_thread(sync_delete) == []
