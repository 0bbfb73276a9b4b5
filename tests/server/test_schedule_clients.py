"""Repeatable jobs from the Python clients and ``linemq schedule``, against a real broker."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from linemq.broker.server.app import Broker
from linemq.clients import Client, InvalidRequest, NotFound, ScheduleInfo
from linemq.clients.schedules import encode_schedule
from linemq.clients.sync import SyncClient
from tests.conftest import BrokerFactory
from tests.server.test_cli_and_client import linemq


async def test_aio_client_schedules_lists_and_unschedules(brokers: BrokerFactory) -> None:
    broker = await brokers.start(schedule_min_every=0.05)
    async with Client(port=broker.port) as c:
        sub = await c.subscribe("ticks")
        first = await c.schedule(
            "ticks", "beat", b"\x00bin\n", every=0.1, key="k", headers={"who": "a b"}
        )
        assert time.time() < first <= time.time() + 0.1
        m = await asyncio.wait_for(sub.next(), 2)
        assert m.payload == b"\x00bin\n" and m.key == "k"
        assert m.headers["who"] == "a b" and m.headers["schedule"] == "beat"
        nightly = await c.schedule("ticks", "nightly", "report", cron="0 2 * * *", tz="UTC")
        assert nightly % 86400 == 7200
        jobs = await c.schedules()
        assert [j.name for j in jobs] == ["beat", "nightly"]
        beat, night = jobs
        assert isinstance(beat, ScheduleInfo)
        assert (beat.every, beat.cron, beat.bytes) == ("100ms", None, 5)
        assert beat.options == ("key=k", "h.who=a%20b")
        assert (night.cron, night.tz, night.last, night.fired) == ("0 2 * * *", "UTC", None, 0)
        assert night.next == nightly
        assert await c.schedules("elsewhere") == []
        await c.unschedule("ticks", "beat")
        with pytest.raises(NotFound, match="no schedule beat on ticks"):
            await c.unschedule("ticks", "beat")
        with pytest.raises(InvalidRequest, match="invalid cron expression"):
            await c.schedule("ticks", "bad", "x", cron="99 * * * *")
        with pytest.raises(InvalidRequest, match="every must be at least"):
            await c.schedule("ticks", "bad", "x", every="10ms")


def test_encode_schedule_checks_before_sending() -> None:
    assert encode_schedule("t", "n", "hi", every="5m", priority="high") == (
        b"SCHEDULE t n 2 every=5m priority=high\nhi\n"
    )
    assert encode_schedule("t", "n", b"", cron="0 * * * *", tz="Europe/Paris") == (
        b'SCHEDULE t n 0 cron="0 * * * *" tz="Europe/Paris"\n\n'
    )
    for kwargs in [{}, {"every": 5, "cron": "* * * * *"}, {"every": 5, "tz": "UTC"}]:
        with pytest.raises(ValueError):
            encode_schedule("t", "n", "x", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="schedule name"):
        encode_schedule("t", "../n", "x", every=5)
    with pytest.raises(ValueError, match="cron"):
        encode_schedule("t", "n", "x", cron='0 " *')


async def test_sync_client_schedule_calls(broker: Broker) -> None:
    def session() -> None:
        with SyncClient(port=broker.port) as c:
            first = c.schedule("jobs", "hourly", "go", cron="@hourly", priority="low")
            assert first % 3600 == 0
            (job,) = c.schedules("jobs")
            assert (job.name, job.cron, job.options) == ("hourly", "@hourly", ("priority=low",))
            c.unschedule("jobs", "hourly")
            assert c.schedules() == []

    await asyncio.to_thread(session)


async def test_cli_schedule_add_list_rm(broker: Broker) -> None:
    code, out, err = await linemq(
        broker, "schedule", "add", "jobs", "nightly", "run it", "--cron", "0 2 * * *", "--key", "n"
    )
    assert code == 0, err
    assert out.startswith("scheduled jobs nightly, next ") and out.rstrip().endswith(
        "02:00:00+00:00"
    )
    code, out, _ = await linemq(broker, "schedule", "list", "--json")
    job = json.loads(out)
    assert (job["name"], job["cron"], job["fired"], job["last"], job["options"]) == (
        "nightly",
        "0 2 * * *",
        0,
        None,
        ["key=n"],
    )
    code, out, _ = await linemq(broker, "schedule", "list")
    assert "nightly" in out and "cron 0 2 * * *" in out
    code, out, err = await linemq(broker, "schedule", "add", "jobs", "x", "m", "--every", "1s")
    assert code == 0
    code, _, err = await linemq(broker, "schedule", "add", "jobs", "y", "m")
    assert code != 0 and "give every or cron" in err
    assert (await linemq(broker, "schedule", "rm", "jobs", "nightly"))[1] == (
        "unscheduled jobs nightly\n"
    )
    code, _, err = await linemq(broker, "schedule", "rm", "jobs", "nightly")
    assert code != 0 and "no schedule nightly on jobs" in err
    assert [j.name for j in broker.schedules.listing()] == ["x"]
