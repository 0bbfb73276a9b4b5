"""A broker in its shutdown grace says ``CLOSING`` and still answers: the client acks on."""

from __future__ import annotations

import asyncio

from linemq.clients import Client
from tests.clients.test_reconnect import FAST_RETRY
from tests.conftest import BrokerFactory, eventually


async def test_acks_after_closing_are_answered_and_the_client_rides_out_the_restart(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(shutdown_grace=0.5, ack_timeout=30)
    port = broker.port
    async with Client(port=port, reconnect=FAST_RETRY) as c:
        jobs = await c.subscribe("jobs", "w")
        await c.publish("jobs", "finished in the grace")
        await c.publish("jobs", "left unacked")
        done, left = await jobs.next(), await jobs.next()
        assert c.server_closing is None
        stopping = asyncio.create_task(brokers.stop(broker))
        await eventually(lambda: c.server_closing is not None)
        assert c.server_closing == "broker closed the connection: server shutting down"
        assert c.connected, "the broker still answers: the connection is kept"
        await done.ack()
        await stopping
        await eventually(lambda: not c.connected)

        await brokers.start(port=port, shutdown_grace=0.5, ack_timeout=30)
        again = await asyncio.wait_for(jobs.next(), 5)
        assert (again.id, again.attempt) == (left.id, 2)
        await again.ack()
        await c.publish("jobs", "next")
        assert (await asyncio.wait_for(jobs.next(), 5)).text == "next", "nothing else came back"
