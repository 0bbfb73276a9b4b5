"""The asyncio Client against the fake broker in conftest.py."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from linemq.clients.aio import BrokerError, Client

if TYPE_CHECKING:
    from conftest import FakeBroker


async def test_pipelined_publishes_each_get_their_own_reply(fake_broker: FakeBroker) -> None:
    texts = [f"m{i}" if i % 7 else "boom" for i in range(50)]
    async with Client(port=fake_broker.port) as c:
        results = await asyncio.gather(
            *(c.publish("chat", t) for t in texts), return_exceptions=True
        )
        history = await c.history("chat", 100)
    for text, result in zip(texts, results, strict=True):
        if text == "boom":
            assert isinstance(result, BrokerError)
            assert result.reason == "rejected boom"
        else:
            assert result is None
    assert [m.text for m in history] == [t for t in texts if t != "boom"]


async def test_publish_many_writes_all_then_reports_first_error(fake_broker: FakeBroker) -> None:
    async with Client(port=fake_broker.port) as c:
        assert await c.publish_many("chat", ["a", "b c", "d"]) == 3
        with pytest.raises(BrokerError, match="rejected boom"):
            await c.publish_many("chat", ["e", "boom", "f"])
        assert [m.text for m in await c.history("chat", 10)] == ["a", "b c", "d", "e", "f"]
        with pytest.raises(ValueError, match="message must not contain"):
            await c.publish_many("chat", ["g", "bad\nline"])
        assert len(await c.history("chat", 10)) == 5  # nothing of the invalid batch was sent


async def test_msg_lines_interleaved_with_replies_go_to_the_subscription(
    fake_broker: FakeBroker,
) -> None:
    async with Client(port=fake_broker.port) as c:
        sub = await c.subscribe_to("chat")
        # The fake sends each MSG before the OK of the PUB that caused it.
        await asyncio.gather(*(c.publish("chat", f"hi {i}") for i in range(5)), c.ping())
        history = await c.history("chat", 2)
        got = [await sub.next() for _ in range(5)]
    assert [m.text for m in got] == [f"hi {i}" for i in range(5)]
    assert [m.offset for m in got] == [1, 2, 3, 4, 5]
    assert got[0].raw.startswith("MSG chat msg_") and got[0].raw.endswith(" hi 0")
    assert [m.text for m in history] == ["hi 3", "hi 4"]


async def test_async_for_subscribes_once_and_yields_messages(fake_broker: FakeBroker) -> None:
    async with Client(port=fake_broker.port) as reader, Client(port=fake_broker.port) as writer:
        received: list[str] = []

        async def consume() -> None:
            async for m in await reader.subscribe("news"):
                received.append(m.text)
                if len(received) == 2:
                    return

        task = asyncio.create_task(consume())
        while not any(line == "SUB news" for line in fake_broker.received):
            await asyncio.sleep(0.005)
        await reader.ping()  # SUB's reply is in before the publishes below
        await writer.publish_many("news", ["one", "two"])
        await asyncio.wait_for(task, 2)
    assert received == ["one", "two"]
    assert fake_broker.received.count("SUB news") == 1


async def test_group_message_ack_sends_ack_with_its_id(fake_broker: FakeBroker) -> None:
    async with Client(port=fake_broker.port) as c:
        sub = await c.subscribe_to("jobs", "workers")
        await c.publish("jobs", "work item")
        m = await asyncio.wait_for(sub.next(), 2)
        assert m.group == "workers"
        await m.touch()
        await m.ack()
        with pytest.raises(BrokerError, match="not found in pending"):
            await m.ack()
    assert "SUB jobs workers" in fake_broker.received
    assert f"TOUCH {m.id}" in fake_broker.received
    assert f"ACK {m.id}" in fake_broker.received
    assert not fake_broker.pending


async def test_nack_with_delay_and_fanout_messages_cannot_be_acked(fake_broker: FakeBroker) -> None:
    async with Client(port=fake_broker.port) as c:
        group = await c.subscribe_to("jobs", "workers")
        fanout = await c.subscribe_to("news")
        await c.publish_many("jobs", ["j"])
        await c.publish_many("news", ["n"])
        job, news = await group.next(), await fanout.next()
        await job.nack(delay=1.5)
        with pytest.raises(ValueError, match="consumer-group"):
            await news.ack()
    assert f"NACK {job.id} 1.5" in fake_broker.received


async def test_heartbeats_are_sent_while_a_group_subscription_is_active(
    fake_broker: FakeBroker,
) -> None:
    async with Client(port=fake_broker.port, heartbeat_interval=0.05) as c:
        await c.subscribe_to("news")
        await asyncio.sleep(0.12)
        assert "HEARTBEAT" not in fake_broker.received  # fanout needs no heartbeat
        sub = await c.subscribe_to("jobs", "workers")
        await asyncio.sleep(0.22)
        beats = fake_broker.received.count("HEARTBEAT")
        assert beats >= 2
        await sub.unsubscribe()
        await asyncio.sleep(0.12)
        assert fake_broker.received.count("HEARTBEAT") <= beats + 1
    assert "UNSUB jobs workers" in fake_broker.received


async def test_unsubscribe_ends_iteration_after_queued_messages(fake_broker: FakeBroker) -> None:
    async with Client(port=fake_broker.port) as c:
        sub = await c.subscribe_to("chat")
        await c.publish("chat", "last")
        await sub.unsubscribe()
        assert [m.text async for m in sub] == ["last"]
        sub2 = await c.subscribe_to("chat")  # the topic is free again
        await sub2.unsubscribe()


async def test_subscribing_without_await_still_works_lazily_but_warns(
    fake_broker: FakeBroker,
) -> None:
    async with Client(port=fake_broker.port) as c:
        with pytest.warns(DeprecationWarning, match="await client.subscribe"):
            lazy = aiter(c.subscribe("news"))
        assert "SUB news" not in fake_broker.received  # nothing sent before iterating
        fake_broker.publish_when_subscribed("SUB news", "news", ["hi"])
        assert (await asyncio.wait_for(anext(lazy), 5)).text == "hi"


async def test_double_subscription_to_a_topic_is_refused(fake_broker: FakeBroker) -> None:
    async with Client(port=fake_broker.port) as c:
        first = await c.subscribe("chat")
        with pytest.raises(ValueError, match="already subscribed"):
            await c.subscribe("chat", "workers")
        await c.publish("chat", "still routed to the first")
        assert (await first.next()).text == "still routed to the first"


async def test_connection_loss_fails_pending_requests_and_subscriptions(
    fake_broker: FakeBroker,
) -> None:
    c = Client(port=fake_broker.port, reconnect=None)
    await c.connect()
    sub = await c.subscribe_to("chat")
    fake_broker.silent_ping = True
    ping = asyncio.create_task(c.ping())
    next_msg = asyncio.create_task(sub.next())
    while "PING" not in fake_broker.received:
        await asyncio.sleep(0.005)
    fake_broker.drop_connections()
    with pytest.raises(ConnectionError, match="closed by server"):
        await asyncio.wait_for(ping, 2)
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(next_msg, 2)
    with pytest.raises(ConnectionError):
        await sub.next()
    with pytest.raises(ConnectionError):
        await c.publish("chat", "too late")
    await c.close()  # tolerated: the server is gone


async def test_close_sends_quit_and_ends_subscriptions_cleanly(fake_broker: FakeBroker) -> None:
    c = Client(port=fake_broker.port)
    await c.connect()
    sub = await c.subscribe_to("chat")
    await c.close()
    assert fake_broker.received[-1] == "QUIT"
    assert [m async for m in sub] == []
    with pytest.raises(ConnectionError):
        await c.ping()


async def test_err_reply_leaves_the_connection_usable(fake_broker: FakeBroker) -> None:
    async with Client(port=fake_broker.port) as c:
        with pytest.raises(BrokerError, match="not found in pending"):
            await c.ack("msg_nope")
        await c.ping()


async def test_cancelled_request_does_not_shift_later_replies(fake_broker: FakeBroker) -> None:
    async with Client(port=fake_broker.port) as c:
        fake_broker.silent_ping = True
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(c.ping(), 0.05)
        fake_broker.silent_ping = False
        # The unanswered PING's waiter is still first in line; the fake will never answer it,
        # so the next reply goes to it and is dropped. Real servers answer every command.
        fake_broker.conns[0].writer.write(b"OK pong\n")
        assert await c.history("chat", 5) == []


async def test_groups_dlq_and_replay(fake_broker: FakeBroker) -> None:
    async with Client(port=fake_broker.port) as c:
        groups = await c.groups("jobs")
        letters = await c.dlq("jobs", 5)
        assert await c.replay("jobs", all=True) == 1
        with pytest.warns(DeprecationWarning, match="all=True"):
            assert await c.replay("jobs", "ALL") == 1  # the old call still works
        with pytest.raises(ValueError):
            await c.replay("jobs")
        with pytest.raises(BrokerError, match="not found"):
            await c.replay("jobs", "msg_unknown")
    assert [(g.group, g.members, g.lag) for g in groups] == [("workers", 2, 3), ("audit", 1, 0)]
    assert [(d.dlq_offset, d.id, d.reason, d.attempts) for d in letters] == [
        (1, "msg_1_dead0001", "nacked", 5)
    ]
    assert "DLQ jobs 5" in fake_broker.received


async def test_connect_to_closed_port_raises_connection_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(ConnectionError):
        await Client(port=port).connect()


def test_heartbeat_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="heartbeat_interval"):
        Client(heartbeat_interval=0)
