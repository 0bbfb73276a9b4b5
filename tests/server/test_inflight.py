"""Many messages in flight at once: acks in any order, and everything else that can
happen to a held message, each counted once (see broker/delivery/holdings.py)."""

from __future__ import annotations

import random
import time

from tests.conftest import BrokerFactory
from tests.server.groupwire import Delivery, member, next_msg, parse_msg
from tests.wire import Wire, group_figures


async def groups_line(port: int, topic: str) -> str:
    w = await Wire.open(port)
    await w.send(f"GROUPS {topic}\n")
    line, end = await w.lines(2)
    assert end == "OK groups end"
    await w.close()
    return line


async def test_many_in_flight_acked_in_any_order_each_count_once(brokers: BrokerFactory) -> None:
    broker = await brokers.start(max_inflight=200)
    m = await member(broker.port, "q", "g")
    pub = await Wire.open(broker.port)
    await pub.send("".join(f"PUB q m{i}\n" for i in range(200)))
    await pub.lines(200)
    held = [await next_msg(m) for _ in range(200)]
    assert group_figures(await groups_line(broker.port, "q")) == (
        "GROUP q g members=1 inflight=200 waiting=0 lag=200 acked=0 dead=0 next_offset=201 paused=0"
    )
    # The first fifty in order in one read, the rest shuffled, some reads with a late repeat.
    order = held[:50] + random.Random(7).sample(held[50:], 150)
    for start in range(0, 200, 50):
        part = order[start : start + 50]
        await m.send("".join(f"ACK {d.id}\n" for d in part) + f"ACK {part[0].id}\n")
        assert await m.lines(51) == ["OK ack_received"] * 50 + [
            f"ERR message {part[0].id} not found in pending messages (already acknowledged)"
        ]
    assert group_figures(await groups_line(broker.port, "q")) == (
        "GROUP q g members=1 inflight=0 waiting=0 lag=0 acked=200 dead=0 next_offset=201 paused=0"
    )
    assert await m.silent(0.2)  # nothing comes back
    assert await pub.cmd("PUB q after") == "OK published"
    assert (await next_msg(m)).text == "after"


async def test_nack_touch_and_timeout_among_acked_neighbours(brokers: BrokerFactory) -> None:
    """Held messages next to each other take different ways; the acked ones stay acked."""
    broker = await brokers.start(max_inflight=10, ack_timeout=0.3)
    m = await member(broker.port, "q", "g")
    pub = await Wire.open(broker.port)
    await pub.send("".join(f"PUB q m{i}\n" for i in range(6)))
    await pub.lines(6)
    d = [await next_msg(m) for _ in range(6)]
    await m.send(f"ACK {d[0].id}\nACK {d[1].id}\nNACK {d[2].id}\nTOUCH {d[3].id}\nACK {d[4].id}\n")
    replies = []
    again: list[Delivery] = []
    while len(replies) < 8:  # the five answers, then an ack of each message that comes back
        line = await m.line()
        if line.startswith("MSG "):
            again.append(parse_msg(line))
            await m.send(f"ACK {again[-1].id}\n")
        else:
            replies.append(line)
    assert replies[:5] == [
        "OK ack_received",
        "OK ack_received",
        "OK nack_received",
        "OK touched",
        "OK ack_received",
    ]
    assert replies[5:] == ["OK ack_received"] * 3
    # The nacked one at once; the untouched one and the touched one when their time is up.
    assert again[0].offset == d[2].offset
    assert sorted(x.offset for x in again) == [d[2].offset, d[3].offset, d[5].offset]
    assert "inflight=0 waiting=0 lag=0 acked=6" in await groups_line(broker.port, "q")


async def test_messages_with_ids_of_another_shape_are_held_and_acked(
    brokers: BrokerFactory,
) -> None:
    """Records this broker did not write (say, a log brought over from elsewhere) may have
    any id; such messages are held like the others."""
    broker = await brokers.start(max_inflight=10)
    first = await member(broker.port, "q", "g")  # the group, from the next message on
    assert await first.cmd("UNSUB q g") == "OK unsubscribed q from group g"
    pub = await Wire.open(broker.port)
    assert await pub.cmd("PUB q ours") == "OK published"
    log = broker.store.topic("q")
    log.append("legacy", time.time(), "legacy-0001")
    log.append("accented", time.time(), "msg_1764776036123_0000000\xe9")
    broker = await brokers.restart(broker)
    m = await member(broker.port, "q", "g")
    d = [await next_msg(m) for _ in range(3)]
    assert [x.id for x in d[1:]] == ["legacy-0001", "msg_1764776036123_0000000\xe9"]
    await m.send("".join(f"ACK {x.id}\n" for x in reversed(d)) + f"ACK {d[1].id}\n")
    assert await m.lines(4) == ["OK ack_received"] * 3 + [
        "ERR message legacy-0001 not found in pending messages (already acknowledged)"
    ]
    assert "inflight=0 waiting=0 lag=0 acked=3" in await groups_line(broker.port, "q")


async def test_seek_takes_back_what_is_held_and_delivers_it_again(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(max_inflight=10)
    m = await member(broker.port, "q", "g")
    pub = await Wire.open(broker.port)
    await pub.send("PUB q a\nPUB q b\nPUB q c\n")
    await pub.lines(3)
    held = [await next_msg(m) for _ in range(3)]
    assert await m.cmd("SEEK q g 2") == "OK seek q g 2"
    again = [await next_msg(m) for _ in range(2)]
    assert [(x.id, x.text) for x in again] == [(x.id, x.text) for x in held[1:]]
    await m.send(f"ACK {held[0].id}\nACK {again[0].id}\nACK {again[1].id}\n")
    assert await m.lines(3) == [
        f"ERR message {held[0].id} not found in pending messages (group was reset with SEEK)",
        "OK ack_received",
        "OK ack_received",
    ]
    assert "inflight=0 waiting=0 lag=0 acked=2" in await groups_line(broker.port, "q")
