"""Permissions over TCP: the issue's findings, tried as its user did, and every verb against a
user with each single permission (publish, subscribe, manage, none)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from linemq.broker.server.app import Broker
from tests.conftest import BrokerFactory, eventually
from tests.ops.http import dead_letter, wire
from tests.server.groupwire import next_msg
from tests.server.users import ADMIN, TEAM, TOKENS, start
from tests.server.v2wire import put
from tests.wire import Wire

DENIED = "ERR permission denied"
BROKER_ONLY = "ERR dead-letter topics are written by the broker"

# (line, permission it needs on orders or None, how the reply starts when allowed)
VERBS: list[tuple[str, str | None, str]] = [
    ("PING", None, "OK pong"),
    ("HEARTBEAT", None, "OK"),
    ("HELLO 2", None, "OK hello 2"),
    ("STATS", None, "STAT broker"),
    ("UNSUB orders", None, "ERR not subscribed to orders"),
    ("UNSUB orders workers", None, "ERR not a member of group workers on orders"),
    ("ACK msg_1", None, "ERR no pending messages"),
    ("NACK msg_1", None, "ERR no pending messages"),
    ("TOUCH msg_1", None, "ERR no pending messages"),
    ("QUIT", None, "OK bye"),
    ("PUB orders x", "publish", "OK published"),
    ("PUT orders 1\nx", "publish", "OK published"),
    ("SUB orders", "subscribe", "OK subscribed orders"),
    ("SUB orders workers", "subscribe", "OK subscribed orders in group workers"),
    ("SUB orders.dlq", "subscribe", "OK subscribed orders.dlq"),
    ("SUB orders.dlq auditors", "subscribe", "OK subscribed orders.dlq in group auditors"),
    ("HISTORY orders 1", "subscribe", "HISTORY orders "),
    ("HISTORY orders.dlq 1", "subscribe", "HISTORY orders.dlq "),
    ("GROUPS orders", "subscribe", "GROUP orders workers "),
    ("DLQ orders", "subscribe", "DLQ orders 1 "),
    ("STATS orders", "subscribe", "STAT broker"),
    ("SEEK orders workers latest", "manage", "OK seek orders workers "),
    ("PAUSE orders workers", "manage", "OK paused orders workers"),
    ("RESUME orders workers", "manage", "OK resumed orders workers"),
    ("REPLAY orders ALL", "manage", "OK replayed "),
    ("PURGE orders.dlq", "manage", "OK purged "),
    ("STATUS orders 1", "subscribe", "MESSAGE orders 1 "),
    ("POLICY orders", "subscribe", "POLICY orders max_retries="),
    ("POLICY orders workers", "subscribe", "POLICY orders workers max_retries="),
    ("POLICY orders workers max_retries=5", "manage", "OK policy set orders workers"),
    ("PURGE orders.dlq 999", "manage", "ERR dead letter 999 not found"),
    ("CLEAN orders keep=1000", "manage", "OK cleaned 0"),
    ("DELETE orders workers", "manage", "OK deleted orders workers"),
    ("DELETE orders", "manage", "OK deleted orders"),
]


async def orders_with_a_dead_letter(broker: Broker, text: str = "card 4111-1111") -> None:
    """``orders`` with a group ``workers`` and one dead letter, made by the admin."""
    consumer = await dead_letter(broker, "orders", "workers", text, token=ADMIN)
    await consumer.close()


async def first_reply(broker: Broker, token: str, line: str) -> str:
    w = await wire(broker, token)
    try:
        return await w.cmd(line)
    finally:
        await w.close()


@pytest.mark.parametrize("user", list(TOKENS))
async def test_every_verb_against_a_user_with_one_permission(
    brokers: BrokerFactory, tmp_path: Path, user: str
) -> None:
    broker = await start(brokers, tmp_path)
    await orders_with_a_dead_letter(broker)
    for line, needs, allowed in VERBS:
        reply = await first_reply(broker, TOKENS[user], line)
        if needs is None or needs == user:
            assert reply.startswith(allowed), f"{user}: {line!r} got {reply!r}"
        else:
            assert reply == DENIED, f"{user}: {line!r} got {reply!r}"


# -- finding 1: orders.> opened the dead letters of orders --------------------------


async def test_a_pattern_under_a_topic_does_not_open_its_dead_letters(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    broker = await start(brokers, tmp_path)
    await orders_with_a_dead_letter(broker)
    team = await wire(broker, TEAM)
    assert await team.cmd("HISTORY orders 1") == DENIED
    assert await team.cmd("HISTORY orders.dlq 1") == DENIED
    assert await team.cmd("SUB orders.dlq") == DENIED
    assert await team.cmd("DLQ orders") == DENIED
    assert await team.cmd("PURGE orders.dlq") == DENIED
    assert await team.cmd("GROUPS orders.dlq") == DENIED
    # Its own sub-topics' dead letters follow those topics, which it may read.
    assert await team.cmd("HISTORY orders.eu.dlq 1") == "OK history end"
    assert await team.cmd("DLQ orders.eu") == "OK dlq end"


async def test_a_wildcard_brings_only_the_dead_letters_the_user_may_read(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    broker = await start(brokers, tmp_path)
    team = await wire(broker, TEAM)
    assert await team.cmd("SUB orders.>") == "OK subscribed orders.>"
    admin = await wire(broker, ADMIN)
    assert await admin.cmd("SUB >") == "OK subscribed >"
    await orders_with_a_dead_letter(broker, "secret")
    await eventually(lambda: broker.engine.published.get("orders.dlq", 0) == 1)
    consumer = await dead_letter(broker, "orders.eu", "workers", "eu failed", token=ADMIN)
    await consumer.close()
    # The admin's `>` sees both dead-letter topics; the team's `orders.>` only orders.eu's.
    seen = set()
    while len(seen) < 4:  # orders, orders.dlq, orders.eu, orders.eu.dlq
        seen.add((await next_msg(admin)).topic)
    assert (await next_msg(team)).topic == "orders.eu"
    assert (await next_msg(team)).topic == "orders.eu.dlq"
    assert await team.silent(0.2)


async def test_a_wildcard_group_does_not_join_dead_letters_the_user_may_not_read(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    broker = await start(brokers, tmp_path)
    team = await wire(broker, TEAM)
    assert await team.cmd("SUB orders.* tap") == "OK subscribed orders.* in group tap"
    await orders_with_a_dead_letter(broker, "secret")  # orders.dlq appears: no member for it
    await eventually(lambda: "orders.dlq" in broker.router.groups)
    assert await team.silent(0.2)
    assert all(topic != "orders.dlq" for topic, _ in groups_with_members(broker))


def groups_with_members(broker: Broker) -> list[tuple[str, str]]:
    return [
        (topic, name)
        for topic, groups in broker.router.groups.items()
        for name, group in groups.items()
        if group.members
    ]


# -- finding 2: anyone who could publish to X.dlq forged dead letters -------------------


async def test_nobody_publishes_to_a_dead_letter_topic(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    broker = await start(brokers, tmp_path)
    for token in (ADMIN, TEAM):
        w = await wire(broker, token)
        assert await w.cmd("PUB orders.dlq forged") == BROKER_ONLY
        assert await w.cmd("PUB orders.eu.dlq forged") == BROKER_ONLY
        assert await put(w, "orders.eu.dlq", b"forged") == BROKER_ONLY
        assert await w.cmd("PING") == "OK pong"
    assert broker.store.get("orders.dlq") is None
    assert broker.store.get("orders.eu.dlq") is None


async def test_without_auth_dead_letter_topics_are_still_the_brokers(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(ack_timeout=0.05, max_retries=0)
    consumer = await dead_letter(broker, "orders", "workers", "failed")
    w = await Wire.open(broker.port)
    assert await w.cmd("PUB orders.dlq forged") == BROKER_ONLY
    await w.send("HISTORY orders.dlq 5\n")
    (letter, end) = await w.until("OK history end")
    assert end == "OK history end"
    assert orjson.loads(letter.split(" ", 5)[5])["msg"] == "failed"  # the broker's own letter
    await consumer.close()


# -- finding 3: subscribe-only users managed other teams' groups ------------------------


async def test_reading_a_topic_does_not_let_a_user_move_or_pause_its_groups(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    broker = await start(brokers, tmp_path)
    await orders_with_a_dead_letter(broker)
    reader = await wire(broker, TOKENS["subscribe"])
    for line in (
        "SEEK orders workers latest",
        "PAUSE orders workers",
        "RESUME orders workers",
        "REPLAY orders ALL",
        "PURGE orders.dlq",
    ):
        assert await reader.cmd(line) == DENIED, line
    assert broker.router.groups["orders"]["workers"].state.paused is False
    operator = await wire(broker, TOKENS["manage"])
    assert await operator.cmd("PAUSE orders workers") == "OK paused orders workers"
    assert await operator.cmd("PAUSE payments workers") == DENIED


# -- finding 4: STATS over TCP listed every topic and group ---------------------------


async def test_stats_shows_only_what_the_user_may_read(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    broker = await start(brokers, tmp_path)
    await orders_with_a_dead_letter(broker)
    consumer = await dead_letter(broker, "payments", "billing", "p", token=ADMIN)
    await consumer.close()

    async def stats(token: str) -> set[tuple[str, str]]:
        """(kind, topic) of each STAT line: ("broker", ""), ("topic", t), ("group", t)."""
        w = await wire(broker, token)
        await w.send("STATS\n")
        lines = await w.until("OK stats end")
        await w.close()
        words = [line.split(" ") for line in lines[:-1]]
        return {(kind, rest[0] if kind != "broker" else "") for _, kind, *rest in words}

    assert ("group", "payments") in await stats(ADMIN)
    assert await stats(TOKENS["subscribe"]) == {
        ("broker", ""),
        ("topic", "orders"),
        ("topic", "orders.dlq"),  # a topic's dead letters are read as the topic
        ("group", "orders"),
    }
    assert await stats(TOKENS["none"]) == {("broker", "")}


def test_new_user_grants_manage_patterns_and_a_missing_key_grants_none(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from linemq.broker.auth import load_users
    from linemq.broker.cli import main

    result = CliRunner().invoke(
        main, ["auth", "new-user", "ops", "-s", "orders", "-m", "orders", "--manage", "jobs.*"]
    )
    assert result.exit_code == 0, result.output
    entry = "\n".join(line for line in result.stdout.splitlines() if not line.startswith("#"))
    path = tmp_path / "users.toml"
    path.write_text(entry + '\n[[users]]\nname = "old"\ntoken_sha256 = "' + "0" * 64 + '"\n')
    users = load_users(path)
    ops, old = users._by_hash.values()
    assert ops.manage == ("orders", "jobs.*")
    assert ops.may_manage("orders.dlq") and ops.may_manage("jobs.eu")
    assert not ops.may_manage("payments")
    assert old.manage == () and not old.may_manage("orders")


async def test_deleting_a_wildcard_group_needs_manage_on_all_it_could_match(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    broker = await start(brokers, tmp_path)
    admin = await wire(broker, ADMIN)
    assert await admin.cmd("SUB orders.> billing") == "OK subscribed orders.> in group billing"
    assert (
        await admin.cmd("UNSUB orders.> billing") == "OK unsubscribed orders.> from group billing"
    )
    operator = await wire(broker, TOKENS["manage"])  # manage on orders only
    assert await operator.cmd("DELETE orders.> billing") == DENIED
    assert await operator.cmd("DELETE orders.* billing") == DENIED
    assert await admin.cmd("DELETE orders.> billing") == "OK deleted orders.> billing"
