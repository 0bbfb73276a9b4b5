"""DELETE <topic> <group>: a mistyped or retired group goes for good, over TCP and restarts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.conftest import BrokerFactory, BrokerProcess
from tests.server.groupwire import member, next_msg
from tests.wire import Wire


def group_names(lines: list[str]) -> list[str]:
    return [line.split(" ")[2] for line in lines if line.startswith("GROUP ")]


async def groups(w: Wire, topic: str) -> list[str]:
    await w.send(f"GROUPS {topic}\n")
    return group_names(await w.until("OK groups end"))


async def test_delete_removes_the_group_its_file_and_its_figures(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    broker = await brokers.start()
    w = await Wire.open(broker.port)
    assert await w.cmd("SUB jobs typo") == "OK subscribed jobs in group typo"
    assert await w.cmd("SUB jobs workers") == "OK subscribed jobs in group workers"
    assert await w.cmd("UNSUB jobs typo") == "OK unsubscribed jobs from group typo"
    assert await w.cmd("UNSUB jobs workers") == "OK unsubscribed jobs from group workers"
    for i in range(3):
        assert await w.cmd(f"PUB jobs m{i}") == "OK published"
    journal = tmp_path / "data" / "groups" / "jobs" / "typo.journal"
    assert journal.exists()
    assert await w.cmd("DELETE jobs typo") == "OK deleted jobs typo"
    assert not journal.exists()
    assert await groups(w, "jobs") == ["workers"]
    await w.send("STATS jobs\n")
    stats = await w.until("OK stats end")
    assert [s for s in stats if s.startswith("STAT group jobs ")] == [
        s for s in stats if s.startswith("STAT group jobs workers ")
    ]
    assert await w.cmd("DELETE jobs typo") == "ERR no group typo on jobs"
    # SUB makes a fresh group, at the next message like any new group.
    assert await w.cmd("SUB jobs typo") == "OK subscribed jobs in group typo"
    assert await w.cmd("PUB jobs after") == "OK published"
    got = await next_msg(w)
    assert (got.text, got.offset) == ("after", 4)
    await w.close()
    broker = await brokers.restart(broker)
    w = await Wire.open(broker.port)
    await w.send("GROUPS jobs\n")
    lines = await w.until("OK groups end")
    assert group_names(lines) == ["typo", "workers"]
    assert " acked=0 " in lines[0] and "next_offset=5" in lines[0]


async def test_a_group_with_members_needs_force_and_its_members_are_told_on_ack(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start()
    consumer = await member(broker.port, "jobs", "workers")
    assert await consumer.cmd("SUB other stays") == "OK subscribed other in group stays"
    admin = await Wire.open(broker.port)
    assert await admin.cmd("PUB jobs one") == "OK published"
    held = await next_msg(consumer)
    assert await admin.cmd("DELETE jobs workers") == "ERR group has members"
    assert await groups(admin, "jobs") == ["workers"]
    assert await admin.cmd("DELETE jobs workers force") == "OK deleted jobs workers"
    assert await admin.cmd("PUB jobs two") == "OK published"
    assert await consumer.silent(0.2)
    reply = await consumer.cmd(f"ACK {held.id}")
    assert reply == f"ERR message {held.id} not found in pending messages (group deleted)"
    assert await consumer.cmd("PING") == "OK pong"  # the connection stays usable
    # Joining again makes a new group, from the next message.
    assert await consumer.cmd("SUB jobs workers") == "OK subscribed jobs in group workers"
    assert await admin.cmd("PUB jobs three") == "OK published"
    assert (await next_msg(consumer)).text == "three"


async def test_bad_delete_lines_get_usage_errors(brokers: BrokerFactory) -> None:
    broker = await brokers.start()
    w = await Wire.open(broker.port)
    usage = "ERR usage: DELETE <topic> <group> [force]"
    assert await w.cmd("DELETE") == usage
    assert await w.cmd("DELETE jobs") == "ERR no topic jobs"  # DELETE <topic>, added later
    assert await w.cmd("DELETE jobs workers now") == usage
    assert await w.cmd("DELETE jobs workers force extra") == usage
    assert await w.cmd("DELETE jobs nope") == "ERR no group nope on jobs"
    assert await w.cmd("PING") == "OK pong"


async def test_delete_of_a_pattern_group_removes_its_registration_and_groups(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    broker = await brokers.start()
    w = await Wire.open(broker.port)
    assert await w.cmd("SUB orders.* billing") == "OK subscribed orders.* in group billing"
    assert await w.cmd("PUB orders.eu a") == "OK published"
    assert (await next_msg(w)).topic == "orders.eu"
    assert await w.cmd("DELETE orders.* billing") == "ERR group has members"
    assert await w.cmd("UNSUB orders.* billing") == "OK unsubscribed orders.* from group billing"
    assert await w.cmd("DELETE orders.* billing") == "OK deleted orders.* billing"
    assert await groups(w, "orders.eu") == []
    assert await w.cmd("PUB orders.us b") == "OK published"  # no group for a new topic
    assert await groups(w, "orders.us") == []
    assert await w.cmd("DELETE orders.* billing") == "ERR no group billing on orders.*"
    patterns = (tmp_path / "data" / "groups" / ".patterns.journal").read_bytes()
    assert b"billing" not in patterns
    await w.close()
    broker = await brokers.restart(broker)
    w = await Wire.open(broker.port)
    assert await w.cmd("PUB orders.asia c") == "OK published"
    assert await groups(w, "orders.asia") == []
    assert await groups(w, "orders.eu") == []


async def test_kill9_right_after_ok_deleted_does_not_bring_a_group_back(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    proc = broker_process("--fsync", "always")
    w = await Wire.open(proc.port)
    assert await w.cmd("SUB jobs typo") == "OK subscribed jobs in group typo"
    assert await w.cmd("SUB jobs.* wild") == "OK subscribed jobs.* in group wild"
    assert await w.cmd("PUB jobs.a x") == "OK published"
    assert (await next_msg(w)).topic == "jobs.a"
    assert await w.cmd("DELETE jobs typo force") == "OK deleted jobs typo"
    assert await w.cmd("DELETE jobs.* wild force") == "OK deleted jobs.* wild"
    proc.kill9()
    proc = broker_process(data_dir=proc.data_dir)
    w = await Wire.open(proc.port)
    assert await groups(w, "jobs") == []
    assert await groups(w, "jobs.a") == []
    assert await w.cmd("PUB jobs.b y") == "OK published"
    assert await groups(w, "jobs.b") == []
    assert not [e for e in proc.events() if e.get("event") == "group_recovered"]


async def test_broker_totals_do_not_fall_when_a_group_is_deleted(brokers: BrokerFactory) -> None:
    """Prometheus reads a falling counter as a reset: the deleted group's counts stay in."""
    broker = await brokers.start()
    consumer = await member(broker.port, "jobs", "workers")
    assert await consumer.cmd("PUB jobs one") == "OK published"
    got = await next_msg(consumer)
    assert await consumer.cmd(f"ACK {got.id}") == "OK ack_received"

    async def broker_stats() -> dict[str, str]:
        await consumer.send("STATS\n")
        line = (await consumer.until("OK stats end"))[0]
        return dict(f.split("=") for f in line.split(" ")[2:])

    before = await broker_stats()
    assert (before["acked"], before["delivered"]) == ("1", "1")
    assert await consumer.cmd("DELETE jobs workers force") == "OK deleted jobs workers"
    after = await broker_stats()
    assert (after["acked"], after["delivered"], after["redelivered"]) == ("1", "1", "0")
