"""The one deliver path: a redelivery and fresh messages leave in one pass, each its attempt."""

from __future__ import annotations

from linemq.broker.server.app import Broker
from tests.server.v2wire import read_frame
from tests.wire import Wire


async def test_a_retry_and_fresh_messages_in_one_pass_keep_order_and_attempts(
    broker: Broker,
) -> None:
    w = await Wire.open(broker.port)
    assert await w.cmd("HELLO 2") == "OK hello 2"
    assert await w.cmd("SUB t g") == "OK subscribed t in group g"
    pub = await Wire.open(broker.port)
    assert await pub.cmd("PUB t m1") == "OK published"
    first = await read_frame(w)
    assert (first.offset, first.attempt) == (1, 1)
    assert await pub.cmd("PAUSE t g") == "OK paused t g"
    assert await w.cmd(f"NACK {first.id} 0") == "OK nack_received"
    assert await pub.cmd("PUB t m2") == "OK published"
    assert await pub.cmd("PUB t m3") == "OK published"
    assert await w.silent(0.1)
    assert await pub.cmd("RESUME t g") == "OK resumed t g"
    got = [await read_frame(w) for _ in range(3)]
    assert [(f.payload, f.attempt) for f in got] == [(b"m1", 2), (b"m2", 1), (b"m3", 1)]
    for f in got:
        assert await w.cmd(f"ACK {f.id}") == "OK ack_received"
    assert broker.router.groups["t"]["g"].counters()["redelivered"] == 1
