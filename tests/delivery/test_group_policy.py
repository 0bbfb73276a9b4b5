"""Per-group policies over real sockets: a bare NACK follows the backoff, ``nack_backoff``,
``ordering:none|key|fifo``, rate limits, ``POLICY <topic> <group> key=value`` (durable,
live) and the policy on ``GROUP`` lines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from linemq.broker.config import RateSetting, parse_rate, parse_topic_policy
from tests.conftest import BrokerFactory, BrokerProcess
from tests.delivery.test_topic_policy import policies, publish
from tests.ops.http import Http
from tests.server.groupwire import member, next_msg
from tests.server.v2wire import put
from tests.wire import Wire


async def policy_of(port: int, topic: str, group: str) -> dict[str, str]:
    w = await Wire.open(port)
    await w.send(f"POLICY {topic} {group}\n")
    line, end = await w.lines(2)
    await w.close()
    assert end == "OK policy end", (line, end)
    words = line.split(" ")
    assert words[:3] == ["POLICY", topic, group], line
    return dict(word.split("=", 1) for word in words[3:])


async def group_fields(port: int, topic: str, group: str) -> dict[str, str]:
    """``group``'s ``GROUP`` line, as a dict."""
    w = await Wire.open(port)
    await w.send(f"GROUPS {topic}\n")
    lines = await w.until("OK groups end")
    await w.close()
    (line,) = [line for line in lines if line.startswith(f"GROUP {topic} {group} ")]
    return dict(word.split("=", 1) for word in line.split(" ")[3:])


# -- NACK and the backoff -----------------------------------------------------------


async def test_a_bare_nack_waits_the_backoff_and_nack_0_redelivers_now(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(ack_timeout=5.0, retry_backoff_base=0.6, retry_backoff_max=5)
    m = await member(broker.port, "q", "g")
    await publish(broker.port, "q", "job")
    d = await next_msg(m)
    started = time.monotonic()
    assert await m.cmd(f"NACK {d.id}") == "OK nack_received"
    assert await m.silent(0.4), "a bare NACK is not redelivered at once any more"
    again = await next_msg(m, timeout=2)
    assert again.id == d.id and time.monotonic() - started >= 0.55
    started = time.monotonic()
    assert await m.cmd(f"NACK {again.id} 0") == "OK nack_received"
    third = await next_msg(m, timeout=1)
    assert third.id == d.id and time.monotonic() - started < 0.4


async def test_nack_backoff_off_redelivers_a_bare_nack_at_once(brokers: BrokerFactory) -> None:
    broker = await brokers.start(
        ack_timeout=5.0,
        retry_backoff_base=5.0,
        retry_backoff_max=5.0,
        topic_policy=policies("legacy.*=nack_backoff:off"),
    )
    old = await member(broker.port, "legacy.q", "g")
    new = await member(broker.port, "q", "g")
    await publish(broker.port, "legacy.q", "a")
    await publish(broker.port, "q", "b")
    d_old, d_new = await next_msg(old), await next_msg(new)
    assert await old.cmd(f"NACK {d_old.id}") == "OK nack_received"
    assert (await next_msg(old, timeout=1)).id == d_old.id
    assert await new.cmd(f"NACK {d_new.id}") == "OK nack_received"
    assert await new.silent(0.5), "the default waits the 5 s backoff"
    # A group can turn it off for itself, at once.
    assert await new.cmd("POLICY q g nack_backoff=off") == "OK policy set q g"
    await publish(broker.port, "q", "c")
    d = await next_msg(new)
    assert await new.cmd(f"NACK {d.id}") == "OK nack_received"
    assert (await next_msg(new, timeout=1)).id == d.id


# -- ordering --------------------------------------------------------------------------


async def test_ordering_none_does_not_hold_keys_and_key_does(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=5.0)
    w = await Wire.open(broker.port)
    assert await w.cmd("HELLO 2") == "OK hello 2"
    free = await Wire.open(broker.port)
    assert await free.cmd("SUB q free ordering=none") == "OK subscribed q in group free"
    held = await Wire.open(broker.port)
    assert await held.cmd("SUB q held") == "OK subscribed q in group held"
    for text in (b"a1", b"a2"):
        assert (await put(w, "q", text, "key=a")).startswith("OK published")
    assert [(await next_msg(free)).text for _ in range(2)] == ["a1", "a2"]
    first = await next_msg(held)
    assert first.text == "a1" and await held.silent(0.3), "key holds a2 behind a1"
    assert (await group_fields(broker.port, "q", "held"))["ordering"] == "key"
    assert await held.cmd(f"ACK {first.id}") == "OK ack_received"
    assert (await next_msg(held)).text == "a2"


async def test_a_topic_policy_ordering_makes_new_groups_fifo_and_sub_ordering_wins(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(
        ack_timeout=5.0, max_inflight=5, topic_policy=policies("tasks.*=ordering:fifo")
    )
    strict = await member(broker.port, "tasks.a", "g")
    loose = await Wire.open(broker.port)
    assert await loose.cmd("SUB tasks.a h ordering=key") == "OK subscribed tasks.a in group h"
    await publish(broker.port, "tasks.a", "one", "two")
    assert (await next_msg(strict)).text == "one"
    assert await strict.silent(0.3), "fifo: one message out at a time"
    assert [(await next_msg(loose)).text for _ in range(2)] == ["one", "two"]
    assert (await policy_of(broker.port, "tasks.a", "g"))["ordering"] == "fifo"
    h = await policy_of(broker.port, "tasks.a", "h")
    assert (h["ordering"], h["overrides"]) == ("key", "ordering")
    assert await strict.cmd("SUB tasks.a g ordering=key") == (
        "ERR group g on tasks.a has ordering=fifo"
    )


async def test_ordering_changes_on_a_live_group_only_with_nothing_in_flight(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(ack_timeout=5.0, max_inflight=5)
    m = await member(broker.port, "q", "g")
    await publish(broker.port, "q", "one", "two", "three")
    got = [await next_msg(m) for _ in range(3)]
    assert await m.cmd("POLICY q g ordering=fifo") == (
        "ERR ordering of group g on q can change only while nothing is in flight (3 now): "
        "PAUSE the group, let it drain, then set it"
    )
    assert await m.cmd("PAUSE q g") == "OK paused q g"
    for d in got:
        assert await m.cmd(f"ACK {d.id}") == "OK ack_received"
    await publish(broker.port, "q", "four", "five")
    assert await m.cmd("POLICY q g ordering=fifo") == "OK policy set q g"
    assert await m.cmd("RESUME q g") == "OK resumed q g"
    four = await next_msg(m)
    assert four.text == "four" and await m.silent(0.3), "now one at a time"
    assert await m.cmd(f"ACK {four.id}") == "OK ack_received"
    five = await next_msg(m)
    assert await m.cmd(f"ACK {five.id}") == "OK ack_received"
    assert await m.cmd("POLICY q g ordering=default") == "OK policy set q g"
    assert (await policy_of(broker.port, "q", "g"))["ordering"] == "key"


# -- rate limits -------------------------------------------------------------------------


def test_rates_parse_as_count_per_duration() -> None:
    assert parse_rate("100/1s") == RateSetting(100, 1.0)
    assert parse_rate("5/m") == RateSetting(5, 60.0)
    assert parse_rate("3/500ms") == RateSetting(3, 0.5)
    for bad in ("100", "x/1s", "0/1s", "10/", "10/soon", "-1/1s"):
        with pytest.raises(ValueError, match="invalid rate"):
            parse_rate(bad)
    rule = parse_topic_policy("q=rate:10/1s,nack_backoff:off,ordering:none")
    assert (rule.rate, rule.nack_backoff, rule.ordering) == (RateSetting(10, 1.0), False, "none")
    with pytest.raises(ValueError, match="nack_backoff must be on or off"):
        parse_topic_policy("q=nack_backoff:maybe")
    with pytest.raises(ValueError, match="ordering must be none, key or fifo"):
        parse_topic_policy("q=ordering:lifo")


async def test_a_rate_paces_a_whole_group_and_nothing_is_dropped(brokers: BrokerFactory) -> None:
    broker = await brokers.start(
        http_port=0, ack_timeout=5.0, max_inflight=50, topic_policy=policies("q=rate:5/500ms")
    )
    members = [await member(broker.port, "q", "g") for _ in range(2)]
    await publish(broker.port, "q", *[f"m{i}" for i in range(15)])
    started = time.monotonic()
    got: list[str] = []

    async def drain(w: Wire) -> None:
        while len(got) < 15:
            try:
                d = await next_msg(w, timeout=0.2)
            except TimeoutError:
                continue
            got.append(d.text)  # never acked: max_inflight 50 leaves room for all

    await asyncio.wait_for(asyncio.gather(*(drain(w) for w in members)), 5)
    elapsed = time.monotonic() - started
    # A burst of 5, then 5 per 500 ms: the last of 15 after about a second, not before.
    assert 0.9 <= elapsed < 2.5, elapsed
    assert sorted(got, key=lambda t: int(t[1:])) == [f"m{i}" for i in range(15)]
    fields = await group_fields(broker.port, "q", "g")
    assert fields["rate"] == "5/500ms"
    w = await Wire.open(broker.port)
    await w.send("STATS q\n")
    stat = [line for line in await w.until("OK stats end") if line.startswith("STAT group")]
    limited = int(dict(p.split("=") for p in stat[0].split(" ")[4:])["rate_limited"])
    assert limited >= 2
    _, text = await Http(broker).get("/metrics")
    assert f'linemq_group_rate_limited_total{{group="g",topic="q"}} {limited}.0' in text


async def test_redeliveries_count_against_the_rate(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=5.0, max_inflight=10)
    m = await member(broker.port, "q", "g")
    assert await m.cmd("POLICY q g rate=2/2s") == "OK policy set q g"
    await publish(broker.port, "q", "a", "b")
    a, b = await next_msg(m), await next_msg(m)
    assert await m.cmd(f"NACK {a.id} 0") == "OK nack_received"
    assert await m.silent(0.5), "both tokens went to a and b: the redelivery waits"
    assert (await next_msg(m, timeout=1.5)).id == a.id  # a token a second
    assert b.text == "b"


async def test_a_live_group_takes_a_new_rate_and_max_inflight_at_once(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(ack_timeout=5.0, max_inflight=1)
    m = await member(broker.port, "q", "g")
    await publish(broker.port, "q", *"abcd")
    assert (await next_msg(m)).text == "a"
    assert await m.silent(0.2)
    assert await m.cmd("POLICY q g max_inflight=3") == "OK policy set q g"
    assert [(await next_msg(m)).text for _ in range(2)] == ["b", "c"]
    assert await m.cmd("POLICY q g max_inflight=default rate=none") == "OK policy set q g"
    fields = await policy_of(broker.port, "q", "g")
    assert (fields["max_inflight"], fields["overrides"]) == ("1", "rate")


async def test_a_shorter_ack_timeout_applies_to_what_is_in_flight_too(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(ack_timeout=30.0, retry_backoff_base=0.0)
    m = await member(broker.port, "q", "g")
    await publish(broker.port, "q", "slow")
    d = await next_msg(m)
    assert await m.cmd("POLICY q g ack_timeout=200ms") == "OK policy set q g"
    again = await next_msg(m, timeout=2)  # not the 30 s it was delivered with
    assert again.id == d.id


# -- POLICY <topic> <group> ---------------------------------------------------------------


async def test_policy_of_a_group_reads_sets_and_clears_with_sources(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(
        max_retries=3,
        ack_timeout=30.0,
        retry_backoff_base=1.0,
        retry_backoff_max=60.0,
        topic_policy=policies("orders.*=max_retries:10"),
    )
    w = await member(broker.port, "orders.eu", "billing")
    assert await policy_of(broker.port, "orders.eu", "billing") == {
        "max_retries": "10",
        "backoff": "exponential:1s:1m",
        "ack_timeout": "30s",
        "max_inflight": "5",
        "ordering": "key",
        "rate": "none",
        "nack_backoff": "on",
        "source": "orders.*",
        "overrides": "none",
    }
    assert await w.cmd("POLICY orders.eu billing max_retries=2 backoff=fixed:5s rate=100/1s") == (
        "OK policy set orders.eu billing"
    )
    got = await policy_of(broker.port, "orders.eu", "billing")
    assert (got["max_retries"], got["backoff"], got["rate"]) == ("2", "fixed:5s", "100/1s")
    assert got["overrides"] == "max_retries,backoff,rate"
    fields = await group_fields(broker.port, "orders.eu", "billing")
    assert list(fields)[:8] == [
        "members", "inflight", "waiting", "lag", "acked", "dead", "next_offset", "paused",
    ]  # fmt: skip
    assert (fields["max_retries"], fields["rate"], fields["ordering"]) == ("2", "100/1s", "key")
    assert await w.cmd("POLICY orders.eu billing max_retries=default") == (
        "OK policy set orders.eu billing"
    )
    assert (await policy_of(broker.port, "orders.eu", "billing"))["max_retries"] == "10"
    # The topic's policy is unchanged by a group's.
    await w.send("POLICY orders.eu\n")
    assert (await w.until("OK policy end"))[0].startswith("POLICY orders.eu max_retries=10 ")


ALL_KEYS = "max_retries, backoff, ack_timeout, max_inflight, ordering, rate, nack_backoff"
BACKOFF_HINT = "use exponential:BASE:MAX or fixed:DELAY"
DURATION_HINT = "use e.g. 500ms, 5s, 2m, 1h, 1d"


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        ("POLICY q nope", "ERR no group nope on q"),
        ("POLICY q nope max_retries=1", "ERR no group nope on q"),
        ("POLICY q g colour=red", f"ERR unknown policy setting 'colour' ({ALL_KEYS})"),
        ("POLICY q g max_retries=x", "ERR max_retries must be a whole number >= 0, got 'x'"),
        ("POLICY q g max_inflight=0", "ERR max_inflight must be a whole number >= 1, got '0'"),
        ("POLICY q g backoff=linear", f"ERR invalid backoff 'linear': {BACKOFF_HINT}"),
        ("POLICY q g ack_timeout=soon", f"ERR invalid duration 'soon': {DURATION_HINT}"),
        ("POLICY q g rate=fast", "ERR invalid rate 'fast': use N/DURATION, e.g. 100/1s"),
        ("POLICY q g ordering=lifo", "ERR ordering must be none, key or fifo, got 'lifo'"),
        ("POLICY q g nack_backoff=yes", "ERR nack_backoff must be on or off, got 'yes'"),
        ("POLICY q g max_retries=1 max_retries=2", "ERR max_retries given twice"),
        ("POLICY q g max_retries", "ERR usage: POLICY <topic> [<group> [key=value ...]]"),
        ("POLICY q max_retries=1", "ERR usage: POLICY <topic> [<group> [key=value ...]]"),
        ("POLICY q g..x", "ERR invalid group name"),
    ],
)
async def test_bad_group_policies_get_clear_errors_and_change_nothing(
    brokers: BrokerFactory, line: str, reply: str
) -> None:
    broker = await brokers.start()
    w = await member(broker.port, "q", "g")
    before = await policy_of(broker.port, "q", "g")
    assert await w.cmd(line) == reply
    assert await policy_of(broker.port, "q", "g") == before
    assert await w.cmd("PING") == "OK pong"


async def test_a_bad_setting_among_good_ones_applies_none(brokers: BrokerFactory) -> None:
    broker = await brokers.start()
    w = await member(broker.port, "q", "g")
    assert await w.cmd("POLICY q g max_retries=9 rate=fast") == (
        "ERR invalid rate 'fast': use N/DURATION, e.g. 100/1s"
    )
    assert (await policy_of(broker.port, "q", "g"))["max_retries"] == "3"


async def test_a_group_policy_survives_a_restart_and_compaction(brokers: BrokerFactory) -> None:
    broker = await brokers.start()
    w = await member(broker.port, "q", "g")
    assert await w.cmd("POLICY q g max_retries=7 rate=10/1s ordering=none") == ("OK policy set q g")
    await w.close()
    group = broker.router.groups["q"]["g"]
    group.state.journal.rewrite_now(group.state.snapshot_entries())  # as compaction does
    broker = await brokers.restart(broker)
    got = await policy_of(broker.port, "q", "g")
    assert (got["max_retries"], got["rate"], got["ordering"]) == ("7", "10/1s", "none")
    assert got["overrides"] == "max_retries,ordering,rate"


async def test_a_group_policy_set_before_kill9_holds_after_it(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    args = ("--max-retries", "3", "--ack-timeout", "5", "--retry-backoff-base", "0.05")
    proc = broker_process(*args)
    w = await member(proc.port, "q", "g")
    assert await w.cmd("POLICY q g max_retries=0 ordering=fifo nack_backoff=off") == (
        "OK policy set q g"
    )
    proc.kill9()  # right after the OK
    proc = broker_process(*args)
    got = await policy_of(proc.port, "q", "g")
    assert (got["max_retries"], got["ordering"], got["nack_backoff"]) == ("0", "fifo", "off")
    m = await member(proc.port, "q", "g")
    await publish(proc.port, "q", "poison")
    d = await next_msg(m)
    assert await m.cmd(f"NACK {d.id}") == "OK nack_received"  # max_retries 0: dead at once
    dlq = await Wire.open(proc.port)
    await dlq.send("DLQ q\n")
    assert len(await dlq.until("OK dlq end")) == 2
