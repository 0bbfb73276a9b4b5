"""``HELLO <v> notices``: the broker's timeouts in the reply, and ``CLOSING`` before it hangs up."""

from __future__ import annotations

import asyncio

from linemq.broker.server.app import Broker
from tests.conftest import BrokerFactory
from tests.wire import Wire


async def test_hello_notices_reports_the_settings_clients_pace_themselves_by(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(heartbeat_timeout=4.5, ack_timeout=30, max_inflight=7)
    w = await Wire.open(broker.port)
    assert await w.cmd("HELLO 2 notices") == (
        "OK hello 2 heartbeat_timeout=4.5 ack_timeout=30 max_inflight=7"
    )
    assert await w.cmd("HELLO 1 notices") == (
        "OK hello 1 heartbeat_timeout=4.5 ack_timeout=30 max_inflight=7"
    )


async def test_plain_hello_is_answered_as_before(broker: Broker) -> None:
    w = await Wire.open(broker.port)
    assert await w.cmd("HELLO 2") == "OK hello 2"
    assert await w.cmd("HELLO 2 other") == "ERR usage: HELLO 1|2"
    assert await w.cmd("HELLO 2 notices extra") == "ERR usage: HELLO 1|2"


async def test_shutdown_says_closing_to_notices_connections_and_err_to_the_rest(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start()
    opted_in = await Wire.open(broker.port)
    assert (await opted_in.cmd("HELLO 2 notices")).startswith("OK hello 2 ")
    plain = await Wire.open(broker.port)
    assert await plain.cmd("HELLO 2") == "OK hello 2"
    await brokers.stop(broker)
    assert await opted_in.line() == "CLOSING server shutting down"
    assert await opted_in.closed()
    assert await plain.line() == "ERR server shutting down"
    assert await plain.closed()


async def test_a_member_declared_dead_is_told_closing_when_it_asked_for_notices(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(heartbeat_timeout=0.3)
    opted_in = await Wire.open(broker.port)
    assert (await opted_in.cmd("HELLO 2 notices")).startswith("OK hello 2 ")
    plain = await Wire.open(broker.port)
    assert await plain.cmd("HELLO 2") == "OK hello 2"
    for w in (opted_in, plain):
        assert await w.cmd("SUB q g") == "OK subscribed q in group g"
    # Neither heartbeats: both are declared dead; only the one that asked is told why.
    assert await opted_in.line(timeout=3) == "CLOSING heartbeat timeout"
    assert await opted_in.closed()
    assert await read_to_end(plain) == b"", "without notices it just closes, as before"


async def read_to_end(w: Wire) -> bytes:
    try:
        return await asyncio.wait_for(w.reader.read(), 5)
    except ConnectionResetError:  # dropped with a reset: nothing more was said either
        return b""
