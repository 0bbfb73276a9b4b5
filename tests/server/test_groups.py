"""Consumer groups: balance, exactly-once per group under stress, backlog, GROUPS."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from linemq.broker.delivery import lifecycle
from linemq.broker.server.app import Broker
from tests.conftest import BrokerFactory
from tests.server.groupwire import member, next_msg, parse_msg
from tests.wire import Wire, group_figures


async def test_round_robin_balances_three_members(brokers: BrokerFactory) -> None:
    broker = await brokers.start(max_inflight=100, ack_timeout=10)
    members = [await member(broker.port, "jobs", "workers") for _ in range(3)]
    pub = await Wire.open(broker.port)
    await pub.send("".join(f"PUB jobs job-{i}\n" for i in range(30)))
    assert await pub.lines(30) == ["OK published"] * 30
    got = [[await next_msg(m) for _ in range(10)] for m in members]
    for m in members:
        assert await m.silent(0.05)
    offsets = sorted(d.offset for ds in got for d in ds)
    assert offsets == list(range(1, 31))
    for ds in got:  # each member's share arrives in offset order
        assert [d.offset for d in ds] == sorted(d.offset for d in ds)


async def test_each_message_goes_to_one_member_of_each_group(broker: Broker) -> None:
    a = [await member(broker.port, "t", "alpha") for _ in range(2)]
    b = await member(broker.port, "t", "beta")
    fan = await Wire.open(broker.port)
    assert await fan.cmd("SUB t") == "OK subscribed t"
    pub = await Wire.open(broker.port)
    await pub.send("PUB t one\nPUB t two\n")
    await pub.lines(2)
    alpha = [await next_msg(a[0]), await next_msg(a[1])]
    assert sorted(d.text for d in alpha) == ["one", "two"]
    assert [(await next_msg(b)).text for _ in range(2)] == ["one", "two"]
    assert [(await next_msg(fan)).text for _ in range(2)] == ["one", "two"]


async def test_members_get_at_most_max_inflight_and_the_rest_waits(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(max_inflight=5, ack_timeout=10)
    m = await member(broker.port, "q", "g")
    pub = await Wire.open(broker.port)
    await pub.send("".join(f"PUB q {i}\n" for i in range(12)))
    await pub.lines(12)
    first = [await next_msg(m) for _ in range(5)]
    assert await m.silent(0.1), "no more than max-inflight unacked"
    await m.send("".join(f"ACK {d.id}\n" for d in first))
    # Acks and the next deliveries interleave; collect until all 12 were seen.
    seen = [d.offset for d in first]
    acks = 0
    while len(seen) < 12:
        line = await m.line()
        if line == "OK ack_received":
            acks += 1
            continue
        d = parse_msg(line)
        seen.append(d.offset)
        await m.send(f"ACK {d.id}\n")
    assert seen == list(range(1, 13)), "first deliveries go out in offset order"


async def test_exactly_once_per_group_under_stress(brokers: BrokerFactory) -> None:
    """Seed 004: 10 producers x 100 messages, 5 consumers, every message acked once."""
    broker = await brokers.start(ack_timeout=30)
    consumers = [await member(broker.port, "stress", "worker") for _ in range(5)]
    received: Counter[str] = Counter()
    acked = Counter[str]()

    async def consume(w: Wire) -> None:
        while sum(received.values()) < 1000:
            try:
                line = await w.line(timeout=0.5)
            except TimeoutError:
                continue
            if line.startswith("MSG "):
                d = parse_msg(line)
                received[d.text] += 1
                await w.send(f"ACK {d.id}\n")
            else:
                assert line == "OK ack_received", line
                acked["ok"] += 1

    async def produce(p: int) -> None:
        w = await Wire.open(broker.port)
        for j in range(100):
            assert await w.cmd(f"PUB stress {p}-{j}") == "OK published"

    tasks = [asyncio.create_task(consume(c)) for c in consumers]
    await asyncio.gather(*(produce(p) for p in range(10)))
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert len(received) == 1000
    assert set(received.values()) == {1}, "no message delivered twice"
    groups = await Wire.open(broker.port)
    await groups.send("GROUPS stress\n")
    for _ in range(50):
        lines = await groups.until("OK groups end")
        if "lag=0 " in lines[0]:
            break
        await asyncio.sleep(0.02)
        await groups.send("GROUPS stress\n")
    assert lines[0].startswith(
        "GROUP stress worker members=5 inflight=0 waiting=0 lag=0 acked=1000"
    )


async def test_group_created_while_empty_accumulates_then_drains(broker: Broker) -> None:
    m = await member(broker.port, "orders", "billing")
    assert await m.cmd("UNSUB orders billing") == "OK unsubscribed orders from group billing"
    pub = await Wire.open(broker.port)
    await pub.send("".join(f"PUB orders o{i}\n" for i in range(100)))
    await pub.lines(100)
    assert group_figures(await pub.cmd("GROUPS orders")) == (
        "GROUP orders billing members=0 inflight=0 waiting=0 lag=100 acked=0 dead=0 "
        "next_offset=1 paused=0"
    )
    assert await pub.line() == "OK groups end"
    back = await member(broker.port, "orders", "billing")
    got = []
    while len(got) < 100:
        line = await back.line()
        if line != "OK ack_received":
            d = parse_msg(line)
            got.append(d.text)
            await back.send(f"ACK {d.id}\n")
    assert got == [f"o{i}" for i in range(100)]


async def test_group_backlog_survives_a_restart(brokers: BrokerFactory) -> None:
    broker = await brokers.start()
    m = await member(broker.port, "orders", "billing")
    await m.close()
    pub = await Wire.open(broker.port)
    await pub.send("".join(f"PUB orders o{i}\n" for i in range(20)))
    await pub.lines(20)
    broker = await brokers.restart(broker)
    m = await member(broker.port, "orders", "billing")
    assert [(await next_msg(m)).text for _ in range(5)] == [f"o{i}" for i in range(5)]


async def test_unsub_of_a_group_hands_messages_to_the_other_member(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(ack_timeout=10)
    a = await member(broker.port, "q", "g")
    pub = await Wire.open(broker.port)
    assert await pub.cmd("PUB q work") == "OK published"
    d = await next_msg(a)
    b = await member(broker.port, "q", "g")
    assert await a.cmd("UNSUB q g") == "OK unsubscribed q from group g"
    again = await next_msg(b)
    assert (again.id, again.offset) == (d.id, d.offset)
    assert await a.cmd(f"ACK {d.id}") == ("ERR no pending messages for this consumer")
    assert await b.cmd(f"ACK {d.id}") == "OK ack_received"


async def test_ack_of_unknown_id_names_why(broker: Broker) -> None:
    m = await member(broker.port, "q", "g")
    assert await m.cmd("ACK msg_1_deadbeef") == (
        "ERR message msg_1_deadbeef not found in pending messages"
    )
    assert await m.cmd("UNSUB q nope") == "ERR not a member of group nope on q"


async def test_second_ack_of_the_same_message_says_it_was_acknowledged(broker: Broker) -> None:
    m = await member(broker.port, "q", "g")
    pub = await Wire.open(broker.port)
    assert await pub.cmd("PUB q once") == "OK published"
    d = await next_msg(m)
    assert await m.cmd(f"ACK {d.id}") == "OK ack_received"
    assert await m.cmd(f"ACK {d.id}") == (
        f"ERR message {d.id} not found in pending messages (already acknowledged)"
    )


async def test_pipelined_acks_in_any_spelling_get_one_answer_each_in_order(
    broker: Broker,
) -> None:
    m = await member(broker.port, "q", "g")
    pub = await Wire.open(broker.port)
    await pub.send("PUB q a\nPUB q b\nPUB q c\n")
    await pub.lines(3)
    a, b, c = [await next_msg(m) for _ in range(3)]
    await m.send(f"ACK {a.id}\r\nACK  {b.id}\nACK {a.id}\nACK {b.id} extra\nACK {c.id}\nACK \xe9\n")
    assert await m.lines(6) == [
        "OK ack_received",
        "OK ack_received",  # two spaces: the general parser's answer, same as the seed's
        f"ERR message {a.id} not found in pending messages (already acknowledged)",
        "ERR usage: ACK <message_id>",
        "OK ack_received",
        "ERR message \xe9 not found in pending messages",
    ]


@pytest.mark.parametrize(
    ("odd", "answer"),
    [
        ("ACK ", "ERR usage: ACK <message_id>"),
        ("ACK a b", "ERR usage: ACK <message_id>"),
        ("ACK \x01x", "ERR message \x01x not found in pending messages"),
        ("ACK \xe9", "ERR message \xe9 not found in pending messages"),
        ("ACK msg_1_deadbeef", "ERR message msg_1_deadbeef not found in pending messages"),
        ("ACK {first}", "ERR message {first} not found in pending messages (already acknowledged)"),
        ("ACK {odd}\r", "OK ack_received"),
        ("ack {odd}", "OK ack_received"),
        ("NACK {odd}", "OK nack_received"),
        ("PING", "OK pong"),
    ],
)
async def test_a_read_of_acks_answers_like_line_by_line(
    brokers: BrokerFactory, odd: str, answer: str
) -> None:
    """A read of ACK lines is checked and split at once; one odd line among them
    must get its own answer, in its place, and every other ack must count."""
    broker = await brokers.start(max_inflight=20)
    m = await member(broker.port, "q", "g")
    pub = await Wire.open(broker.port)
    await pub.send("".join(f"PUB q m{i}\n" for i in range(11)))
    await pub.lines(11)
    d = [await next_msg(m) for _ in range(11)]
    ids = {"first": d[0].id, "odd": d[5].id}
    acks = "".join(f"ACK {x.id}\n" for x in d[:5])
    rest = "".join(f"ACK {x.id}\n" for x in d[6:])
    await m.send(acks + odd.format(**ids) + "\n" + rest)
    ok = ["OK ack_received"] * 5
    lines = await m.lines(12 if odd.startswith("NACK") else 11)
    replies = [line for line in lines if not line.startswith("MSG ")]
    assert replies == [*ok, answer.format(**ids), *ok]
    # Every ack in the run counted: none of those is pending any more.
    for x in d[:5] + d[6:]:
        await m.send(f"ACK {x.id}\n")
        assert (await m.line()).endswith("(already acknowledged)")


async def test_acks_for_two_groups_in_one_read_keep_their_order(brokers: BrokerFactory) -> None:
    """Consecutive acks share a reply slot only while they wait for the same journal."""
    broker = await brokers.start(max_inflight=20)
    m = await Wire.open(broker.port)
    for topic in ("p", "q"):
        assert await m.cmd(f"SUB {topic} g") == f"OK subscribed {topic} in group g"
    pub = await Wire.open(broker.port)
    await pub.send("".join(f"PUB {t} m{i}\n" for i in range(3) for t in ("p", "q")))
    await pub.lines(6)
    d = [await next_msg(m) for _ in range(6)]
    await m.send(
        "".join(
            f"ACK {x.id}\nACK msg_1_nope\n" if i == 2 else f"ACK {x.id}\n" for i, x in enumerate(d)
        )
    )
    expected = ["OK ack_received"] * 7
    expected[3] = "ERR message msg_1_nope not found in pending messages"
    assert await m.lines(7) == expected
    assert {x.topic for x in d} == {"p", "q"}


@pytest.mark.parametrize("fsync", ["interval", "always"])
async def test_journal_compacts_under_traffic_and_keeps_every_ack(
    brokers: BrokerFactory, monkeypatch: pytest.MonkeyPatch, fsync: str
) -> None:
    # A tiny threshold makes the group rewrite its journal many times while
    # deliveries and acks keep coming; each ack is still answered and kept.
    # Under always a rewrite's last step fsyncs under a seal; otherwise no write waits.
    monkeypatch.setattr(lifecycle, "COMPACT_MIN_BYTES", 2048)
    broker = await brokers.start(ack_timeout=10, fsync=fsync)
    m = await member(broker.port, "orders", "billing")
    pub = await Wire.open(broker.port)
    total = 600
    await pub.send("".join(f"PUB orders o{i}\n" for i in range(total)))
    await pub.lines(total)
    sent_acks = answered = 0
    keep = None
    while sent_acks + (keep is not None) < total or answered < sent_acks:
        line = await m.line()
        if line == "OK ack_received":
            answered += 1
            continue
        d = parse_msg(line)
        if d.text == "o300":
            keep = d  # stays pending across the restart
        else:
            await m.send(f"ACK {d.id}\n")
            sent_acks += 1
    journal = broker.config.data_dir / "groups" / "orders" / "billing.journal"
    # Rewritten at least once: uncompacted it would hold about 40 kB (the group's whole
    # history); compacted it follows what is pending (its size depends on timing).
    assert journal.stat().st_size < 20_000
    await m.close()
    broker = await brokers.restart(broker)
    assert not journal.with_name("billing.journal.tmp").exists()
    again = await member(broker.port, "orders", "billing")
    assert keep is not None and (await next_msg(again)).offset == keep.offset
    assert await again.silent(0.2)
