"""Protocol v2: counted payloads, headers, keys, delays, TTL, priorities, idempotent publish."""

from __future__ import annotations

import asyncio
import json
import re
import time

from linemq.broker.server.app import Broker
from tests.conftest import BrokerFactory
from tests.server.groupwire import member, next_msg
from tests.server.v2wire import put, read_frame
from tests.wire import Wire

PUBLISHED = re.compile(r"^OK published (\d+) (msg_\d{13}_[0-9a-f]{8})$")


async def v2_member(port: int, topic: str, group: str | None = None) -> Wire:
    w = await Wire.open(port)
    assert await w.cmd("HELLO 2") == "OK hello 2"
    sub = f"SUB {topic}" + (f" {group}" if group else "")
    assert (await w.cmd(sub)).startswith(f"OK subscribed {topic}")
    return w


async def test_binary_payloads_with_headers_reach_v2_and_v1_subscribers(broker: Broker) -> None:
    v2 = await v2_member(broker.port, "bin")
    v1 = await Wire.open(broker.port)
    assert await v1.cmd("SUB bin") == "OK subscribed bin"
    pub = await Wire.open(broker.port)
    payload = b"line one\nline\x00two\r\n\xff\xfe"
    reply = await put(
        pub, "bin", payload, "h.content-type=application/octet-stream", "h.note=a%20b"
    )
    m = PUBLISHED.match(reply)
    assert m and m.group(1) == "1"
    frame = await read_frame(v2)
    assert (frame.kind, frame.topic, frame.offset, frame.attempt) == ("MSG2", "bin", 1, 1)
    assert frame.id == m.group(2) and frame.payload == payload
    assert frame.options == {"h.content-type": "application/octet-stream", "h.note": "a%20b"}
    # A v1 subscriber still gets one line: invalid bytes replaced, CR/LF escaped.
    line = await v1.line()
    assert line.startswith(f"MSG bin {m.group(2)} 1 ")
    assert line.split(" ", 5)[5] == "line one\\nline\x00two\\r\\n\ufffd\ufffd"
    # HISTORY after HELLO 2 is framed too, and ends with the usual line.
    await v2.send("HISTORY bin 5\n")
    history = await read_frame(v2)
    assert history.kind == "HISTORY2" and history.payload == payload
    assert await v2.line() == "OK history end"
    assert await pub.cmd("PING") == "OK pong"


async def test_plain_text_put_and_pub_interoperate(broker: Broker) -> None:
    v2 = await v2_member(broker.port, "chat")
    pub = await Wire.open(broker.port)
    assert PUBLISHED.match(await put(pub, "chat", "héllo".encode(), "key=user-1"))
    assert await pub.cmd("PUB chat plain") == "OK published"
    a, b = await read_frame(v2), await read_frame(v2)
    assert a.payload == "héllo".encode() and a.options == {"key": "user-1"}
    assert b.payload == b"plain" and b.options == {}
    await pub.send("HISTORY chat 2\n")
    lines = await pub.until("OK history end")
    assert [x.split(" ", 5)[5] for x in lines[:-1]] == ["héllo", "plain"]


async def test_put_errors_keep_the_stream_in_sync(brokers: BrokerFactory) -> None:
    broker = await brokers.start(max_message_bytes=10)
    w = await Wire.open(broker.port)
    assert await put(w, "t", b"x" * 11) == "ERR message too large (limit 10 bytes)"
    assert await w.cmd("PING") == "OK pong"
    await w.send(b"PUT t 3\nabcPING\n")
    assert await w.line() == "ERR payload must be followed by a newline"
    assert await w.line() == "OK pong"  # what followed the payload was read as a line
    assert await put(w, "t", b"ok", "priority=urgent") == (
        "ERR invalid option: priority=urgent (low, normal, high, critical or 0-3)"
    )
    assert await put(w, "t", b"ok", "bogus") == "ERR invalid option: bogus"
    assert await w.cmd("PUT t many") == "ERR nbytes must be a non-negative integer"
    assert await w.cmd("HELLO 3") == "ERR usage: HELLO 1|2"
    assert await w.cmd("PING") == "OK pong"


async def test_idempotent_publish_is_stored_once_even_across_a_restart(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start()
    w = await Wire.open(broker.port)
    first = await put(w, "orders", b"charge 42", "id=order-42")
    m = PUBLISHED.match(first)
    assert m
    assert await put(w, "orders", b"charge 42", "id=order-42") == (
        f"OK duplicate {m.group(1)} {m.group(2)}"
    )
    # Pipelined duplicates in one read are still caught.
    await w.send(b"PUT orders 1 id=x\na\nPUT orders 1 id=x\na\n")
    a, b = await w.line(), await w.line()
    assert a.startswith("OK published 2 ") and b == "OK duplicate 2 " + a.split()[3]
    broker = await brokers.restart(broker)
    w = await Wire.open(broker.port)
    assert await put(w, "orders", b"charge 42", "id=order-42") == (
        f"OK duplicate {m.group(1)} {m.group(2)}"
    )
    await w.send("HISTORY orders 10\n")
    assert len(await w.until("OK history end")) == 3


async def test_dedup_window_expires(brokers: BrokerFactory) -> None:
    broker = await brokers.start(dedup_window=0.2)
    w = await Wire.open(broker.port)
    assert (await put(w, "t", b"a", "id=k")).startswith("OK published 1 ")
    await asyncio.sleep(0.25)
    assert (await put(w, "t", b"a", "id=k")).startswith("OK published 2 ")


async def test_priorities_order_ready_messages_also_after_a_restart(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(max_inflight=1, ack_timeout=10)
    m = await member(broker.port, "jobs", "workers")
    assert await m.cmd("UNSUB jobs workers") == "OK unsubscribed jobs from group workers"
    pub = await Wire.open(broker.port)
    for text, prio in [("l", "low"), ("n1", "normal"), ("h", "high"), ("c", "critical"),
                       ("n2", "normal")]:  # fmt: skip
        assert PUBLISHED.match(await put(pub, "jobs", text.encode(), f"priority={prio}"))
    broker = await brokers.restart(broker)
    m = await member(broker.port, "jobs", "workers")
    order = []
    for _ in range(5):
        d = await next_msg(m)
        order.append(d.text)
        assert await m.cmd(f"ACK {d.id}") == "OK ack_received"
    assert order == ["c", "h", "n1", "n2", "l"]


async def test_a_priority_message_goes_before_the_plain_ones_published_ahead_of_it(
    brokers: BrokerFactory,
) -> None:
    """Plain messages go from the log straight to members, skipping the scheduler; one
    with a priority behind them in the log turns that off until the group passes it."""
    broker = await brokers.start(max_inflight=1, ack_timeout=10)
    m = await member(broker.port, "jobs", "workers")
    assert await m.cmd("UNSUB jobs workers") == "OK unsubscribed jobs from group workers"
    pub = await Wire.open(broker.port)
    await pub.send("PUB jobs p0\nPUB jobs p1\n")
    assert await pub.lines(2) == ["OK published"] * 2
    assert PUBLISHED.match(await put(pub, "jobs", b"urgent", "priority=critical"))
    assert await pub.cmd("PUB jobs p2") == "OK published"
    m = await member(broker.port, "jobs", "workers")
    order = []
    for _ in range(4):
        d = await next_msg(m)
        order.append(d.text)
        assert await m.cmd(f"ACK {d.id}") == "OK ack_received"
    assert order == ["urgent", "p0", "p1", "p2"]
    assert await pub.cmd("PUB jobs p3") == "OK published"
    assert (await next_msg(m)).text == "p3"


async def test_delayed_messages_wait_even_across_a_restart(brokers: BrokerFactory) -> None:
    broker = await brokers.start()
    m = await member(broker.port, "q", "g")
    pub = await Wire.open(broker.port)
    start = time.time()
    assert PUBLISHED.match(await put(pub, "q", b"later", "delay=600ms"))
    assert await pub.cmd("PUB q now") == "OK published"
    now = await next_msg(m)
    assert now.text == "now"
    assert await m.cmd(f"ACK {now.id}") == "OK ack_received"
    broker = await brokers.restart(broker)
    m = await member(broker.port, "q", "g")
    d = await next_msg(m, timeout=3)
    assert d.text == "later" and time.time() - start >= 0.59
    at = time.time() + 0.3
    assert PUBLISHED.match(await put(await Wire.open(broker.port), "q", b"at", f"at={at}"))
    d = await next_msg(m, timeout=3)
    assert d.text == "at" and time.time() >= at - 0.01


async def test_expired_messages_are_not_delivered(brokers: BrokerFactory) -> None:
    broker = await brokers.start()
    pub = await Wire.open(broker.port)
    m = await member(broker.port, "q", "g")
    assert await m.cmd("UNSUB q g") == "OK unsubscribed q from group g"
    assert PUBLISHED.match(await put(pub, "q", b"stale", "ttl=100ms"))
    assert PUBLISHED.match(await put(pub, "q", b"fresh", "ttl=1h"))
    await asyncio.sleep(0.15)
    m = await member(broker.port, "q", "g")
    assert (await next_msg(m)).text == "fresh"
    assert await m.silent(0.1)
    await pub.send("STATS q\n")
    lines = await pub.until("OK stats end")
    assert " expired=1" in lines[-2]


async def test_expired_messages_can_be_dead_lettered(brokers: BrokerFactory) -> None:
    broker = await brokers.start(dead_letter_expired=True)
    pub = await Wire.open(broker.port)
    m = await member(broker.port, "q", "g")
    assert await m.cmd("UNSUB q g") == "OK unsubscribed q from group g"
    assert PUBLISHED.match(await put(pub, "q", b"stale", "ttl=50ms"))
    await asyncio.sleep(0.1)
    assert await pub.cmd("SUB q.dlq") == "OK subscribed q.dlq"
    await member(broker.port, "q", "g")
    letter = json.loads((await next_msg(pub)).text)
    assert letter["reason"] == "expired" and letter["msg"] == "stale" and letter["attempts"] == 0


async def test_same_key_never_in_flight_at_once_and_retries_hold_the_key(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(max_inflight=10, ack_timeout=10)
    consumers = [await member(broker.port, "acct", "ledger") for _ in range(3)]
    inbox: asyncio.Queue[tuple[Wire, list[str]]] = asyncio.Queue()

    async def read(w: Wire) -> None:
        while True:
            line = await w.line(timeout=30)
            if line.startswith("MSG "):
                await inbox.put((w, line.split(" ", 5)))

    readers = [asyncio.create_task(read(c)) for c in consumers]
    try:
        pub = await Wire.open(broker.port)
        for i in range(3):
            for key in ("A", "B"):
                reply = await put(pub, "acct", f"{key}{i}".encode(), f"key={key}")
                assert PUBLISHED.match(reply)
        assert PUBLISHED.match(await put(pub, "acct", b"free"))

        async def take() -> tuple[Wire, str, str]:
            w, parts = await asyncio.wait_for(inbox.get(), 3)
            return w, parts[5], parts[2]

        first = {}
        for _ in range(3):
            w, text, id = await take()
            first[text] = (w, id)
        assert set(first) == {"A0", "B0", "free"}, "one message per key in flight"
        with_nothing_else = inbox.empty()
        await asyncio.sleep(0.1)
        assert with_nothing_else and inbox.empty()
        # NACK A0 with a delay: A1 waits for A0's retry; B goes on meanwhile.
        w, id = first["A0"]
        await w.send(f"NACK {id} 0.3\n")
        for text in ("B0", "free"):
            w, id = first[text]
            await w.send(f"ACK {id}\n")
        seen = []
        while len(seen) < 5:
            w, text, id = await take()
            seen.append(text)
            await w.send(f"ACK {id}\n")
        assert [t for t in seen if t.startswith("A")] == ["A0", "A1", "A2"], seen
        assert [t for t in seen if t.startswith("B")] == ["B1", "B2"], seen
        assert seen.index("B1") < seen.index("A0"), "other keys are not held back"
    finally:
        for r in readers:
            r.cancel()


async def test_a_binary_dead_letter_replays_with_its_exact_payload(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(ack_timeout=0.05, max_retries=0)
    m = await v2_member(broker.port, "bin", "g")
    ops = await Wire.open(broker.port)
    assert await ops.cmd("SUB bin.dlq") == "OK subscribed bin.dlq"
    payload = b"\x00\x01\nbinary\xff"
    assert PUBLISHED.match(await put(ops, "bin", payload, "key=k1", "h.a=b", "delay=1ms"))
    first = await read_frame(m)
    assert first.payload == payload
    letter = json.loads((await next_msg(ops)).text)
    assert letter["original"]["k"] == "k1" and letter["original"]["h"] == {"a": "b"}
    assert await ops.cmd("REPLAY bin ALL") == "OK replayed 1"
    again = await read_frame(m)
    assert again.payload == payload and again.offset == 2
    assert again.options == {"key": "k1", "h.a": "b"}
