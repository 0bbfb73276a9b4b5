"""``SUB <topic> <group> ordering=fifo``: a retried message holds back every later one of the
group, through backoff, restarts and dead-lettering, over real sockets."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.conftest import BrokerFactory, BrokerProcess
from tests.server.groupwire import next_msg
from tests.wire import Wire


async def fifo_member(port: int, topic: str = "q", group: str = "g") -> Wire:
    w = await Wire.open(port)
    assert await w.cmd(f"SUB {topic} {group} ordering=fifo") == (
        f"OK subscribed {topic} in group {group}"
    )
    return w


async def publish(port: int, *texts: str) -> None:
    pub = await Wire.open(port)
    await pub.send("".join(f"PUB q {t}\n" for t in texts))
    assert await pub.lines(len(texts)) == ["OK published"] * len(texts)
    await pub.close()


async def test_a_nacked_message_holds_back_the_later_ones_through_its_backoff(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(max_inflight=10)
    m = await fifo_member(broker.port)
    await publish(broker.port, "m0", "m1", "m2")
    first = await next_msg(m)
    assert first.text == "m0"
    assert await m.silent(0.2)  # one message out at a time, whatever the room
    assert await m.cmd(f"NACK {first.id} 0.4") == "OK nack_received"
    assert await m.silent(0.25)  # m1 waits behind m0's backoff
    again = await next_msg(m)
    assert (again.text, again.id) == ("m0", first.id)
    assert await m.silent(0.1)
    got = []
    for d in (again, None, None):
        d = d or await next_msg(m)
        got.append(d.text)
        assert await m.cmd(f"ACK {d.id}") == "OK ack_received"
    assert got == ["m0", "m1", "m2"]


async def test_a_timed_out_head_goes_to_another_member_before_the_next(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(max_inflight=10, ack_timeout=0.3, retry_backoff_base=0.01)
    a = await fifo_member(broker.port)
    await publish(broker.port, "m0", "m1")
    assert (await next_msg(a)).text == "m0"
    b = await fifo_member(broker.port)
    assert await b.silent(0.1)
    await a.close()  # a dies holding m0: it goes back first, to b
    d = await next_msg(b)
    assert d.text == "m0"
    assert await b.cmd(f"ACK {d.id}") == "OK ack_received"
    assert (await next_msg(b)).text == "m1"


async def test_when_the_head_is_dead_lettered_the_next_one_goes(brokers: BrokerFactory) -> None:
    broker = await brokers.start(max_inflight=10, max_retries=1)
    m = await fifo_member(broker.port)
    await publish(broker.port, "m0", "m1")
    for _ in range(2):
        d = await next_msg(m)
        assert d.text == "m0"
        assert await m.cmd(f"NACK {d.id} 0") == "OK nack_received"
    assert (await next_msg(m)).text == "m1"  # m0 is out of retries: a dead letter
    ops = await Wire.open(broker.port)
    await ops.send("DLQ q\n")
    letters = [json.loads(line.split(" ", 3)[3]) for line in (await ops.until("OK dlq end"))[:-1]]
    assert [x["msg"] for x in letters] == ["m0"]


async def test_fifo_survives_kill9_with_the_head_in_flight_and_in_backoff(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    args = ("--max-inflight", "10", "--ack-timeout", "30")
    proc = broker_process(*args)
    m = await fifo_member(proc.port)
    await publish(proc.port, "m0", "m1", "m2")
    head = await next_msg(m)
    assert head.text == "m0"
    proc.kill9()  # m0 in flight: after the restart it goes first, and alone
    proc = broker_process(*args)
    m = await Wire.open(proc.port)
    assert await m.cmd("SUB q g") == "OK subscribed q in group g"  # the group is still FIFO
    again = await next_msg(m)
    assert (again.text, again.id) == ("m0", head.id)
    assert await m.silent(0.2)
    assert await m.cmd(f"NACK {again.id} 3") == "OK nack_received"
    proc.kill9()  # m0 waits for its retry: m1 still waits behind it
    proc = broker_process(*args)
    m = await fifo_member(proc.port)
    assert await m.silent(0.3)
    third = await next_msg(m)
    assert third.text == "m0"
    assert await m.cmd(f"ACK {third.id}") == "OK ack_received"
    assert (await next_msg(m)).text == "m1"


async def test_ordering_is_checked_and_a_groups_ordering_is_kept(brokers: BrokerFactory) -> None:
    broker = await brokers.start()
    w = await Wire.open(broker.port)
    assert await w.cmd("SUB q g ordering=lifo") == "ERR ordering must be none, key or fifo"
    assert await w.cmd("SUB q.* g ordering=fifo") == (
        "ERR ordering= is not supported for wildcard groups"
    )
    assert await w.cmd("SUB q plain") == "OK subscribed q in group plain"
    assert await w.cmd("SUB q plain ordering=fifo") == "ERR group plain on q has ordering=key"
    assert await w.cmd("SUB q plain ordering=key") == "OK subscribed q in group plain"
    other = await Wire.open(broker.port)
    assert await other.cmd("SUB q plain ordering=fifo") == ("ERR group plain on q has ordering=key")
    assert await other.cmd("SUB q g from=earliest ordering=fifo") == "OK subscribed q in group g"
    assert await w.cmd("SUB q g ordering=none") == "ERR group g on q has ordering=fifo"
    assert await w.cmd("PING") == "OK pong"
