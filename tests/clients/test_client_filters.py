"""``filter=`` in the Python clients, the worker and ``linemq sub --filter``: a group that
gets only the messages whose headers match, against a real broker."""

from __future__ import annotations

import asyncio
import re

import pytest
from click.testing import CliRunner

from linemq.broker.cli import main
from linemq.clients import BrokerError, Client
from linemq.clients.protocol import encode_sub
from linemq.clients.subscription import Message
from linemq.clients.sync import SyncClient
from tests.conftest import BrokerFactory


def test_the_sub_line_carries_the_filter_in_the_brokers_canonical_form() -> None:
    assert encode_sub("q", "g", filter="h.type=sms|email") == b"SUB q g filter=h.type=email|sms\n"
    assert encode_sub("q", "g", filter=["!h.debug", "h.lang=fr"]) == (
        b"SUB q g filter=!h.debug filter=h.lang=fr\n"
    )
    # A mapping gives raw values: the client escapes them (a space, a pipe).
    assert encode_sub("q", "g", "earliest", "fifo", {"type": ["a b", "c|d"]}) == (
        b"SUB q g from=earliest ordering=fifo filter=h.type=a%20b|c%7Cd\n"
    )


@pytest.mark.parametrize(
    ("topic", "group", "spec"),
    [
        ("q", None, "h.type=email"),
        ("orders.*", "g", "h.type=email"),
        ("q", "g", "type=email"),
        ("q", "g", "h.type=a b"),
        ("q", "g", []),
    ],
)
def test_a_filter_the_broker_would_refuse_is_refused_before_sending(
    topic: str, group: str | None, spec: str | list[str]
) -> None:
    with pytest.raises(ValueError):
        encode_sub(topic, group, filter=spec)
    with pytest.raises(ValueError):
        Client().subscribe(topic, group, filter=spec)


async def test_a_filtered_subscription_gets_only_matching_messages_and_keeps_its_filter(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(max_inflight=10)
    async with Client(port=broker.port) as worker, Client(port=broker.port) as publisher:
        sub = await worker.subscribe("q", "g", filter={"type": ["email", "sms"]})
        await publisher.put("q", "p1", headers={"type": "push"})
        await publisher.publish("q", "plain")
        await publisher.put("q", "e1", headers={"type": "email"})
        got = await sub.next()
        assert (got.text, got.offset, got.headers) == ("e1", 3, {"type": "email"})
        await got.ack()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sub.next(), 0.1)
        with pytest.raises(BrokerError, match=re.escape("has filter=h.type=email|sms")):
            await publisher.subscribe("q", "g", filter="h.type=push")
        (group,) = await publisher.groups("q")
        assert group.filtered == 2


async def test_the_sync_client_subscribes_with_a_filter(brokers: BrokerFactory) -> None:
    broker = await brokers.start(max_inflight=10)

    def scenario() -> None:
        with SyncClient(port=broker.port) as c:
            sub = c.subscribe("q", "s", "earliest", filter="h.lang!=en")
            c.put("q", "en", headers={"lang": "en"})
            c.put("q", "fr", headers={"lang": "fr"})
            m = next(iter(sub))
            assert m.text == "fr"
            m.ack()

    await asyncio.to_thread(scenario)


async def test_a_worker_with_a_filter_handles_only_matching_messages(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(max_inflight=10)
    seen: list[str] = []

    async def handler(m: Message) -> None:
        seen.append(m.text)

    async with Client(port=broker.port) as c:
        for text, kind in (("a", "email"), ("b", "push"), ("c", "email")):
            await c.put("jobs", text, headers={"type": kind})
        async with c.worker("jobs", "w", handler, start="earliest", filter="h.type=email"):
            while len(seen) < 2:
                await asyncio.sleep(0.01)
        assert seen == ["a", "c"]
        (group,) = await c.groups("jobs")
        assert (group.filtered, group.acked) == (1, 2)


async def test_linemq_sub_filter_prints_only_matching_messages(brokers: BrokerFactory) -> None:
    broker = await brokers.start()
    async with Client(port=broker.port) as c:
        await c.put("cli", "skip", headers={"type": "push"})
        await c.put("cli", "show", headers={"type": "email"})
    args = ["sub", "cli", "--group", "g", "--from", "earliest", "-n", "1"]
    args += ["--filter", "h.type=email", "--filter", "!h.debug", "--port", str(broker.port)]
    result = await asyncio.to_thread(CliRunner().invoke, main, args)
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("MSG ")]
    assert line.startswith("MSG cli ") and line.endswith(" 2 " + line.split()[4] + " show")


def test_the_cli_wants_a_group_and_a_good_test_for_a_filter() -> None:
    result = CliRunner().invoke(main, ["sub", "q", "--filter", "h.type=email"])
    assert result.exit_code == 2
    assert "a filter is for a consumer group" in result.output
    result = CliRunner().invoke(main, ["sub", "q", "-g", "g", "--filter", "type=email"])
    assert result.exit_code == 2
    assert "invalid filter: type=email" in result.output
