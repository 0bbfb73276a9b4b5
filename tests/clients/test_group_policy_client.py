"""A group's policy from the Python clients (aio and sync) and ``linemq policy TOPIC GROUP``,
against a real broker; the encoder and parser without one."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from linemq.clients.aio import Client, Message
from linemq.clients.errors import BrokerError
from linemq.clients.policies import GroupPolicy, encode_set_policy, to_topic_policy
from linemq.clients.replies import GroupLine, PolicyLine, parse_server_line
from linemq.clients.sync import SyncClient
from tests.conftest import BrokerFactory, eventually
from tests.delivery.test_topic_policy import policies
from tests.server.test_cli_and_client import linemq


def test_set_policy_lines_carry_each_setting_as_the_wire_writes_it() -> None:
    line = encode_set_policy(
        "q",
        "g",
        {"max_retries": 4, "ack_timeout": timedelta(milliseconds=1500), "nack_backoff": False},
    )
    assert line == b"POLICY q g max_retries=4 ack_timeout=1.5 nack_backoff=off\n"
    assert encode_set_policy("q", "g", {"rate": "10/1s", "backoff": None}) == (
        b"POLICY q g rate=10/1s backoff=default\n"
    )
    for bad in ({}, {"colour": "red"}, {"rate": "10 / 1s"}, {"max_retries": True}):
        with pytest.raises(ValueError):
            encode_set_policy("q", "g", bad)
    with pytest.raises(ValueError):
        encode_set_policy("q", "g..x", {"rate": "1/1s"})


def test_policy_and_group_lines_of_a_broker_without_the_new_keys_still_parse() -> None:
    old = parse_server_line(
        b"POLICY q max_retries=3 backoff=exponential:1s:1m ack_timeout=30s max_inflight=5 "
        b"source=default"
    )
    assert isinstance(old, PolicyLine)
    p = to_topic_policy([old])
    assert (p.ordering, p.rate, p.nack_backoff) == ("key", None, False)
    group = parse_server_line(
        b"GROUP q g members=1 inflight=0 waiting=0 lag=0 acked=0 dead=0 next_offset=1 paused=0 "
        b"max_retries=3 backoff=exponential:1s:1m ack_timeout=30s max_inflight=5 ordering=key "
        b"rate=none nack_backoff=on"
    )
    assert isinstance(group, GroupLine)
    assert group.stats["next_offset"] == 1 and "max_retries" not in group.stats
    assert group.settings["backoff"] == "exponential:1s:1m"
    assert group.settings["max_retries"] == "3"


async def test_the_async_client_reads_and_sets_a_groups_policy(brokers: BrokerFactory) -> None:
    broker = await brokers.start(max_retries=3, topic_policy=policies("q=max_retries:6"))
    async with Client(port=broker.port) as c:
        sub = await c.subscribe("q", "g")
        try:
            before = await c.group_policy("q", "g")
            assert isinstance(before, GroupPolicy)
            assert (before.group, before.max_retries, before.source, before.overrides) == (
                "g", 6, "q", (),
            )  # fmt: skip
            after = await c.set_group_policy("q", "g", rate="10/1s", ack_timeout=2, ordering="none")
            assert (after.rate, after.ack_timeout, after.ordering) == ("10/1s", 2.0, "none")
            assert after.overrides == ("ack_timeout", "ordering", "rate")
            cleared = await c.set_group_policy("q", "g", rate=None, ack_timeout=None)
            assert (cleared.rate, cleared.overrides) == (None, ("ordering",))
            (info,) = await c.groups("q")
            assert info.settings["ordering"] == "none" and info.members == 1
            with pytest.raises(BrokerError, match="invalid rate 'fast'"):
                await c.set_group_policy("q", "g", rate="fast")
            with pytest.raises(BrokerError, match="no group nope on q"):
                await c.group_policy("q", "nope")
        finally:
            await sub.unsubscribe()


async def test_the_sync_client_sets_and_reads_a_groups_policy(brokers: BrokerFactory) -> None:
    broker = await brokers.start()
    async with Client(port=broker.port) as c:
        sub = await c.subscribe("q", "g")

        def use() -> GroupPolicy:
            with SyncClient(port=broker.port) as s:
                s.set_group_policy("q", "g", nack_backoff=False, max_inflight=9)
                return s.group_policy("q", "g")

        got = await asyncio.to_thread(use)
        await sub.unsubscribe()
    assert (got.nack_backoff, got.max_inflight) == (False, 9)


async def test_the_cli_shows_and_sets_a_groups_policy(brokers: BrokerFactory) -> None:
    broker = await brokers.start(max_retries=3, ack_timeout=30.0)
    async with Client(port=broker.port) as c:
        sub = await c.subscribe("jobs", "workers")
        code, out, err = await linemq(
            broker, "policy", "jobs", "workers", "--set", "rate=5/1s", "--set", "max_retries=8"
        )
        assert code == 0, err
        assert out == (
            "jobs workers max_retries=8 backoff=exponential:50ms:400ms ack_timeout=30s "
            "max_inflight=5 ordering=key rate=5/1s nack_backoff=on source=default "
            "overrides=max_retries,rate\n"
        )
        code, out, _ = await linemq(broker, "policy", "jobs", "workers", "--json")
        shown = json.loads(out)
        assert (shown["group"], shown["rate"], shown["overrides"]) == (
            "workers", "5/1s", ["max_retries", "rate"],
        )  # fmt: skip
        code, _, err = await linemq(broker, "policy", "jobs", "--set", "rate=1/1s")
        assert code == 2 and "--set needs a GROUP" in err
        code, _, err = await linemq(broker, "policy", "jobs", "workers", "--set", "rate=slow")
        assert code != 0 and "invalid rate 'slow'" in err
        await sub.unsubscribe()


async def test_a_worker_touches_within_its_groups_own_ack_timeout(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=30.0)
    calls: list[int | None] = []

    async def slow(m: Message) -> None:
        calls.append(m.attempt)
        await asyncio.sleep(0.6)  # well past the group's 0.2 s ack timeout

    async with Client(port=broker.port) as c:
        sub = await c.subscribe("jobs", "w")  # the group exists; an operator sets its policy
        await c.set_group_policy("jobs", "w", ack_timeout="200ms")
        await sub.unsubscribe()
        async with c.worker("jobs", "w", slow) as w:
            await c.publish("jobs", "long job")
            await eventually(lambda: w.stats.acked == 1, timeout=10)
    assert calls == [1], "touched within 200 ms, not the broker's 30 s: never taken back"
