"""Start positions (earliest, offsets, times), SEEK, and wildcard subscriptions."""

from __future__ import annotations

import asyncio
import time

from linemq.broker.server.app import Broker
from tests.conftest import BrokerFactory
from tests.server.groupwire import member, next_msg, parse_msg
from tests.wire import Wire


async def publish(port: int, topic: str, texts: list[str]) -> None:
    w = await Wire.open(port)
    await w.send("".join(f"PUB {topic} {t}\n" for t in texts))
    assert await w.lines(len(texts)) == ["OK published"] * len(texts)
    await w.close()


async def test_fanout_from_earliest_replays_then_goes_live_without_a_gap(broker: Broker) -> None:
    await publish(broker.port, "t", [f"old{i}" for i in range(3000)])
    sub = await Wire.open(broker.port)
    assert await sub.cmd("SUB t from=earliest") == "OK subscribed t"
    live = asyncio.create_task(publish(broker.port, "t", [f"new{i}" for i in range(500)]))
    got = [parse_msg(await sub.line()) for _ in range(3500)]
    await live
    assert [d.offset for d in got] == list(range(1, 3501))
    assert await sub.silent(0.1)


async def test_fanout_from_an_offset_and_from_a_time(broker: Broker) -> None:
    await publish(broker.port, "t", ["a", "b", "c"])
    await asyncio.sleep(0.05)
    middle = time.time()
    await asyncio.sleep(0.05)
    await publish(broker.port, "t", ["d", "e"])
    sub = await Wire.open(broker.port)
    assert await sub.cmd("SUB t from=2") == "OK subscribed t"
    assert [(await next_msg(sub)).text for _ in range(4)] == ["b", "c", "d", "e"]
    other = await Wire.open(broker.port)
    assert await other.cmd(f"SUB t from=time:{middle}") == "OK subscribed t"
    assert [(await next_msg(other)).text for _ in range(2)] == ["d", "e"]
    assert await other.silent(0.05)
    assert await other.cmd("SUB u from=yesterday") == (
        "ERR position must be earliest, latest, an offset, time:<epoch seconds> or ago:<duration>"
    )


async def test_new_group_from_earliest_gets_the_backlog(broker: Broker) -> None:
    await publish(broker.port, "jobs", ["j1", "j2"])
    m = await Wire.open(broker.port)
    assert await m.cmd("SUB jobs late from=earliest") == "OK subscribed jobs in group late"
    assert [(await next_msg(m)).text for _ in range(2)] == ["j1", "j2"]
    fresh = await member(broker.port, "jobs", "fresh")  # default: latest
    assert await fresh.silent(0.1)


async def test_seek_replays_a_group(brokers: BrokerFactory) -> None:
    broker = await brokers.start(max_inflight=10)
    m = await member(broker.port, "jobs", "g")
    await publish(broker.port, "jobs", ["a", "b", "c"])
    for d in [await next_msg(m) for _ in range(3)]:
        assert await m.cmd(f"ACK {d.id}") == "OK ack_received"
    assert await m.cmd("SEEK jobs g 2") == "OK seek jobs g 2"
    assert [(await next_msg(m)).text for _ in range(2)] == ["b", "c"]
    assert await m.cmd("SEEK jobs nope earliest") == "ERR no group nope on jobs"
    broker = await brokers.restart(broker)
    m = await member(broker.port, "jobs", "g")
    # The unacked replays are redelivered after the restart: SEEK is durable.
    assert sorted([(await next_msg(m)).text for _ in range(2)]) == ["b", "c"]


async def test_wildcard_fanout(broker: Broker) -> None:
    star = await Wire.open(broker.port)
    assert await star.cmd("SUB orders.*") == "OK subscribed orders.*"
    deep = await Wire.open(broker.port)
    assert await deep.cmd("SUB orders.>") == "OK subscribed orders.>"
    both = await Wire.open(broker.port)
    assert await both.cmd("SUB orders.eu") == "OK subscribed orders.eu"
    assert await both.cmd("SUB orders.*") == "OK subscribed orders.*"
    await publish(broker.port, "orders.eu", ["1"])
    await publish(broker.port, "orders.eu.fr", ["2"])
    await publish(broker.port, "payments", ["3"])
    assert (await next_msg(star)).topic == "orders.eu"
    assert await star.silent(0.1)
    assert [(await next_msg(deep)).topic for _ in range(2)] == ["orders.eu", "orders.eu.fr"]
    assert (await next_msg(both)).topic == "orders.eu"
    assert await both.silent(0.1), "no duplicate when two subscriptions match"
    assert await both.cmd("SUB bad.*x") == "ERR invalid topic name"


async def test_wildcard_group_covers_topics_that_appear_later_even_offline(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start()
    m = await member(broker.port, "orders.*", "billing")
    await publish(broker.port, "orders.eu", ["e1"])
    assert (await next_msg(m)).topic == "orders.eu"
    await m.close()
    broker = await brokers.restart(broker)
    # No member connected: a brand-new matching topic still gets the group.
    await publish(broker.port, "orders.us", ["u1", "u2"])
    m = await member(broker.port, "orders.*", "billing")
    got = sorted((d.topic, d.text) for d in [await next_msg(m) for _ in range(3)])
    assert got == [("orders.eu", "e1"), ("orders.us", "u1"), ("orders.us", "u2")]
    assert await m.cmd("UNSUB orders.* billing") == ("OK unsubscribed orders.* from group billing")


async def test_wildcard_fanout_stays_exact_while_others_churn_patterns(broker: Broker) -> None:
    star = await Wire.open(broker.port)
    assert await star.cmd("SUB orders.*") == "OK subscribed orders.*"
    await publish(broker.port, "orders.eu", ["0"])
    assert (await next_msg(star)).text == "0"
    churn = await Wire.open(broker.port)
    await churn.send("SUB orders.*\nUNSUB orders.*\nSUB >\nUNSUB >\n" * 200)
    assert (
        await churn.lines(800)
        == [
            "OK subscribed orders.*",
            "OK unsubscribed orders.*",
            "OK subscribed >",
            "OK unsubscribed >",
        ]
        * 200
    )
    await publish(broker.port, "orders.eu", ["1"])
    assert (await next_msg(star)).text == "1"
    assert await churn.silent(0.1), "unsubscribed patterns deliver nothing"
    assert await churn.cmd("SUB *.eu") == "OK subscribed *.eu"
    await publish(broker.port, "orders.eu", ["2"])
    assert (await next_msg(churn)).text == "2"
    assert (await next_msg(star)).text == "2"
    assert await star.cmd("UNSUB orders.*") == "OK unsubscribed orders.*"
    await publish(broker.port, "orders.eu", ["3"])
    assert (await next_msg(churn)).text == "3"
    assert await star.silent(0.1)
