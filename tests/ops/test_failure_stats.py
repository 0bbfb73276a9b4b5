"""Failure counters per group (STATS, /metrics), the broker-wide subscriber count, and the
failure-rate check of /readyz."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from linemq.broker.storage.tail_cache import TAIL_RECORDS
from tests.conftest import BrokerFactory, BrokerProcess, eventually
from tests.ops.http import Http
from tests.server.groupwire import member, next_msg
from tests.wire import Wire


def fields(line: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in line.split() if "=" in word)


async def stats(w: Wire) -> dict[str, dict[str, str]]:
    await w.send("STATS\n")
    lines = await w.until("OK stats end")
    return {
        " ".join(w for w in line.split() if "=" not in w): fields(line)
        for line in lines
        if "=" in line
    }


async def test_failures_are_counted_by_kind_and_trip_the_readyz_check(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(
        http_port=0, max_inflight=20, ack_timeout=1.0, retry_backoff_base=30, retry_backoff_max=60
    )
    http = Http(broker)
    worker = await member(broker.port, "jobs", "workers")
    fan = await Wire.open(broker.port)
    assert await fan.cmd("SUB jobs") == "OK subscribed jobs"
    admin = await Wire.open(broker.port)
    for i in range(13):
        assert await admin.cmd(f"PUB jobs m{i}") == "OK published"
    ids = [(await next_msg(worker)).id for _ in range(13)]
    # In one write, so that none of them times out first (under load too); ids[12] will.
    lines = [f"NACK {id} 60" for id in ids[:9]] + [f"TERM {ids[9]} broken"]
    lines += [f"ACK {id}" for id in ids[10:12]]
    await worker.send("".join(f"{line}\n" for line in lines))
    replies = [await worker.line() for _ in lines]
    assert replies == ["OK nack_received"] * 9 + ["OK terminated"] + ["OK ack_received"] * 2

    group_state = broker.router.groups["jobs"]["workers"]
    await eventually(lambda: group_state.failures.get("ack_timeout") == 1)
    group = (await stats(admin))["STAT group jobs workers"]
    assert {k: group[k] for k in ("failures", "nacks", "terms", "ack_timeouts")} == {
        "failures": "11",
        "nacks": "9",
        "terms": "1",
        "ack_timeouts": "1",
    }
    assert group["consumer_deaths"] == "0"
    broker_line = (await stats(admin))["STAT broker"]
    assert (broker_line["subscribers"], broker_line["memberships"], broker_line["failures"]) == (
        "2",
        "1",
        "11",
    )

    assert await http.get("/readyz") == (200, "ready\n")  # off by default
    assert (await http.get("/readyz?max_failure_rate=0.9"))[0] == 200
    status, body = await http.get("/readyz?max_failure_rate=0.5")
    assert status == 503
    assert body.splitlines()[1] == "failure_rate jobs workers 0.846 failures=11 acked=2"
    assert (await http.get("/readyz?max_failure_rate=2"))[0] == 400
    snap = await http.get_json("/api/stats")
    (group,) = snap["groups"]
    assert (group["failure_rate"], group["terms"], snap["failure_rate_window"]) == (0.8462, 1, 300)

    status, text = await http.get("/metrics")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    labels = (("group", "workers"), ("topic", "jobs"))
    assert samples[("linemq_group_nacks_total", labels)] == 9
    assert samples[("linemq_group_failures_total", labels)] == 11
    assert samples[("linemq_subscribers", ())] == 2
    assert samples[("linemq_memberships", ())] == 1
    assert samples[("linemq_failures_total", ())] == 11

    # A member that dies holding messages: counted, and the totals never fall after DELETE.
    assert await admin.cmd("PUB jobs last") == "OK published"
    await next_msg(worker)
    await worker.close()
    await eventually(lambda: broker.router.groups["jobs"]["workers"].members == [])
    group = (await stats(admin))["STAT group jobs workers"]
    assert group["consumer_deaths"] == "1"
    total = int((await stats(admin))["STAT broker"]["failures"])
    assert await admin.cmd("DELETE jobs workers") == "OK deleted jobs workers"
    assert int((await stats(admin))["STAT broker"]["failures"]) == total


async def test_the_configured_threshold_applies_to_every_probe(brokers: BrokerFactory) -> None:
    broker = await brokers.start(http_port=0, max_failure_rate=0.5, max_inflight=20)
    http = Http(broker)
    worker = await member(broker.port, "jobs", "workers")
    admin = await Wire.open(broker.port)
    assert await http.get("/readyz") == (200, "ready\n")
    for i in range(10):
        assert await admin.cmd(f"PUB jobs m{i}") == "OK published"
    for id in [(await next_msg(worker)).id for _ in range(10)]:
        assert await worker.cmd(f"NACK {id} 60") == "OK nack_received"
    status, body = await http.get("/readyz")
    assert status == 503 and body.startswith("failing: failure rate over 0.5 in the last 300s\n")
    assert (await http.get("/readyz?max_failure_rate=1"))[0] == 200


def test_failure_counters_survive_kill_9_and_a_clean_restart(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    args = ("--ack-timeout", "1", "--max-retries", "5", "--retry-backoff-base", "30")
    b = broker_process(*args, "--retry-backoff-max", "60", "--max-inflight", "20")
    expected = {
        "failures": "5",
        "nacks": "2",
        "terms": "1",
        "ack_timeouts": "1",
        "consumer_deaths": "1",
        "acked": "1",
        "dead": "1",
    }

    async def fail_every_way_then_kill() -> None:
        admin = await Wire.open(b.port)

        async def counted(field: str) -> None:
            for _ in range(200):
                if (await stats(admin))["STAT group jobs workers"][field] == "1":
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"{field} not counted")

        worker = await member(b.port, "jobs", "workers")
        for name in ("nacked", "termed", "acked", "timed_out"):
            assert await admin.cmd(f"PUB jobs {name}") == "OK published"
        nacked, termed, acked, _ = [await next_msg(worker) for _ in range(4)]
        assert await worker.cmd(f"NACK {nacked.id} 60") == "OK nack_received"
        assert await worker.cmd(f"TERM {termed.id} broken") == "OK terminated"
        assert await worker.cmd(f"ACK {acked.id}") == "OK ack_received"
        await counted("ack_timeouts")
        assert await admin.cmd("PUB jobs held") == "OK published"
        await next_msg(worker)
        await worker.close()  # a member that dies holding a message
        await counted("consumer_deaths")
        again = await member(b.port, "jobs", "workers")
        redelivered = await next_msg(again)
        assert await again.cmd(f"NACK {redelivered.id} 60") == "OK nack_received"
        b.kill9()

    asyncio.run(fail_every_way_then_kill())

    async def figures(port: int) -> tuple[dict[str, str], str]:
        admin = await Wire.open(port)
        s = await stats(admin)
        await admin.close()
        group = s["STAT group jobs workers"]
        return {k: group[k] for k in expected}, s["STAT broker"]["failures"]

    b = broker_process(*args)
    assert asyncio.run(figures(b.port)) == (expected, "5")
    assert b.terminate() == 0
    b = broker_process(*args)
    assert asyncio.run(figures(b.port)) == (expected, "5")


async def test_a_last_failure_read_back_from_disk_is_counted_once(
    brokers: BrokerFactory,
) -> None:
    # The message's record left the in-memory tail while it was out: its letter waits for
    # a read from disk, its failure does not (and is not counted again by the letter).
    broker = await brokers.start(ack_timeout=10, max_retries=0, max_inflight=1)
    m = await member(broker.port, "q", "g")
    admin = await Wire.open(broker.port)
    assert await admin.cmd("PUB q old task") == "OK published"
    d = await next_msg(m)
    await admin.send("".join(f"PUB q newer {i}\n" for i in range(TAIL_RECORDS + 100)))
    await admin.lines(TAIL_RECORDS + 100)
    assert await m.cmd(f"NACK {d.id}") == "OK nack_received"
    assert (await stats(admin))["STAT group q g"]["nacks"] == "1"
    await eventually(lambda: broker.router.groups["q"]["g"].state.dead == 1)
    await m.send("UNSUB q g\n")  # a clean leave: what it holds goes back, no failure
    await m.until("OK unsubscribed q from group g")
    await m.close()
    await admin.close()
    broker = await brokers.restart(broker)
    admin = await Wire.open(broker.port)
    group = (await stats(admin))["STAT group q g"]
    assert (group["failures"], group["nacks"], group["dead"]) == ("1", "1", "1")


async def test_the_failure_rate_is_of_the_window_and_failures_before_a_restart_stay_out(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(http_port=0, max_inflight=20, failure_rate_window=60)
    worker = await member(broker.port, "jobs", "workers")
    admin = await Wire.open(broker.port)
    for i in range(10):
        assert await admin.cmd(f"PUB jobs m{i}") == "OK published"
    for id in [(await next_msg(worker)).id for _ in range(10)]:
        assert await worker.cmd(f"NACK {id} 60") == "OK nack_received"
    (group,) = (await Http(broker).get_json("/api/stats"))["groups"]
    assert (group["failures"], group["failure_rate"]) == (10, 1.0)
    await worker.close()
    await admin.close()

    broker = await brokers.restart(broker, max_failure_rate=0.5)
    http = Http(broker)
    (group,) = (await http.get_json("/api/stats"))["groups"]
    assert (group["failures"], group["nacks"], group["failure_rate"]) == (10, 10, None)
    assert await http.get("/readyz") == (200, "ready\n")
