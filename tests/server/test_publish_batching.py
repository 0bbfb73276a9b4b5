"""PUBs to many topics in one read, and from many connections in one tick, are one batch:
the replies are those line-by-line publishing gives, in order, and each topic keeps its
messages in order with offsets from 1 and no gap."""

from __future__ import annotations

import asyncio

from linemq.broker.server.app import Broker
from tests.wire import Wire


async def history(w: Wire, topic: str, n: int) -> list[tuple[int, str]]:
    await w.send(f"HISTORY {topic} {n}\n")
    lines = await w.until("OK history end")
    return [(int(p[3]), p[5]) for p in (line.split(" ", 5) for line in lines[:-1])]


async def test_a_read_of_pubs_spread_over_topics_is_answered_in_order(broker: Broker) -> None:
    w = await Wire.open(broker.port)
    topics = [f"t{i}" for i in range(7)]
    for t in topics:  # the first PUB to a topic takes the general path: vet them all
        assert await w.cmd(f"PUB {t} first") == "OK published"
    pubs = [f"PUB {topics[i % 7]} m{i}\n" for i in range(700)]
    odd = ["PING\n", "PUB t3\n"]
    data = "".join(pubs[:300]) + odd[0] + "".join(pubs[300:500]) + odd[1] + "".join(pubs[500:])
    await w.send(data.encode() + b"PUB t1 \xff\nPUB t2 last\n")
    got = await w.lines(704)
    assert got[:300] == ["OK published"] * 300
    assert got[300] == "OK pong"
    assert got[301:501] == ["OK published"] * 200
    assert got[501] == "ERR usage: PUB <topic> <message>"
    assert got[502:702] == ["OK published"] * 200
    assert got[702] == "ERR invalid utf-8"
    assert got[703] == "OK published"
    for k, t in enumerate(topics):
        stored = await history(w, t, 1000)
        want = ["first"] + [f"m{i}" for i in range(k, 700, 7)] + (["last"] if t == "t2" else [])
        assert [m for _, m in stored] == want
        assert [o for o, _ in stored] == list(range(1, len(want) + 1))


async def test_connections_publishing_to_shared_topics_get_gap_free_offsets(
    broker: Broker,
) -> None:
    """Four pipelining connections over ten topics: every PUB answered, every message
    stored once, each topic's offsets 1..n in the order each connection sent."""
    conns = [await Wire.open(broker.port) for _ in range(4)]
    topics = [f"s{i}" for i in range(10)]

    async def publish(c: int, w: Wire) -> None:
        for t in topics:
            assert await w.cmd(f"PUB {t} c{c}-first") == "OK published"
        for burst in range(5):
            lines = [f"PUB {topics[(i + c) % 10]} c{c}-{burst}-{i}\n" for i in range(200)]
            await w.send("".join(lines))
            assert await w.lines(200) == ["OK published"] * 200

    await asyncio.gather(*(publish(c, w) for c, w in enumerate(conns)))
    total = 0
    for t in topics:
        stored = await history(conns[0], t, 10_000)
        assert [o for o, _ in stored] == list(range(1, len(stored) + 1))
        for c in range(4):
            mine = [m for _, m in stored if m.startswith(f"c{c}-")]
            sent = [f"c{c}-first"] + [
                f"c{c}-{b}-{i}" for b in range(5) for i in range(200) if topics[(i + c) % 10] == t
            ]
            assert mine == sent
        total += len(stored)
    assert total == 4 * (10 + 1000)


async def test_a_command_after_pubs_to_several_topics_sees_them(broker: Broker) -> None:
    """PUBs spread over topics are appended together, yet before anything sent after
    them: a HISTORY includes them, a PUT comes after them, a new group starts past them."""
    w = await Wire.open(broker.port)
    for t in ("x", "y"):
        assert await w.cmd(f"PUB {t} first") == "OK published"
    await w.send(b"PUB x a\nPUB y b\nHISTORY x 10\nPUB y c\nPUB x d\nPUT x 1\ne\n")
    await w.send(b"PUB x f\nPUB y g\n")
    got = await w.lines(8)
    assert got[:2] == ["OK published"] * 2
    assert [line.rsplit(" ", 1)[1] for line in got[2:4]] == ["first", "a"]
    assert got[4] == "OK history end"
    assert got[5:7] == ["OK published"] * 2
    assert got[7].startswith("OK published 4 ")  # x: first, a, d, then e
    assert await w.lines(2) == ["OK published"] * 2
    assert [m for _, m in await history(w, "x", 10)] == ["first", "a", "d", "e", "f"]
    await w.send(b"PUB x h\nPUB y i\nSUB x late\nPUB y j\nPUB x k\n")
    assert await w.lines(3) == ["OK published", "OK published", "OK subscribed x in group late"]
    assert await w.lines(2) == ["OK published"] * 2
    msg = await w.line()
    assert msg.startswith("MSG x ") and msg.endswith(" k"), msg
