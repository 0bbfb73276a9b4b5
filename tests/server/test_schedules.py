"""Repeatable jobs over real TCP: SCHEDULE, SCHEDULES, UNSCHEDULE, firing, restarts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from linemq.broker.server import schedules as schedules_module
from linemq.broker.server.app import Broker
from tests.conftest import BrokerFactory, eventually
from tests.server import users
from tests.server.v2wire import read_frame
from tests.wire import Wire

FAST_FLOOR = {"schedule_min_every": 0.05}


async def schedule(w: Wire, topic: str, name: str, payload: bytes, *options: str) -> str:
    head = " ".join((f"SCHEDULE {topic} {name} {len(payload)}", *options))
    await w.send(head.encode() + b"\n" + payload + b"\n")
    return await w.line()


async def listing(w: Wire, topic: str = "") -> list[str]:
    await w.send(f"SCHEDULES {topic}".rstrip() + "\n")
    return (await w.until("OK schedules end"))[:-1]


def fields(line: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in line.split() if "=" in word and '"' not in word)


async def test_every_job_fires_each_due_time_with_its_options(brokers: BrokerFactory) -> None:
    broker = await brokers.start(**FAST_FLOOR)
    w = await Wire.open(broker.port)
    assert await w.cmd("HELLO 2") == "OK hello 2"
    assert await w.cmd("SUB ticks") == "OK subscribed ticks"
    before = time.time()
    reply = await schedule(w, "ticks", "beat", b"a\nb", "every=200ms", "key=k1", "h.x=1%202")
    word, ok, topic, name, nxt = reply.split()
    assert (word, ok, topic, name) == ("OK", "scheduled", "ticks", "beat")
    assert before + 0.2 <= float(nxt.removeprefix("next=")) <= time.time() + 0.2
    frames = [await read_frame(w, 2) for _ in range(3)]
    assert [f.payload for f in frames] == [b"a\nb"] * 3
    assert [f.offset for f in frames] == [1, 2, 3]
    dues = [float(f.options["h.due"]) for f in frames]
    assert dues[1] - dues[0] == dues[2] - dues[1] or abs(dues[2] - dues[1] - 0.2) < 1e-6
    assert all(f.options["key"] == "k1" and f.options["h.x"] == "1%202" for f in frames)
    assert all(f.options["h.schedule"] == "beat" for f in frames)
    assert await w.cmd("UNSCHEDULE ticks beat") == "OK unscheduled ticks beat"
    assert await w.silent(0.5)
    await w.close()


async def test_schedules_lists_next_last_and_count(brokers: BrokerFactory) -> None:
    broker = await brokers.start(**FAST_FLOOR)
    w = await Wire.open(broker.port)
    assert (await schedule(w, "r", "nightly", b"report", 'cron="0 2 * * *"')).startswith(
        "OK scheduled r nightly next="
    )
    assert (await schedule(w, "a", "fast", b"x", "every=100ms", "priority=high")).startswith(
        "OK scheduled a fast"
    )
    await eventually(lambda: broker.schedules.jobs[("a", "fast")].fired >= 2)
    lines = await listing(w)
    assert [line.split()[1:3] for line in lines] == [["a", "fast"], ["r", "nightly"]]
    fast, nightly = lines
    assert fast.split()[3] == "every=100ms" and fast.endswith(" priority=high")
    f = fields(fast)
    assert int(f["fired"]) >= 2 and float(f["next"]) > float(f["last"]) and f["bytes"] == "1"
    assert nightly.split()[3:8] == ['cron="0', "2", "*", "*", '*"']
    n = fields(nightly)
    assert n["last"] == "-" and n["fired"] == "0" and n["bytes"] == "6"
    assert float(n["next"]) % 86400 == 7200  # 02:00 UTC
    assert await listing(w, "r") == [nightly]
    assert await listing(w, "nothing") == []
    await w.close()


async def test_reschedule_replaces_and_unschedule_of_unknown_errs(brokers: BrokerFactory) -> None:
    broker = await brokers.start(**FAST_FLOOR)
    w = await Wire.open(broker.port)
    await schedule(w, "t", "job", b"one", "every=1h")
    await schedule(w, "t", "job", b"two!", 'cron="*/5 * * * *"', "ttl=1m")
    (line,) = await listing(w)
    assert '"*/5' in line and "bytes=4" in line and line.endswith("ttl=1m")
    assert await w.cmd("UNSCHEDULE t job") == "OK unscheduled t job"
    assert await w.cmd("UNSCHEDULE t job") == "ERR no schedule job on t"
    assert await listing(w) == []
    await w.close()


async def test_bad_schedules_get_clear_errors_and_the_connection_stays_usable(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(max_schedules=1)
    w = await Wire.open(broker.port)
    cases = [
        ((b"x", 'cron="61 * * * *"'), "ERR invalid cron expression: 61 * * * *"),
        ((b"x", 'cron="0 0 31 2 *"'), "ERR invalid cron expression: 0 0 31 2 *"),
        ((b"x",), 'ERR schedule needs every=<duration> or cron="<expr>"'),
        ((b"x", "every=1m", 'cron="* * * * *"'), "ERR use every= or cron=, not both"),
        ((b"x", "every=200ms"), "ERR every must be at least 1s"),
        ((b"x", "every=0"), "ERR every must be more than 0"),
        ((b"x", "every=soon"), "ERR invalid option: every=soon (e.g. 500ms, 5s, 2m, 1h)"),
        ((b"x", "every=1m", "id=a"), "ERR invalid option: id=a (the broker gives each firing"),
        ((b"x", "every=1m", "at=5"), "ERR invalid option: at=5 (a repeated job cannot"),
        ((b"x", "every=1m", "tz=UTC"), "ERR tz= goes with cron="),
        ((b"x", 'cron="0 * * * *"', 'tz="Mars/Olympus"'), "ERR invalid time zone: Mars/Olympus"),
        ((b"x", "every=1m", "colour=red"), "ERR invalid option: colour=red"),
    ]
    for (payload, *options), expected in cases:
        assert (await schedule(w, "t", "j", payload, *options)).startswith(expected)
    assert await schedule(w, "t", ".j", b"x", "every=1m") == "ERR invalid schedule name"
    assert await schedule(w, "t..x", "j", b"x", "every=1m") == "ERR invalid topic name"
    assert (await schedule(w, "t.dlq", "j", b"x", "every=1m")) == (
        "ERR dead-letter topics are written by the broker"
    )
    assert await w.cmd("SCHEDULE t j every=1m") == (
        'ERR usage: SCHEDULE <topic> <name> <nbytes> every=<duration>|cron="<expr>" '
        "[option=value ...]"
    )
    assert await w.cmd("SCHEDULES a b") == "ERR usage: SCHEDULES [topic]"
    assert await w.cmd("UNSCHEDULE a") == "ERR usage: UNSCHEDULE <topic> <name>"
    assert (await schedule(w, "t", "j", b"x", 'cron="0 * * * *"')).startswith("OK scheduled")
    assert (await schedule(w, "t", "j", b"y", "every=1h")).startswith("OK scheduled")  # replaces
    assert await schedule(w, "t", "k", b"x", "every=1h") == "ERR too many schedules"
    assert await w.cmd("PING") == "OK pong"
    await w.close()


async def test_cron_with_seconds_and_time_zone(brokers: BrokerFactory) -> None:
    broker = await brokers.start()
    w = await Wire.open(broker.port)
    assert await w.cmd("SUB sec") == "OK subscribed sec"
    reply = await schedule(w, "sec", "each", b"tick", 'cron="* * * * * *"')
    due = float(reply.split("next=")[1])
    assert due == int(due) and due > time.time() - 0.01
    first = await w.line(3)
    second = await w.line(3)
    assert first.endswith(" tick") and second.endswith(" tick")
    assert await w.cmd("UNSCHEDULE sec each") == "OK unscheduled sec each"
    reply = await schedule(w, "x", "paris", b"p", 'cron="0 2 * * *"', 'tz="Europe/Paris"')
    next_due = float(reply.split("next=")[1])
    assert next_due % 3600 == 0 and next_due % 86400 in (
        3600,
        0,
    )  # 02:00 Paris is 01:00 or 00:00 UTC
    (line,) = await listing(w, "x")
    assert 'cron="0 2 * * *" tz="Europe/Paris"' in line
    await w.close()


async def test_schedule_survives_restart_and_keeps_its_count(brokers: BrokerFactory) -> None:
    broker = await brokers.start(**FAST_FLOOR)
    w = await Wire.open(broker.port)
    await schedule(w, "t", "j", b"x", "every=100ms")
    await eventually(lambda: broker.schedules.jobs[("t", "j")].fired >= 2)
    await w.cmd("UNSCHEDULE t j")
    await schedule(w, "t", "kept", b"y", "every=1h")
    await schedule(w, "t", "j2", b"z", "every=1h", "key=a")
    await w.close()
    broker = await brokers.restart(broker)
    w = await Wire.open(broker.port)
    lines = await listing(w)
    assert [line.split()[2] for line in lines] == ["j2", "kept"]
    assert lines[0].endswith("key=a")
    await w.close()


async def test_missed_due_times_fire_once_after_downtime(brokers: BrokerFactory) -> None:
    broker = await brokers.start(**FAST_FLOOR)
    w = await Wire.open(broker.port)
    await schedule(w, "t", "j", b"x", "every=100ms")
    await eventually(lambda: broker.schedules.jobs[("t", "j")].fired >= 1)
    await w.close()
    await brokers.stop(broker)
    published = _last_offset(broker)
    await asyncio.sleep(0.65)  # about six due times pass while the broker is down
    broker = await brokers.start(**FAST_FLOOR, data_dir=broker.config.data_dir)
    job = broker.schedules.jobs[("t", "j")]
    fired = job.fired
    await eventually(lambda: job.fired > fired)
    caught_up = job.last_due
    assert caught_up is not None and caught_up > time.time() - 0.2  # the latest missed one
    await brokers.stop(broker)
    assert _last_offset(broker) <= published + 3  # one catch-up, then the normal pace


async def test_delete_topic_removes_its_schedules(brokers: BrokerFactory) -> None:
    broker = await brokers.start(**FAST_FLOOR)
    w = await Wire.open(broker.port)
    await schedule(w, "doomed", "j", b"x", "every=100ms")
    await schedule(w, "other", "j", b"x", "every=1h")
    await eventually(lambda: broker.store.get("doomed") is not None)
    assert await w.cmd("DELETE doomed") == "OK deleted doomed"
    assert [line.split()[1] for line in await listing(w)] == ["other"]
    assert await w.silent(0.3) and broker.store.get("doomed") is None
    await w.close()
    broker = await brokers.restart(broker)
    assert list(broker.schedules.jobs) == [("other", "j")]


async def test_stats_and_metrics_count_schedules_and_fires(brokers: BrokerFactory) -> None:
    broker = await brokers.start(**FAST_FLOOR, http_port=0)
    w = await Wire.open(broker.port)
    await schedule(w, "t", "j", b"x", "every=100ms")
    await eventually(lambda: broker.schedules.fires >= 2)
    await w.send("STATS\n")
    stat = fields((await w.until("OK stats end"))[0])
    assert stat["schedules"] == "1" and int(stat["schedule_fires"]) >= 2
    reader, writer = await asyncio.open_connection("127.0.0.1", broker.http.port)  # type: ignore[union-attr]
    writer.write(b"GET /metrics HTTP/1.0\r\n\r\n")
    body = (await reader.read()).decode()
    writer.close()
    assert "linemq_schedules 1.0" in body
    assert "linemq_schedule_fires_total" in body
    await w.close()


def _last_offset(broker: Broker) -> int:
    topic_log = broker.store.get("t")
    return topic_log.last_offset if topic_log is not None else 0


async def test_scheduling_needs_publish_and_listing_shows_only_readable_topics(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    broker = await users.start(brokers, tmp_path)
    admin = await Wire.open(broker.port)
    assert await admin.cmd(f"AUTH {users.ADMIN}") == "OK authenticated"
    assert (await schedule(admin, "payments", "p", b"x", "every=1h")).startswith("OK scheduled")
    for role, allowed in [("publish", True), ("subscribe", False), ("manage", False)]:
        w = await Wire.open(broker.port)
        assert await w.cmd(f"AUTH {users.TOKENS[role]}") == "OK authenticated"
        reply = await schedule(w, "orders", role, b"x", "every=1h")
        assert reply.startswith("OK scheduled") if allowed else reply == "ERR permission denied"
        listed = [line.split()[1] for line in await listing(w)]
        assert listed == (["orders"] if role != "manage" else [])  # never payments
        assert await w.cmd("SCHEDULES payments") == "ERR permission denied"
        expected = "OK unscheduled orders publish" if allowed else "ERR permission denied"
        assert await w.cmd("UNSCHEDULE orders publish") == expected
        if allowed:
            await schedule(w, "orders", "publish", b"x", "every=1h")
        await w.close()
    await admin.close()


async def test_journal_compacts_and_keeps_the_state(
    brokers: BrokerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schedules_module, "COMPACT_BYTES", 2000)
    broker = await brokers.start(schedule_min_every=0.01)
    w = await Wire.open(broker.port)
    await schedule(w, "t", "j", b"x", "every=20ms")
    await schedule(w, "t", "slow", b"y", "every=1h", "key=s")
    await eventually(lambda: broker.schedules.jobs[("t", "j")].fired >= 60, timeout=10)
    await w.close()
    await brokers.stop(broker)
    before = {job.name: job for job in broker.schedules.listing()}
    journal = broker.config.data_dir / ".schedules"
    assert len(journal.read_bytes().splitlines()) < 45  # a header, a snapshot, a short tail
    broker = await brokers.start(data_dir=broker.config.data_dir)
    after = {job.name: job for job in broker.schedules.listing()}
    assert after["slow"] == before["slow"]
    assert after["j"].fired >= before["j"].fired >= 60
    assert after["j"].last_due is not None and before["j"].last_due is not None
    assert after["j"].last_due >= before["j"].last_due


async def test_a_damaged_journal_line_costs_that_entry_only(brokers: BrokerFactory) -> None:
    broker = await brokers.start()
    w = await Wire.open(broker.port)
    await schedule(w, "t", "a", b"x", "every=1h")
    await schedule(w, "t", "b", b"y", "every=1h")
    await w.close()
    await brokers.stop(broker)
    journal = broker.config.data_dir / ".schedules"
    lines = journal.read_bytes().splitlines(keepends=True)
    assert len(lines) == 3 and b'"n":"a"' in lines[1]
    lines[1] = lines[1].replace(b'"n":"a"', b'"n":"A"')  # fails its checksum
    journal.write_bytes(b"".join(lines))
    broker = await brokers.start(data_dir=broker.config.data_dir)
    assert [job.name for job in broker.schedules.listing()] == ["b"]
    assert broker.damage.counts()["journal_line"] == 1
    await brokers.stop(broker)
    broker = await brokers.start(data_dir=broker.config.data_dir)  # rewritten clean
    assert broker.damage.counts()["journal_line"] == 0
