"""``ordering="fifo"`` in the Python client and ``linemq sub --ordering``: the SUB option
that makes a group strictly FIFO, against a real broker."""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner

from linemq.broker.cli import main
from linemq.clients import BrokerError, Client
from linemq.clients.protocol import encode_sub
from tests.conftest import BrokerFactory


def test_the_sub_line_carries_the_ordering() -> None:
    assert encode_sub("q", "g", ordering="fifo") == b"SUB q g ordering=fifo\n"
    assert encode_sub("q", "g", "earliest", "none") == b"SUB q g from=earliest ordering=none\n"
    assert encode_sub("q", "g") == b"SUB q g\n"


@pytest.mark.parametrize(
    ("topic", "group", "ordering"),
    [("q", None, "fifo"), ("orders.*", "g", "fifo"), ("q", "g", "strict")],
)
def test_an_ordering_the_broker_would_refuse_is_refused_before_sending(
    topic: str, group: str | None, ordering: str
) -> None:
    with pytest.raises(ValueError):
        encode_sub(topic, group, ordering=ordering)
    with pytest.raises(ValueError):
        Client().subscribe(topic, group, ordering=ordering)


async def test_a_fifo_group_holds_the_rest_back_while_its_head_is_retried(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(max_inflight=10)
    async with Client(port=broker.port) as worker, Client(port=broker.port) as publisher:
        sub = await worker.subscribe("q", "g", ordering="fifo")
        for text in ("m0", "m1", "m2"):
            await publisher.publish("q", text)
        first = await sub.next()
        assert first.text == "m0"
        with pytest.raises(TimeoutError):  # one message out at a time
            await asyncio.wait_for(sub.next(), 0.2)
        await first.nack(delay=0)
        again = await sub.next()
        assert (again.text, again.offset) == ("m0", first.offset)
        await again.ack()
        assert [(await sub.next()).text] == ["m1"]


async def test_a_sub_asking_another_ordering_than_the_groups_is_refused(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start()
    async with Client(port=broker.port) as a, Client(port=broker.port) as b:
        await a.subscribe("q", "g", ordering="fifo")
        with pytest.raises(BrokerError, match="ordering=fifo"):
            await b.subscribe("q", "g", ordering="none")


def test_the_cli_wants_a_group_for_an_ordering() -> None:
    result = CliRunner().invoke(main, ["sub", "q", "--ordering", "fifo"])
    assert result.exit_code == 2
    assert "ordering is for a consumer group" in result.output
