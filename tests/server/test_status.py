"""STATUS <topic> <id|offset>: where a message is in each group, over TCP and across restarts;
TOUCH ... progress= shows in it."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from linemq import Client
from linemq.broker.server.app import Broker
from linemq.clients.errors import NotFound
from tests.conftest import BrokerFactory
from tests.ops.http import Http
from tests.server.groupwire import member, next_msg
from tests.wire import Wire


async def status(w: Wire, topic: str, what: str | int) -> list[str]:
    await w.send(f"STATUS {topic} {what}\n")
    return await w.until("OK status end")


def fields(line: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in line.split() if "=" in word)


def by_group(lines: list[str]) -> dict[str, dict[str, str]]:
    return {line.split()[3]: fields(line) for line in lines if line.startswith("STATUS ")}


async def test_status_follows_a_message_through_every_state(brokers: BrokerFactory) -> None:
    broker = await brokers.start(max_retries=0, ack_timeout=30.0)
    admin = await Wire.open(broker.port)
    early = await member(broker.port, "jobs", "workers")
    assert await admin.cmd("SUB jobs idle") == "OK subscribed jobs in group idle"
    assert await admin.cmd("UNSUB jobs idle") == "OK unsubscribed jobs from group idle"
    assert await admin.cmd("PUB jobs first") == "OK published"
    held = await next_msg(early)
    late = await member(broker.port, "jobs", "late")

    lines = await status(admin, "jobs", 1)
    assert lines[0] == f"MESSAGE jobs 1 {held.id} ts={held.ts!r}"
    assert lines[-1] == "OK status end"
    groups = by_group(lines)
    assert groups["idle"] == {"state": "waiting", "attempts": "0"}
    assert groups["late"] == {"state": "before_start"}
    inflight = groups["workers"]
    assert inflight["state"] == "inflight" and inflight["attempt"] == "1"
    assert inflight["member"].startswith("127.0.0.1:")
    # By id, the same answer.
    assert await status(admin, "jobs", held.id) == lines

    assert await early.cmd(f"TOUCH {held.id} progress=40 resizing 2 of 5") == "OK touched"
    groups = by_group(await status(admin, "jobs", 1))
    assert groups["workers"]["progress"] == "40"
    assert groups["workers"]["note"] == "resizing%202%20of%205"
    assert await early.cmd(f"TOUCH {held.id} progress=uploading") == "OK touched"
    groups = by_group(await status(admin, "jobs", 1))
    assert "progress" not in groups["workers"] and groups["workers"]["note"] == "uploading"

    assert await early.cmd(f"NACK {held.id} reason=disk full") == "OK nack_received"
    groups = by_group(await status(admin, "jobs", held.id))
    assert groups["workers"] == {
        "state": "dead",
        "dlq_offset": "1",
        "attempts": "1",
        "reason": "nacked",
        "error": "disk%20full",
    }

    assert await admin.cmd("PUB jobs second") == "OK published"
    second = await next_msg(early)
    await next_msg(late)
    assert await early.cmd(f"ACK {second.id}") == "OK ack_received"
    groups = by_group(await status(admin, "jobs", 2))
    assert groups["workers"] == {"state": "done"}
    assert groups["late"]["state"] == "inflight"
    for w in (early, admin):
        await w.close()

    broker = await brokers.restart(broker)  # with the late member still holding offset 2
    admin = await Wire.open(broker.port)
    groups = by_group(await status(admin, "jobs", 2))
    assert groups["workers"] == {"state": "done"}
    # In flight when the broker stopped: waiting again, with its attempt counted.
    assert groups["late"] == {"state": "waiting", "attempts": "1", "reason": "broker_restart"}
    assert by_group(await status(admin, "jobs", 1))["workers"]["state"] == "dead"


async def test_status_of_what_is_not_there_says_why(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=30.0)
    w = await Wire.open(broker.port)
    assert await w.cmd("STATUS nowhere 1") == "ERR no topic nowhere"
    assert await w.cmd("PUB jobs one") == "OK published"
    assert await w.cmd("STATUS jobs 2") == "ERR message 2 not found in jobs"
    missing = "msg_1_00000000"
    assert await w.cmd(f"STATUS jobs {missing}") == f"ERR message {missing} not found in jobs"
    assert await w.cmd("STATUS jobs bogus") == "ERR message bogus not found in jobs"
    assert await w.cmd("PUB jobs two") == "OK published"
    assert await w.cmd("PURGE jobs.dlq") == "OK purged 0"
    assert await w.cmd("STATUS jobs") == "ERR usage: STATUS <topic> <message_id>|<offset>"
    assert await w.cmd("STATUS bad..name 1") == "ERR invalid topic name"
    lines = await status(w, "jobs", 2)
    assert lines[0].startswith("MESSAGE jobs 2 msg_") and len(lines) == 2
    await w.close()


async def test_status_shows_a_delayed_retry_and_v2_fields(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=30.0)
    consumer = await member(broker.port, "jobs", "workers")
    admin = await Wire.open(broker.port)
    await admin.send("PUT jobs 2 key=k1 priority=high ttl=1h\nhi\n")
    assert (await admin.line()).startswith("OK published 1 ")
    held = await next_msg(consumer)
    assert await consumer.cmd(f"NACK {held.id} 60") == "OK nack_received"
    lines = await status(admin, "jobs", 1)
    message = fields(lines[0])
    assert message["key"] == "k1" and message["priority"] == "high" and "expires_at" in message
    worker = by_group(lines)["workers"]
    assert worker["state"] == "waiting" and worker["attempts"] == "1"
    assert worker["reason"] == "nacked" and float(worker["due_ts"]) > held.ts + 50


async def test_touch_progress_is_checked_and_needs_a_held_message(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=30.0)
    consumer = await member(broker.port, "jobs", "workers")
    assert await consumer.cmd("PUB jobs one") == "OK published"
    held = await next_msg(consumer)
    bad = "ERR progress must be a number from 0 to 100, or text"
    assert await consumer.cmd(f"TOUCH {held.id} progress=150") == bad
    assert await consumer.cmd(f"TOUCH {held.id} progress=") == bad
    assert await consumer.cmd(f"TOUCH {held.id} extra") == "ERR usage: TOUCH <message_id>"
    assert await consumer.cmd(f"TOUCH {held.id} progress=12.5%") == "OK touched"
    assert by_group(await status(consumer, "jobs", 1))["workers"]["progress"] == "12.5"
    assert await consumer.cmd(f"ACK {held.id}") == "OK ack_received"
    reply = await consumer.cmd(f"TOUCH {held.id} progress=99")
    assert reply == f"ERR message {held.id} not found in pending messages (already acknowledged)"


async def test_client_status_and_touch_progress(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=30.0)
    async with Client("127.0.0.1", broker.port) as c:
        jobs = await c.subscribe("jobs", group="workers")
        published = await c.put("jobs", b"job", key="k")
        assert published is not None
        m = await jobs.next()
        await m.touch(progress=75, note="almost there")
        found = await c.status("jobs", m.id)
        assert (found.offset, found.id, found.fields["key"]) == (published.offset, m.id, "k")
        place = found.group("workers")
        assert place is not None and place.state == "inflight"
        assert (place.attempts, place.progress, place.note) == (1, 75.0, "almost there")
        await m.ack()
        done = await c.status("jobs", published.offset)
        assert [(g.group, g.state) for g in done.groups] == [("workers", "done")]
        with pytest.raises(NotFound, match="no topic nowhere"):
            await c.status("nowhere", 1)
        with pytest.raises(NotFound, match="message 9 not found in jobs"):
            await c.status("jobs", 9)
        with pytest.raises(ValueError):
            await m.touch(progress=120)

        code, out, err = await linemq_cli(broker, "status", "jobs", "1", "--json")
        assert code == 0, err
        shown = json.loads(out)
        assert shown["id"] == m.id and shown["groups"] == [{"group": "workers", "state": "done"}]
        code, out, err = await linemq_cli(broker, "status", "jobs", "5")
        assert (code, err.strip()) == (1, "ERR message 5 not found in jobs")


async def linemq_cli(broker: Broker, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "linemq",
        *args,
        "--port",
        str(broker.port),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_http_status_gives_the_same_answer_as_json(brokers: BrokerFactory) -> None:
    broker = await brokers.start(http_port=0, ack_timeout=30.0)
    worker = await member(broker.port, "jobs", "workers")
    assert await worker.cmd("PUB jobs one") == "OK published"
    held = await next_msg(worker)
    assert await worker.cmd(f"TOUCH {held.id} progress=10 two words") == "OK touched"
    http = Http(broker)
    found = await http.get_json(f"/api/status?topic=jobs&message={held.id}")
    assert (found["offset"], found["id"], found["ts"]) == (1, held.id, held.ts)
    [group] = found["groups"]
    assert (group["group"], group["state"], group["progress"], group["note"]) == (
        "workers",
        "inflight",
        "10",
        "two words",
    )
    assert await http.get_json("/api/status?topic=jobs&message=1") == found
    missing = await http.get_json("/api/status?topic=jobs&message=5", status=404)
    assert missing == {"error": "message 5 not found in jobs"}
    assert await http.get_json("/api/status?topic=nowhere&message=1", status=404) == {
        "error": "no topic nowhere"
    }
