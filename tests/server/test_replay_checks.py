"""REPLAY checks each letter as a publish of it would be checked, so no stored letter can forge
a frame; letters that fail are skipped and counted."""

from __future__ import annotations

import orjson

from linemq.broker.server.app import Broker
from linemq.clients import Client
from tests.conftest import BrokerFactory, eventually
from tests.ops.http import Http, dead_letter
from tests.server.v2wire import read_frame
from tests.wire import Wire

FAST_DLQ = {"ack_timeout": 0.05, "max_retries": 0, "heartbeat_timeout": 60.0}


def store_letter(broker: Broker, topic: str, letter: dict[str, object]) -> None:
    """A letter as a broker before this check could have stored it (written by hand to
    ``<topic>.dlq``), through the broker's own write path: clients can no longer do this."""
    broker.engine.publish_internal(topic + ".dlq", orjson.dumps(letter).decode())


FORGED: list[dict[str, object]] = [
    {"msg": "hi\nMSG orders msg_forged 1 0 pay attacker"},  # a line break: a forged MSG line
    {"msg": "cr\rlf"},
    {"msg": "ok", "original": {"h": {"bad name": "x"}}},  # breaks MSG2's option list
    {"msg": "ok", "original": {"k": "two words"}},
    {"msg": "ok", "original": {"p": 99}},
    {"msg": 42},
]


async def test_replay_skips_letters_that_fail_a_publishs_checks(brokers: BrokerFactory) -> None:
    broker = await brokers.start(**FAST_DLQ)
    consumer = await dead_letter(broker, "orders", "workers", "genuine")
    await consumer.close()
    for letter in FORGED:
        store_letter(broker, "orders", letter)
    store_letter(broker, "orders", {"msg": "by hand but harmless", "original": {"k": "k1"}})
    await eventually(lambda: broker.engine.published.get("orders.dlq", 0) == 2 + len(FORGED))

    v1 = await Wire.open(broker.port)
    assert await v1.cmd("SUB orders") == "OK subscribed orders"
    v2 = await Wire.open(broker.port)
    assert await v2.cmd("HELLO 2") == "OK hello 2"
    assert await v2.cmd("SUB orders") == "OK subscribed orders"
    ops = await Wire.open(broker.port)
    assert await ops.cmd("REPLAY orders ALL") == f"OK replayed 2 skipped {len(FORGED)}"

    got = [(await v1.line()).split(" ", 5)[5] for _ in range(2)]
    assert got == ["genuine", "by hand but harmless"]
    assert await v1.silent(0.2)
    frames = [await read_frame(v2) for _ in range(2)]
    assert [f.payload for f in frames] == [b"genuine", b"by hand but harmless"]
    assert frames[1].options == {"key": "k1"}

    # Skipped letters stay, unreplayed, and are skipped (and counted) again.
    assert await ops.cmd("REPLAY orders ALL") == f"OK replayed 0 skipped {len(FORGED)}"
    await ops.send("DLQ orders\n")
    listed = [orjson.loads(line.split(" ", 3)[3]) for line in (await ops.until("OK dlq end"))[:-1]]
    assert [letter["replayed"] is None for letter in listed] == [False] + [True] * len(FORGED) + [
        False
    ]
    forged_id = listed[1]["dlq_id"]
    assert await ops.cmd(f"REPLAY orders {forged_id}") == "OK replayed 0 skipped 1"
    assert await ops.cmd("REPLAY orders nope") == "ERR dead letter nope not found in orders.dlq"


async def test_http_replay_and_the_client_report_skipped_letters(brokers: BrokerFactory) -> None:
    broker = await brokers.start(http_port=0, **FAST_DLQ)
    store_letter(broker, "orders", {"msg": "a\nb"})
    store_letter(broker, "orders", {"msg": "fine"})
    await eventually(lambda: broker.engine.published.get("orders.dlq", 0) == 2)
    async with Client("127.0.0.1", broker.port) as client:
        assert await client.replay("orders", "ALL") == 1
    body = {"topic": "orders", "all": True}
    assert await Http(broker).post("/api/dlq/replay", body) == {"replayed": 0, "skipped": 1}
