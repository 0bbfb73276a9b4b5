"""One connection in two groups of a topic gets a message once per group, with one id: each
copy is acked on its own, whatever kind of delivery it is."""

from __future__ import annotations

import pytest

from tests.conftest import BrokerFactory
from tests.server.groupwire import next_msg
from tests.server.v2wire import put
from tests.wire import Wire

OPTIONS = {
    "no options": (),
    "keyed": ("key=customer-7",),
    "urgent": ("priority=high",),
}


@pytest.mark.parametrize("kind", list(OPTIONS))
async def test_both_copies_of_a_message_are_acked(brokers: BrokerFactory, kind: str) -> None:
    broker = await brokers.start(ack_timeout=0.2, max_retries=0)
    consumer = await Wire.open(broker.port)
    assert await consumer.cmd("SUB jobs a") == "OK subscribed jobs in group a"
    assert await consumer.cmd("SUB jobs b") == "OK subscribed jobs in group b"
    publisher = await Wire.open(broker.port)
    assert (await put(publisher, "jobs", b"work", *OPTIONS[kind])).startswith("OK published")

    first, second = await next_msg(consumer), await next_msg(consumer)
    assert first.id == second.id
    assert await consumer.cmd(f"ACK {first.id}") == "OK ack_received"
    assert await consumer.cmd(f"ACK {first.id}") == "OK ack_received"
    assert await consumer.cmd(f"ACK {first.id}") == (
        f"ERR message {first.id} not found in pending messages (already acknowledged)"
    )
    assert await consumer.silent(0.4)  # past the ack timeout: no redelivery
    assert broker.engine.published.get("jobs.dlq", 0) == 0
    groups = broker.router.groups["jobs"]
    assert [groups[g].info()["inflight"] for g in ("a", "b")] == [0, 0]


async def test_a_nack_of_one_copy_leaves_the_other_in_flight(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=5.0)
    consumer = await Wire.open(broker.port)
    assert await consumer.cmd("SUB jobs a") == "OK subscribed jobs in group a"
    assert await consumer.cmd("SUB jobs b") == "OK subscribed jobs in group b"
    publisher = await Wire.open(broker.port)
    assert (await put(publisher, "jobs", b"work", "key=k")).startswith("OK published")
    first, _ = await next_msg(consumer), await next_msg(consumer)
    assert await consumer.cmd(f"NACK {first.id} 60") == "OK nack_received"
    assert await consumer.cmd(f"ACK {first.id}") == "OK ack_received"
    groups = broker.router.groups["jobs"]
    assert sorted(groups[g].info()["inflight"] for g in ("a", "b")) == [0, 0]
    assert sorted(groups[g].info()["waiting"] for g in ("a", "b")) == [0, 1]
