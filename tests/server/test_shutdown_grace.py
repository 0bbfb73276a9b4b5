"""``--shutdown-grace``: a stopping broker lets what is in flight be acked before it goes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from linemq.broker.server.app import Broker
from tests.conftest import BrokerFactory, BrokerProcess
from tests.server.groupwire import member, next_msg
from tests.server.test_retries import publish
from tests.wire import Wire


async def notices_member(port: int, topic: str, group: str) -> Wire:
    w = await Wire.open(port)
    assert (await w.cmd("HELLO 1 notices")).startswith("OK hello 1 ")
    assert await w.cmd(f"SUB {topic} {group}") == f"OK subscribed {topic} in group {group}"
    return w


async def test_acks_in_the_grace_stick_and_what_was_not_acked_comes_back(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(shutdown_grace=0.5, ack_timeout=30)
    m = await notices_member(broker.port, "q", "g")
    await publish(broker.port, "q", "one", "two")
    one, two = await next_msg(m), await next_msg(m)
    stopping = asyncio.create_task(brokers.stop(broker))
    assert await m.line() == "CLOSING server shutting down"
    assert await m.cmd(f"ACK {one.id}") == "OK ack_received", "still answered in the grace"
    assert await m.closed(timeout=3), "closed once the grace is over"
    await stopping

    again = await brokers.start(ack_timeout=30)
    m2 = await member(again.port, "q", "g")
    assert (await next_msg(m2)).id == two.id
    assert await m2.silent(0.2), f"{one.id} was acked in the grace: never delivered again"


async def test_the_grace_ends_once_nothing_is_in_flight(brokers: BrokerFactory) -> None:
    broker = await brokers.start(shutdown_grace=30, ack_timeout=60)
    m = await notices_member(broker.port, "q", "g")
    plain = await member(broker.port, "q", "g")
    await publish(broker.port, "q", "a", "b")
    held = [await next_msg(m), await next_msg(plain)]
    started = time.monotonic()
    stopping = asyncio.create_task(brokers.stop(broker))
    assert await m.line() == "CLOSING server shutting down"
    # The other member asked for no notices: it is told nothing yet, and may still ack.
    assert await plain.cmd(f"ACK {held[1].id}") == "OK ack_received"
    assert await m.cmd(f"ACK {held[0].id}") == "OK ack_received"
    await asyncio.wait_for(stopping, 5)
    assert time.monotonic() - started < 5, "30 s of grace, but nothing was left to wait for"
    assert await plain.line() == "ERR server shutting down"
    assert (await m.reader.read()) == b"", "a notices connection hears CLOSING once"


async def test_nothing_is_delivered_and_no_one_connects_in_the_grace(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(shutdown_grace=30, ack_timeout=60, max_inflight=1)
    m = await notices_member(broker.port, "q", "g")
    publisher = await Wire.open(broker.port)
    assert await publisher.cmd("PUB q first") == "OK published"
    first = await next_msg(m)
    port = broker.port
    stopping = asyncio.create_task(brokers.stop(broker))
    assert await m.line() == "CLOSING server shutting down"
    assert await publisher.cmd("PUB q later") == "OK published", "stored, for after the restart"
    with pytest.raises(OSError):
        await Wire.open(port)
    assert await m.cmd(f"ACK {first.id}") == "OK ack_received"
    # The ack freed room, but a stopping broker hands out nothing more.
    assert (await m.reader.read()) == b""
    await asyncio.wait_for(stopping, 5)

    again = await brokers.start()
    m2 = await member(again.port, "q", "g")
    assert (await next_msg(m2)).text == "later"


async def test_with_nothing_in_flight_stop_is_at_once(brokers: BrokerFactory) -> None:
    broker = await brokers.start(shutdown_grace=30)
    m = await notices_member(broker.port, "q", "g")
    started = time.monotonic()
    await brokers.stop(broker)
    assert time.monotonic() - started < 2
    assert await m.line() == "CLOSING server shutting down"
    assert await m.closed()


async def test_a_second_stop_request_cuts_the_grace_short(brokers: BrokerFactory) -> None:
    broker: Broker = await brokers.start(shutdown_grace=30, ack_timeout=60)
    m = await notices_member(broker.port, "q", "g")
    await publish(broker.port, "q", "kept")
    held = await next_msg(m)
    broker.request_stop()  # as SIGTERM does
    stopping = asyncio.create_task(brokers.stop(broker))
    assert await m.line() == "CLOSING server shutting down"
    broker.request_stop()  # and a second SIGTERM, or Ctrl-C
    await asyncio.wait_for(stopping, 5)

    again = await brokers.start()
    m2 = await member(again.port, "q", "g")
    assert (await next_msg(m2)).id == held.id, "not acked: delivered again"


async def test_sigterm_waits_for_a_worker_acking_in_the_grace(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    proc = broker_process("--shutdown-grace", "800ms", "--ack-timeout", "30")
    m = await notices_member(proc.port, "jobs", "w")
    await publish(proc.port, "jobs", "done-in-grace", "never-acked")
    acked, unacked = await next_msg(m), await next_msg(m)
    terminating = asyncio.create_task(asyncio.to_thread(proc.terminate))
    assert await m.line() == "CLOSING server shutting down"
    await asyncio.sleep(0.1)  # the job finishes while the broker waits
    assert await m.cmd(f"ACK {acked.id}") == "OK ack_received"
    assert await terminating == 0
    events = [e for e in proc.events() if e["event"] in ("draining", "drained", "stopped")]
    assert [e["event"] for e in events] == ["draining", "drained", "stopped"], events
    assert (events[0]["inflight"], events[1]["inflight_left"]) == (2, 1)

    proc = broker_process("--port", str(proc.port), data_dir=proc.data_dir)
    m2 = await member(proc.port, "jobs", "w")
    again = await next_msg(m2)
    assert again.id == unacked.id
    assert await m2.silent(0.3), f"{acked.id} was acked in the grace: not delivered again"
