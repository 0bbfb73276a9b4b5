"""A client that rides out restarts: real brokers, stopped, killed and started again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from linemq.clients import Client, ConnectionLost, ExponentialBackoff, NotFound, Retry, Timeout
from linemq.clients.sync import SyncClient
from tests.clients.conftest import FakeBroker
from tests.conftest import BrokerFactory, BrokerProcess, eventually

FAST_RETRY = Retry(ExponentialBackoff(base=0.02, cap=0.2))


async def restart_on_same_port(
    broker_process: Callable[..., BrokerProcess], old: BrokerProcess, *args: str
) -> BrokerProcess:
    return await asyncio.to_thread(
        broker_process, *args, "--port", str(old.port), data_dir=old.data_dir
    )


async def test_group_and_fanout_resume_after_kill9_and_fanout_misses_nothing(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    proc = broker_process("--fsync", "always")
    consumer = Client(port=proc.port, reconnect=FAST_RETRY)
    await consumer.connect()
    fanout = await consumer.subscribe("news")
    async with Client(port=proc.port, reconnect=None) as pub:
        for i in range(3):
            await pub.publish("news", f"before-{i}")
    assert [(await fanout.next()).text for _ in range(3)] == ["before-0", "before-1", "before-2"]
    group = await consumer.subscribe("jobs", "workers")

    proc.kill9()
    proc = await restart_on_same_port(broker_process, proc, "--fsync", "always")
    # Published while the consumer is still away (or just back): none may be missed.
    async with Client(port=proc.port, reconnect=None) as pub:
        for i in range(3):
            await pub.publish("news", f"during-{i}")
        await pub.publish("jobs", "job-1")
    got = [(await asyncio.wait_for(fanout.next(), 10)).text for _ in range(3)]
    assert got == ["during-0", "during-1", "during-2"]
    job = await asyncio.wait_for(group.next(), 10)
    assert job.text == "job-1"
    await job.ack()
    assert consumer.reconnects == 1
    await consumer.connect()  # already connected again: not "client already connected"
    await consumer.close()


async def test_sigterm_is_a_lost_connection_not_a_reply(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    proc = broker_process()
    idle = Client(port=proc.port, reconnect=None)
    busy = Client(port=proc.port, reconnect=None)
    await idle.connect()
    await busy.connect()
    sub = await idle.subscribe("chat")
    # A HISTORY reply is read off the event loop: likely still owed when the broker stops.
    in_flight = [asyncio.create_task(busy.history("chat", 1000)) for _ in range(6)]
    await asyncio.to_thread(proc.terminate)
    results = await asyncio.gather(*in_flight, return_exceptions=True)
    assert all(isinstance(r, list | ConnectionLost) for r in results), results
    with pytest.raises(ConnectionLost, match="server shutting down"):
        await asyncio.wait_for(sub.next(), 5)
    with pytest.raises(ConnectionLost):
        await idle.ping()
    # And connect() after the restart simply connects again.
    proc = await restart_on_same_port(broker_process, proc)
    await idle.connect()
    await idle.ping()
    await idle.close()
    await busy.close()


async def test_requests_made_while_reconnecting_wait_for_the_new_connection(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    proc = broker_process()
    c = Client(port=proc.port, reconnect=FAST_RETRY, request_timeout=20)
    await c.connect()
    assert c.server_settings["heartbeat_timeout"] == 30
    assert c.heartbeat_every() == 10
    await asyncio.to_thread(proc.terminate)
    await eventually(lambda: not c.connected)
    publish = asyncio.create_task(c.publish("chat", "after the restart"))
    proc = await restart_on_same_port(broker_process, proc)
    result = await asyncio.wait_for(publish, 20)
    assert result is not None and result.offset == 1
    await c.close()


async def test_a_group_delivery_comes_again_on_the_new_connection(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    broker = await brokers.start(heartbeat_timeout=1.5)
    c = Client(port=broker.port, reconnect=FAST_RETRY)
    await c.connect()
    assert c.heartbeat_every() == pytest.approx(0.5)
    sub = await c.subscribe("jobs", "w")
    await c.publish("jobs", "one")
    held = await sub.next()
    link = c._link
    assert link is not None
    c._abort(link, "test cut")
    await eventually(lambda: c.reconnects == 1)
    again = await asyncio.wait_for(sub.next(), 5)  # redelivered to the new connection
    assert again.id == held.id and again.attempt == 2
    await again.ack()
    with pytest.raises(NotFound):
        await held.ack()
    await c.close()


async def test_request_timeout_raises_timeout_and_the_connection_stays_usable(
    fake_broker: FakeBroker,
) -> None:
    async with Client(port=fake_broker.port, request_timeout=0.5) as c:
        fake_broker.ping_delay = 0.8
        with pytest.raises(Timeout, match=r"no reply within 0\.5 s"):
            await c.ping()
        # The late OK pong is read and dropped; the next reply is the publish's own.
        assert (await c.publish("t", "still fine")) is None  # v1 fake broker: no offset
        assert await c.history("t", 1)


async def test_giving_up_ends_subscriptions_with_connection_lost(fake_broker: FakeBroker) -> None:
    c = Client(port=fake_broker.port, reconnect=Retry(ExponentialBackoff(0.01, 0.02), 2))
    await c.connect()
    sub = await c.subscribe("chat")
    await fake_broker.stop()
    with pytest.raises(ConnectionLost, match="2 reconnect attempts failed"):
        await asyncio.wait_for(sub.next(), 5)
    with pytest.raises(ConnectionLost):
        await c.ping()
    await c.close()
    await fake_broker.start()  # for the fixture's stop()


def test_sync_client_rides_out_a_restart_the_same_way(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    proc = broker_process()
    with SyncClient(port=proc.port, reconnect=FAST_RETRY) as c:
        sub = c.subscribe("news")
        first = c.publish("news", "one")
        assert first is not None and first.offset == 1
        assert sub.next(timeout=5).text == "one"
        assert proc.terminate() == 0
        proc = broker_process("--port", str(proc.port), data_dir=proc.data_dir)
        with SyncClient(port=proc.port, reconnect=None) as pub:
            pub.publish("news", "two")
        assert sub.next(timeout=10).text == "two"
        c.connect()  # harmless while connected
        with pytest.raises(Timeout):
            sub.next(timeout=0.05)


@pytest.mark.parametrize("line", ["ERR server shutting down", "CLOSING server shutting down"])
async def test_a_shutdown_line_fails_requests_in_flight_as_connection_lost(
    fake_broker: FakeBroker, line: str
) -> None:
    c = Client(port=fake_broker.port, reconnect=None)
    await c.connect()
    fake_broker.silent_ping = True
    pings = [asyncio.create_task(c.ping()) for _ in range(3)]
    await eventually(lambda: fake_broker.received.count("PING") == 3)
    fake_broker.push(line, close=True)
    for ping in pings:
        with pytest.raises(ConnectionLost, match="server shutting down"):
            await asyncio.wait_for(ping, 5)
    await c.close()


async def test_an_unsolicited_err_on_an_idle_connection_is_a_connection_event(
    fake_broker: FakeBroker,
) -> None:
    c = Client(port=fake_broker.port, reconnect=FAST_RETRY)
    await c.connect()
    sub = await c.subscribe("chat")
    fake_broker.push("ERR slow consumer")  # nothing outstanding: cannot be a reply
    await eventually(lambda: c.reconnects == 1)
    assert fake_broker.received.count("SUB chat") == 2  # subscribed again
    await c.publish("chat", "still subscribed")
    assert (await asyncio.wait_for(sub.next(), 5)).text == "still subscribed"
    await c.close()


async def test_durations_are_accepted_the_same_way_for_client_options(
    fake_broker: FakeBroker,
) -> None:
    from datetime import timedelta

    c = Client(port=fake_broker.port, timeout="2s", request_timeout=timedelta(seconds=3),
               heartbeat_interval="500ms")  # fmt: skip
    assert (c.timeout, c.request_timeout, c.heartbeat_every()) == (2.0, 3.0, 0.5)
    for bad in ("-1s", float("nan"), "soon"):
        with pytest.raises(ValueError):
            Client(request_timeout=bad)


async def test_a_full_broker_refuses_with_its_reason(brokers: BrokerFactory) -> None:
    broker = await brokers.start(max_connections=1)
    async with Client(port=broker.port):
        with pytest.raises(ConnectionLost, match="refused the connection: too many connections"):
            await Client(port=broker.port).connect()
