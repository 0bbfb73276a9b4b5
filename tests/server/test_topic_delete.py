"""DELETE <topic>: a topic, its dead letters and its groups go for good, over TCP, restarts
and kill -9; a topic made again under the name never reuses an offset."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from linemq import Client
from linemq.clients.errors import BrokerError, NotFound
from tests.conftest import BrokerFactory, BrokerProcess
from tests.ops.http import Http
from tests.server.groupwire import member, next_msg
from tests.server.test_status import linemq_cli
from tests.wire import Wire


async def history_offsets(w: Wire, topic: str) -> list[int]:
    await w.send(f"HISTORY {topic} 100\n")
    lines = await w.until("OK history end")
    return [int(line.split()[3]) for line in lines if line.startswith("HISTORY ")]


async def test_delete_removes_log_dead_letters_groups_and_their_files(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    broker = await brokers.start(max_retries=0, ack_timeout=30.0)
    consumer = await member(broker.port, "jobs", "workers")
    admin = await Wire.open(broker.port)
    for i in range(3):
        assert await admin.cmd(f"PUB jobs m{i}") == "OK published"
    held = [await next_msg(consumer) for _ in range(3)]
    assert await consumer.cmd(f"NACK {held[0].id}") == "OK nack_received"  # a dead letter
    assert await consumer.cmd("UNSUB jobs workers") == "OK unsubscribed jobs from group workers"
    await consumer.close()
    assert await admin.cmd("SUB jobs.dlq auditors") == "OK subscribed jobs.dlq in group auditors"
    assert (await admin.cmd("UNSUB jobs.dlq auditors")).startswith("OK unsubscribed")
    assert (data / "topics" / "jobs.dlq").is_dir()
    assert (data / "groups" / "jobs" / "workers.journal").exists()

    assert await admin.cmd("DELETE jobs") == "OK deleted jobs"
    for gone in ("topics/jobs", "topics/jobs.dlq", "groups/jobs", "groups/jobs.dlq"):
        assert not (data / gone).exists(), gone
    assert await admin.cmd("GROUPS jobs") == "OK groups end"
    assert await admin.cmd("DLQ jobs") == "OK dlq end"
    assert await admin.cmd("STATUS jobs 1") == "ERR no topic jobs"
    await admin.send("STATS\n")
    assert not [s for s in await admin.until("OK stats end") if " jobs" in s]
    assert await admin.cmd("DELETE jobs") == "ERR no topic jobs"

    # The name is free again, and its offsets go on above the deleted ones.
    assert await admin.cmd("PUB jobs again") == "OK published"
    assert await history_offsets(admin, "jobs") == [4]
    await admin.close()

    broker = await brokers.restart(broker)
    admin = await Wire.open(broker.port)
    assert await history_offsets(admin, "jobs") == [4]
    assert await admin.cmd("GROUPS jobs") == "OK groups end"
    assert await admin.cmd("PUB jobs more") == "OK published"
    assert await history_offsets(admin, "jobs") == [4, 5]
    # Deleted again, and made again only after a restart: still above.
    assert await admin.cmd("DELETE jobs") == "OK deleted jobs"
    await admin.close()
    broker = await brokers.restart(broker)
    admin = await Wire.open(broker.port)
    await admin.send("PUT jobs 5\nafter\n")
    assert (await admin.line()).startswith("OK published 6 ")
    await admin.close()


async def test_subscribers_and_members_need_force_and_then_get_nothing_more(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(ack_timeout=30.0)
    fan = await Wire.open(broker.port)
    assert await fan.cmd("SUB jobs") == "OK subscribed jobs"
    admin = await Wire.open(broker.port)
    assert await admin.cmd("PUB jobs one") == "OK published"
    await fan.line()
    assert await admin.cmd("DELETE jobs") == "ERR topic has subscribers"
    assert await fan.cmd("UNSUB jobs") == "OK unsubscribed jobs"
    consumer = await member(broker.port, "jobs.dlq", "auditors")  # its dead letters count too
    assert await admin.cmd("DELETE jobs") == "ERR topic has subscribers"
    worker = await member(broker.port, "jobs", "workers")
    assert await admin.cmd("PUB jobs two") == "OK published"
    held = await next_msg(worker)
    assert await fan.cmd("SUB jobs") == "OK subscribed jobs"
    assert await admin.cmd("DELETE jobs force=true") == "OK deleted jobs"
    reply = await worker.cmd(f"ACK {held.id}")
    assert reply == "ERR no pending messages for this consumer"
    assert await fan.cmd("UNSUB jobs") == "ERR not subscribed to jobs"
    assert await admin.cmd("PUB jobs three") == "OK published"
    assert await fan.silent(0.2) and await worker.silent(0.05) and await consumer.silent(0.05)
    assert await history_offsets(admin, "jobs") == [3]
    # A fanout reader that resumes from the offset after the last one it saw misses nothing.
    assert await fan.cmd("SUB jobs from=3") == "OK subscribed jobs"
    assert (await fan.line()).split()[3] == "3"


async def test_a_dead_letter_topic_alone_and_wildcard_groups(brokers: BrokerFactory) -> None:
    broker = await brokers.start(max_retries=0, ack_timeout=30.0)
    worker = await member(broker.port, "orders.*", "billing")
    admin = await Wire.open(broker.port)
    assert await admin.cmd("PUB orders.eu a") == "OK published"
    held = await next_msg(worker)
    assert await worker.cmd(f"NACK {held.id}") == "OK nack_received"
    assert await admin.cmd("DELETE orders.eu.dlq") == "OK deleted orders.eu.dlq"
    assert await admin.cmd("DLQ orders.eu") == "OK dlq end"
    assert await history_offsets(admin, "orders.eu") == [1]
    assert await admin.cmd("DELETE orders.*") == "ERR invalid topic name"
    assert await admin.cmd("DELETE orders.eu") == "ERR topic has subscribers"
    assert await admin.cmd("DELETE orders.eu force=true") == "OK deleted orders.eu"
    # The wildcard group comes back with the topic, and its member with it.
    assert await admin.cmd("PUB orders.eu b") == "OK published"
    again = await next_msg(worker)
    assert (again.text, again.offset) == ("b", 2)


async def test_delete_survives_kill9_right_after_its_reply(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    proc = broker_process("--fsync", "always")
    w = await Wire.open(proc.port)
    assert await w.cmd("SUB jobs workers") == "OK subscribed jobs in group workers"
    assert (await w.cmd("UNSUB jobs workers")).startswith("OK unsubscribed")
    for i in range(5):
        assert await w.cmd(f"PUB jobs m{i}") == "OK published"
    assert await w.cmd("DELETE jobs") == "OK deleted jobs"
    proc.kill9()
    await w.close()
    proc = broker_process("--fsync", "always", data_dir=proc.data_dir)
    w = await Wire.open(proc.port)
    assert await w.cmd("GROUPS jobs") == "OK groups end"
    assert await w.cmd("HISTORY jobs 10") == "OK history end"
    assert await w.cmd("PUB jobs next") == "OK published"
    assert await history_offsets(w, "jobs") == [6]
    await w.close()


async def test_client_and_cli_delete_a_topic(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=30.0)
    async with Client("127.0.0.1", broker.port) as c:
        sub = await c.subscribe("jobs")
        await c.publish("jobs", "one")
        await sub.next()
        with pytest.raises(BrokerError, match="topic has subscribers"):
            await c.delete_topic("jobs")
        await c.delete_topic("jobs", force=True)
        with pytest.raises(NotFound, match="no topic jobs"):
            await c.delete_topic("jobs")
        await c.publish("other", "x")
        await c.publish("jobs", "two")
    code, out, err = await linemq_cli(broker, "topics", "--json")
    assert code == 0, err
    assert sorted(json.loads(line)["topic"] for line in out.splitlines()) == ["jobs", "other"]
    code, out, err = await linemq_cli(broker, "topics", "delete", "jobs")
    assert code == 2 and "--yes" in err
    code, out, err = await linemq_cli(broker, "topics", "delete", "jobs", "--yes", "--json")
    assert (code, json.loads(out)) == (0, {"topic": "jobs", "deleted": True}), err
    code, out, err = await linemq_cli(broker, "topics", "delete", "jobs", "--yes")
    assert (code, err.strip()) == (1, "ERR no topic jobs")


async def test_http_deletes_a_topic_as_the_verb_does(brokers: BrokerFactory) -> None:
    broker = await brokers.start(http_port=0, ack_timeout=30.0)
    fan = await Wire.open(broker.port)
    assert await fan.cmd("SUB jobs") == "OK subscribed jobs"
    assert await fan.cmd("PUB jobs one") == "OK published"
    http = Http(broker)
    refused = await http.post("/api/topics/delete", {"topic": "jobs"}, status=409)
    assert refused == {"error": "topic has subscribers"}
    done = await http.post("/api/topics/delete", {"topic": "jobs", "force": True})
    assert done == {"topic": "jobs", "deleted": True}
    missing = await http.post("/api/topics/delete", {"topic": "jobs"}, status=404)
    assert missing == {"error": "no topic jobs"}
