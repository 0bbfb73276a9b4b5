"""``Message.term()`` and ``Message.nack(reason=)`` in both Python clients, against a broker."""

from __future__ import annotations

import asyncio

import pytest

from linemq.broker.server.app import Broker
from linemq.clients.aio import Client, Message
from linemq.clients.dead_letters import DeadLetter
from linemq.clients.errors import ConnectionLost, NotFound
from linemq.clients.protocol import encode_nack, encode_term
from linemq.clients.sync import SyncClient
from tests.conftest import BrokerFactory


async def test_term_and_nack_reason_reach_the_dead_letters(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=10, max_retries=0)
    async with Client(port=broker.port) as c:
        sub = await c.subscribe("jobs", "workers")
        await c.publish("jobs", "poison")
        await c.publish("jobs", "flaky")
        messages = aiter(sub)
        poison: Message = await asyncio.wait_for(anext(messages), 5)
        flaky: Message = await asyncio.wait_for(anext(messages), 5)
        await poison.term("Traceback:\n  ValueError: bad\n")
        await flaky.nack(reason="db down")
        with pytest.raises(NotFound) as info:
            await poison.ack()
        assert "(terminated)" in info.value.reason
        letters = {x.text: x for x in await c.dlq("jobs")}
    assert letters["poison"].reason == "terminated"
    assert letters["poison"].error == "Traceback:   ValueError: bad"
    assert (letters["flaky"].reason, letters["flaky"].error) == ("nacked", "db down")


async def test_sync_message_term(broker: Broker) -> None:
    # The broker runs on this loop, so the blocking client runs in a thread.
    letter, id = await asyncio.to_thread(sync_term, broker.port)
    assert (letter.id, letter.reason, letter.error) == (id, "terminated", None)


def sync_term(port: int) -> tuple[DeadLetter, str]:
    with SyncClient(port=port) as c:
        sub = c.subscribe("jobs", "workers")
        c.publish("jobs", "poison")
        message = sub.next(timeout=5)
        message.term()
        [letter] = c.dlq("jobs")
    return letter, message.id


def test_encoders() -> None:
    assert encode_term("m1") == b"TERM m1\n"
    assert encode_term("m1", " bad\r\ninput ") == b"TERM m1 bad input\n"
    assert encode_nack("m1", 5, "db down") == b"NACK m1 5 reason=db down\n"
    assert encode_nack("m1", reason="x\x00y") == b"NACK m1 reason=xy\n"
    for bad in ("", " \n "):
        with pytest.raises(ValueError, match="reason must not be empty"):
            encode_term("m1", bad)


async def test_a_client_that_stops_heartbeating_hears_why_it_was_dropped(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(heartbeat_timeout=0.3)
    async with Client(port=broker.port, heartbeat_interval=60, reconnect=None) as c:
        sub = await c.subscribe("jobs", "workers")
        with pytest.raises(ConnectionLost, match="broker closed the connection: heartbeat timeout"):
            await asyncio.wait_for(sub.next(), 5)
