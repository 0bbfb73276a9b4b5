"""``--topic-policy``: per-topic max retries, backoff, ack timeout and max in flight, over real
sockets, and ``POLICY <topic>`` showing what a topic's groups use."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable

import pytest
from click.testing import CliRunner

from linemq.broker.cli import main
from linemq.broker.config import TopicPolicy, parse_topic_policy
from linemq.broker.delivery.backoff import ExponentialBackoff, RetryPolicy
from linemq.broker.delivery.policy import DeliveryPolicy, format_duration, resolve
from linemq.broker.protocol.durations import parse_duration
from linemq.broker.storage.records import Meta
from linemq.clients import Message
from linemq.clients.aio import Client
from linemq.clients.protocol import encode_put
from tests.conftest import BrokerFactory, BrokerProcess, eventually
from tests.server.groupwire import member, next_msg
from tests.server.v2wire import put
from tests.wire import Wire


def policies(*specs: str) -> tuple[TopicPolicy, ...]:
    return tuple(parse_topic_policy(s) for s in specs)


async def publish(port: int, topic: str, *texts: str) -> None:
    pub = await Wire.open(port)
    await pub.send("".join(f"PUB {topic} {t}\n" for t in texts))
    assert await pub.lines(len(texts)) == ["OK published"] * len(texts)
    await pub.close()


async def dead_letters(port: int, topic: str) -> list[str]:
    ops = await Wire.open(port)
    await ops.send(f"DLQ {topic}\n")
    lines = (await ops.until("OK dlq end"))[:-1]
    await ops.close()
    return [json.loads(line.split(" ", 3)[3])["msg"] for line in lines]


async def nacked_until_silent(w: Wire, limit: int = 10) -> int:
    """NACK every delivery at once; how many deliveries there were."""
    count = 0
    while count < limit:
        try:
            d = await next_msg(w, timeout=0.4)
        except TimeoutError:
            return count
        count += 1
        assert await w.cmd(f"NACK {d.id} 0") == "OK nack_received"
    return count


async def test_max_retries_per_topic_while_another_topic_keeps_the_default(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(
        max_retries=3, ack_timeout=5.0, topic_policy=policies("orders.*=max_retries:1")
    )
    orders = await member(broker.port, "orders.eu", "g")
    other = await member(broker.port, "jobs", "g")
    await publish(broker.port, "orders.eu", "o1")
    await publish(broker.port, "jobs", "j1")
    assert await nacked_until_silent(orders) == 2  # max_retries 1: two deliveries, then the DLQ
    assert await nacked_until_silent(other) == 4  # the broker-wide 3
    assert await dead_letters(broker.port, "orders.eu") == ["o1"]
    assert await dead_letters(broker.port, "jobs") == ["j1"]


async def test_ack_timeout_per_topic(brokers: BrokerFactory) -> None:
    broker = await brokers.start(
        ack_timeout=5.0, retry_backoff_base=0.0, topic_policy=policies("fast=ack_timeout:150ms")
    )
    fast = await member(broker.port, "fast", "g")
    slow = await member(broker.port, "slow", "g")
    await publish(broker.port, "fast", "f")
    await publish(broker.port, "slow", "s")
    first = await next_msg(fast)
    assert (await next_msg(slow)).text == "s"
    started = time.monotonic()
    again = await next_msg(fast, timeout=2.0)  # not acked within 150 ms: delivered again
    assert (again.text, again.id) == ("f", first.id)
    assert time.monotonic() - started < 1.5
    assert await slow.silent(0.5)  # its ack timeout is the broker's 5 s


async def test_max_inflight_per_member_per_topic(brokers: BrokerFactory) -> None:
    broker = await brokers.start(
        max_inflight=1, ack_timeout=5.0, topic_policy=policies("wide=max_inflight:3")
    )
    wide = await member(broker.port, "wide", "g")
    narrow = await member(broker.port, "narrow", "g")
    await publish(broker.port, "wide", *"abcde")
    await publish(broker.port, "narrow", *"abcde")
    got = [await next_msg(wide) for _ in range(3)]
    assert [d.text for d in got] == ["a", "b", "c"]
    assert await wide.silent(0.2)
    assert (await next_msg(narrow)).text == "a"
    assert await narrow.silent(0.2)
    assert await wide.cmd(f"ACK {got[0].id}") == "OK ack_received"
    assert (await next_msg(wide)).text == "d"


async def test_a_fixed_backoff_waits_the_same_before_every_retry(brokers: BrokerFactory) -> None:
    broker = await brokers.start(
        ack_timeout=5.0,
        retry_backoff_base=0.01,
        topic_policy=policies("slowly=ack_timeout:100ms,backoff:fixed:500ms,max_retries:5"),
    )
    w = await member(broker.port, "slowly", "g")
    await publish(broker.port, "slowly", "x")
    times = []
    for _ in range(3):
        await next_msg(w, timeout=3.0)  # never acked: each times out after 100 ms
        times.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # 100 ms ack timeout + 500 ms each time; exponential from 500 ms would make the second 1.1 s.
    assert all(g >= 0.58 for g in gaps), gaps
    assert gaps[1] < 0.95, gaps


async def test_policy_shows_the_effective_policy_and_its_source(brokers: BrokerFactory) -> None:
    broker = await brokers.start(
        max_retries=3,
        ack_timeout=30.0,
        max_inflight=5,
        retry_backoff_base=1.0,
        retry_backoff_max=60.0,
        topic_policy=policies(
            "orders.>=max_retries:7",
            "orders.*=max_retries:10,backoff:exponential:2s:5m,ack_timeout:30s,max_inflight:50",
            "orders.eu=backoff:fixed:500ms",
        ),
    )
    w = await Wire.open(broker.port)
    await w.send("POLICY orders.us\n")
    assert await w.until("OK policy end") == [
        "POLICY orders.us max_retries=10 backoff=exponential:2s:5m ack_timeout=30s "
        "max_inflight=50 source=orders.* ordering=key rate=none nack_backoff=on",
        "OK policy end",
    ]
    await w.send("POLICY orders.eu\nPOLICY orders.eu.x\nPOLICY jobs\n")
    assert await w.until("OK policy end") == [
        "POLICY orders.eu max_retries=3 backoff=fixed:500ms ack_timeout=30s max_inflight=5 "
        "source=orders.eu ordering=key rate=none nack_backoff=on",  # the most specific
        # pattern, the flags for what it leaves out
        "OK policy end",
    ]
    assert (await w.until("OK policy end"))[0].endswith(
        "max_retries=7 backoff=exponential:1s:1m ack_timeout=30s max_inflight=5 source=orders.> "
        "ordering=key rate=none nack_backoff=on"
    )
    assert await w.until("OK policy end") == [
        "POLICY jobs max_retries=3 backoff=exponential:1s:1m ack_timeout=30s max_inflight=5 "
        "source=default ordering=key rate=none nack_backoff=on",
        "OK policy end",
    ]
    assert await w.cmd("POLICY") == "ERR usage: POLICY <topic>"
    assert await w.cmd("POLICY a..b") == "ERR invalid topic name"
    assert await w.cmd("PING") == "OK pong"
    async with Client(port=broker.port) as c:
        p = await c.policy("orders.us")
    assert (p.max_retries, p.backoff, p.ack_timeout, p.max_inflight, p.source) == (
        10, "exponential:2s:5m", 30.0, 50, "orders.*",
    )  # fmt: skip


def test_bad_policies_are_clear_click_errors() -> None:
    cases = {
        "orders.*": "expected PATTERN=",
        "orders.*=max_retries:x": "max_retries must be a whole number >= 0, got 'x'",
        "orders.*=max_inflight:0": "max_inflight must be a whole number >= 1",
        "orders.*=ack_timeout:soon": "invalid duration 'soon'",
        "orders.*=backoff:linear:1s": "invalid backoff 'linear:1s'",
        "orders.*=backoff:exponential:5m:2s": "backoff max '2s' is under its base '5m'",
        "orders.*=backoff:fixed": "invalid backoff 'fixed'",
        "orders..x=max_retries:1": "invalid topic pattern 'orders..x'",
        "orders.*=colour:red": "unknown policy setting 'colour'",
        "orders.*=max_retries:1,max_retries:2": "max_retries given twice",
    }
    for spec, message in cases.items():
        result = CliRunner().invoke(main, ["serve", "--topic-policy", spec])
        assert result.exit_code == 2, (spec, result.output)
        assert "Invalid value for '--topic-policy'" in result.output
        assert message in result.output, (spec, result.output)
    result = CliRunner().invoke(
        main, ["serve"], env={"LINEMQ_TOPIC_POLICY": "orders.*=max_retries:1 jobs=ack_timeout:-1s"}
    )
    assert result.exit_code == 2
    assert "invalid duration '-1s'" in result.output


def test_policies_from_the_command_line_hold_across_a_restart_and_the_cli_shows_them(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    """The attempts a message used are durable; the policy comes from the flags again."""
    args = (
        "--max-retries",
        "3",
        "--shutdown-grace",
        "0",
        "--topic-policy",
        "orders.*=max_retries:1",
    )
    proc = broker_process(*args)

    async def before() -> str:
        w = await member(proc.port, "orders.eu", "g")
        await publish(proc.port, "orders.eu", "o1")
        d = await next_msg(w)
        assert await w.cmd(f"NACK {d.id} 0") == "OK nack_received"
        assert (await next_msg(w)).id == d.id  # its second and last delivery, left in flight
        return d.id

    async def after() -> None:
        c = Client(port=proc.port)
        async with c:
            assert (await c.policy("orders.eu")).max_retries == 1
        w = await member(proc.port, "orders.eu", "g")
        assert await w.silent(0.5)  # out of attempts: dead-lettered, not delivered a third time
        assert await dead_letters(proc.port, "orders.eu") == ["o1"]

    asyncio.run(before())
    proc.terminate()
    proc = broker_process(*args, data_dir=proc.data_dir)
    asyncio.run(after())
    port = ["--port", str(proc.port)]
    shown = CliRunner().invoke(main, ["policy", "orders.eu", *port])
    assert shown.exit_code == 0, shown.output
    assert shown.stdout == (
        "orders.eu max_retries=1 backoff=exponential:1s:1m ack_timeout=30s max_inflight=5 "
        "source=orders.* ordering=key rate=none nack_backoff=on\n"
    )
    as_json = CliRunner().invoke(main, ["policy", "jobs", "--json", *port])
    assert json.loads(as_json.stdout) == {
        "topic": "jobs",
        "max_retries": 3,
        "backoff": "exponential:1s:1m",
        "ack_timeout": 30.0,
        "max_inflight": 5,
        "ordering": "key",
        "rate": None,
        "nack_backoff": True,
        "source": "default",
    }


@pytest.mark.parametrize(
    ("topic", "source"),
    [
        ("a.b.c", "a.b.c"),
        ("a.b.x", "a.*.x"),
        ("a.x.y", "a.*.*"),
        ("a.x", "a.>"),
        ("z.b.c", "*.b.c"),
        ("q", ">"),
    ],
)
def test_the_most_specific_pattern_wins(topic: str, source: str) -> None:
    rules = tuple(
        parse_topic_policy(f"{p}=max_retries:1")
        for p in (">", "a.>", "*.b.c", "a.*.*", "a.*.x", "a.b.c")
    )
    default = DeliveryPolicy(RetryPolicy(3, ExponentialBackoff(1, 60)), 30.0, 5)
    assert resolve(rules, default, topic).source == source
    assert resolve(rules[:0], default, topic).source == "default"


async def test_put_max_retries_overrides_the_topic_policy_for_that_message(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(
        ack_timeout=5.0, max_inflight=1, topic_policy=policies("jobs=max_retries:1")
    )
    w = await member(broker.port, "jobs", "g")
    pub = await Wire.open(broker.port)
    assert (await put(pub, "jobs", b"patient", "max_retries=3")).startswith("OK published 1 ")
    await pub.send("STATUS jobs 1\n")
    assert (await pub.line()).endswith(" max_retries=3")  # the MESSAGE line
    await pub.until("OK status end")
    assert await nacked_until_silent(w) == 4  # its own 3, not the topic's 1
    async with Client(port=broker.port) as c:
        await c.put("jobs", "hasty", max_retries=0)
        await c.put("jobs", "plain")
    assert await nacked_until_silent(w) == 1 + 2  # hasty once, plain as the topic says
    args = ["pub", "jobs", "cli", "--max-retries", "2", "--port", str(broker.port)]
    published = await asyncio.to_thread(CliRunner().invoke, main, args)
    assert published.exit_code == 0, published.output
    assert await nacked_until_silent(w) == 3
    assert await dead_letters(broker.port, "jobs") == ["patient", "hasty", "plain", "cli"]
    for bad in ("max_retries=x", "max_retries=-1", "max_retries=", "max_retries=1000001"):
        assert await put(pub, "jobs", b"x", bad) == f"ERR invalid option: {bad}"
    assert await pub.cmd("PING") == "OK pong"


def test_a_message_keeps_its_max_retries_in_the_log() -> None:
    meta = Meta(key="k", max_retries=0)
    stored = {"id": "i", "o": 1, "ts": 1.0, "msg": "m", **meta.encode()}
    assert stored["mr"] == 0
    assert Meta.decode(stored) == meta
    assert Meta.decode({"id": "i", "o": 1, "ts": 1.0, "msg": "m", "mr": -1}) == Meta()
    assert encode_put("t", "x", max_retries=2) == b"PUT t 1 max_retries=2\nx\n"
    with pytest.raises(ValueError, match="max_retries"):
        encode_put("t", "x", max_retries=-1)


def test_pub_max_retries_is_checked_before_connecting() -> None:
    result = CliRunner().invoke(main, ["pub", "jobs", "x", "--max-retries", "-1", "--port", "1"])
    assert result.exit_code == 2
    assert "Invalid value for '--max-retries'" in result.output


async def test_a_worker_touches_within_its_topics_ack_timeout(brokers: BrokerFactory) -> None:
    """The broker-wide 5 s would have the worker touch every 1.7 s: too late for 300 ms."""
    broker = await brokers.start(ack_timeout=5.0, topic_policy=policies("jobs=ack_timeout:300ms"))
    attempts: list[int | None] = []

    async def slow(m: Message) -> None:
        attempts.append(m.attempt)
        await asyncio.sleep(0.8)

    async with Client(port=broker.port) as c, c.worker("jobs", "w", slow) as w:
        await c.publish("jobs", "long")
        await eventually(lambda: w.stats.acked == 1, timeout=10)
    assert attempts == [1]
    assert w.stats.lost == 0


@pytest.mark.parametrize(
    ("given", "shown"),
    [("700ms", "700ms"), ("1.5s", "1500ms"), ("90s", "90s"), ("5m", "5m"), ("36h", "36h"),
     ("0", "0ms"), ("0.0005", "0.0005s")],
)  # fmt: skip
def test_policy_durations_are_shown_in_a_form_they_read_back_from(given: str, shown: str) -> None:
    seconds = parse_duration(given)
    assert format_duration(seconds) == shown
    assert parse_duration(shown) == seconds
