"""Removing what is no longer needed: one dead letter (PURGE <t>.dlq <id>), acked history by
age or count (CLEAN), and dead letters past --dlq-max-letters; over TCP and restarts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from linemq import Client
from linemq.clients.errors import NotFound
from tests.conftest import BrokerFactory, BrokerProcess
from tests.server.groupwire import member, next_msg
from tests.server.test_status import linemq_cli
from tests.wire import Wire


async def dlq_offsets(w: Wire, topic: str) -> list[int]:
    await w.send(f"DLQ {topic} 1000\n")
    return [int(line.split()[2]) for line in await w.until("OK dlq end") if line.startswith("DLQ")]


async def dead_letters(broker_port: int, admin: Wire, n: int) -> list[str]:
    """``n`` messages of ``jobs`` dead-lettered by group ``workers``; their ids."""
    worker = await member(broker_port, "jobs", "workers")
    ids = []
    for i in range(n):
        assert await admin.cmd(f"PUB jobs job {i} " + "x" * 100) == "OK published"
        held = await next_msg(worker)
        assert await worker.cmd(f"NACK {held.id}") == "OK nack_received"
        ids.append(held.id)
    await worker.close()
    return ids


def first_offset(stat_lines: list[str], topic: str) -> int:
    line = next(s for s in stat_lines if s.startswith(f"STAT topic {topic} "))
    return int(line.split("first_offset=")[1].split()[0])


async def test_one_dead_letter_is_removed_by_offset_dlq_id_or_message_id(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(max_retries=0, ack_timeout=30.0)
    admin = await Wire.open(broker.port)
    ids = await dead_letters(broker.port, admin, 4)
    await admin.send("DLQ jobs 10\n")
    lines = await admin.until("OK dlq end")
    letters = [json.loads(line.split(" ", 3)[3]) for line in lines[:-1]]
    assert await admin.cmd("PUB jobs.dlq forged") != "OK published"
    assert await admin.cmd("PURGE jobs.dlq 2") == "OK purged 1"
    assert await admin.cmd(f"PURGE jobs.dlq {letters[0]['dlq_id']}") == "OK purged 1"
    assert await admin.cmd(f"PURGE jobs.dlq {ids[2]}") == "OK purged 1"
    assert await dlq_offsets(admin, "jobs") == [4]
    assert await admin.cmd("PURGE jobs.dlq 2") == "ERR dead letter 2 not found in jobs.dlq"
    assert (
        await admin.cmd(f"REPLAY jobs {ids[0]}")
        == f"ERR dead letter {ids[0]} not found in jobs.dlq"
    )
    await admin.send("STATUS jobs 1\n")
    assert (await admin.until("OK status end"))[1].endswith("workers state=done")
    await admin.close()

    broker = await brokers.restart(broker)
    admin = await Wire.open(broker.port)
    assert await dlq_offsets(admin, "jobs") == [4]
    assert await admin.cmd("REPLAY jobs ALL") == "OK replayed 1"
    assert await admin.cmd("PURGE jobs.dlq") == "OK purged 4"  # every record, as before


async def test_clean_drops_only_segments_every_group_finished(brokers: BrokerFactory) -> None:
    broker = await brokers.start(segment_bytes=4096, max_inflight=100, ack_timeout=30.0)
    admin = await Wire.open(broker.port)
    assert await admin.cmd("SUB jobs idle") == "OK subscribed jobs in group idle"
    assert (await admin.cmd("UNSUB jobs idle")).startswith("OK unsubscribed")
    worker = await member(broker.port, "jobs", "workers")
    for i in range(100):
        assert await admin.cmd(f"PUB jobs {i:03d} " + "x" * 150) == "OK published"
    held = [await next_msg(worker) for _ in range(100)]
    for m in held[:60]:
        assert await worker.cmd(f"ACK {m.id}") == "OK ack_received"
    assert await admin.cmd("CLEAN jobs keep=10") == "OK cleaned 0"  # idle holds them all
    assert await admin.cmd("DELETE jobs idle") == "OK deleted jobs idle"
    assert await admin.cmd("CLEAN jobs acked older=1h") == "OK cleaned 0"
    reply = await admin.cmd("CLEAN jobs keep=10")
    cleaned = int(reply.removeprefix("OK cleaned "))
    assert 0 < cleaned < 60
    await admin.send("STATS jobs\n")
    first = first_offset(await admin.until("OK stats end"), "jobs")
    assert first == cleaned + 1 and first <= 61
    await admin.send("HISTORY jobs 1000\n")
    history = await admin.until("OK history end")
    assert int(history[0].split()[3]) == first and len(history) == 102 - first  # and the end line
    for m in held[60:]:  # the messages the group still holds are all there
        assert await worker.cmd(f"ACK {m.id}") == "OK ack_received"
    await worker.close()
    await admin.close()

    broker = await brokers.restart(broker)
    admin = await Wire.open(broker.port)
    await admin.send("STATS jobs\n")
    assert first_offset(await admin.until("OK stats end"), "jobs") == first
    reply = await admin.cmd("CLEAN jobs keep=0")  # all acked: every sealed segment goes
    assert int(reply.removeprefix("OK cleaned ")) > 0
    assert await admin.cmd("CLEAN nowhere keep=1") == "ERR no topic nowhere"
    usage = "ERR usage: CLEAN <topic> [acked] older=<duration>|keep=<n>"
    assert await admin.cmd("CLEAN jobs") == usage
    assert await admin.cmd("CLEAN jobs since=1h") == usage
    assert await admin.cmd("CLEAN jobs keep=x") == "ERR keep must be a non-negative integer"
    assert await admin.cmd("CLEAN jobs older=soon") == "ERR older must be a duration (30s, 12h, 7d)"


async def test_dead_letters_past_the_limit_are_not_listed_nor_kept(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(
        max_retries=0,
        dlq_max_letters=3,
        segment_bytes=4096,
        retention_check_ms=20,
        ack_timeout=30.0,
    )
    admin = await Wire.open(broker.port)
    await dead_letters(broker.port, admin, 30)
    assert await dlq_offsets(admin, "jobs") == [28, 29, 30]
    assert await admin.cmd("PURGE jobs.dlq 5") == "ERR dead letter 5 not found in jobs.dlq"

    async def dropped() -> bool:
        await admin.send("STATS jobs.dlq\n")
        return first_offset(await admin.until("OK stats end"), "jobs.dlq") > 1

    for _ in range(200):
        if await dropped():
            break
        await asyncio.sleep(0.02)
    assert await dropped()
    assert await admin.cmd("REPLAY jobs ALL") == "OK replayed 3"


async def test_client_and_cli_clean_and_remove_one_letter(brokers: BrokerFactory) -> None:
    broker = await brokers.start(max_retries=0, segment_bytes=4096, ack_timeout=30.0)
    admin = await Wire.open(broker.port)
    ids = await dead_letters(broker.port, admin, 3)
    async with Client("127.0.0.1", broker.port) as c:
        assert await c.purge_dlq("jobs", ids[0]) == 1
        with pytest.raises(NotFound):
            await c.purge_dlq("jobs", ids[0])
        for i in range(60):
            await c.publish("jobs", f"{i} " + "y" * 150)
        assert await c.clean("jobs", older="1h") == 0
        # The group never took the 60 new messages (no member): nothing it has not finished goes.
        assert await c.clean("jobs", keep=0) == 0
    code, out, err = await linemq_cli(broker, "dlq", "purge", "jobs", "--id", "2", "--yes")
    assert (code, out) == (0, "purged 1\n"), err
    assert await dlq_offsets(admin, "jobs") == [3]
    assert await admin.cmd("DELETE jobs workers") == "OK deleted jobs workers"
    code, out, err = await linemq_cli(broker, "clean", "jobs", "--keep", "0", "--json")
    assert code == 0, err
    assert json.loads(out)["cleaned"] > 0
    code, out, err = await linemq_cli(broker, "clean", "jobs")
    assert code == 2 and "--older" in err


async def test_a_removed_letter_stays_removed_after_kill9(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    proc = broker_process("--max-retries", "0")
    admin = await Wire.open(proc.port)
    ids = await dead_letters(proc.port, admin, 2)
    assert await admin.cmd(f"PURGE jobs.dlq {ids[1]}") == "OK purged 1"
    proc.kill9()
    await admin.close()
    proc = broker_process("--max-retries", "0", data_dir=proc.data_dir)
    admin = await Wire.open(proc.port)
    assert await dlq_offsets(admin, "jobs") == [1]
    await admin.close()
