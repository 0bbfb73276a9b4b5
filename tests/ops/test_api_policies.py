"""The JSON API's view of per-group policies, header filters and repeatable jobs."""

from __future__ import annotations

from pathlib import Path

from linemq.broker.config import parse_topic_policy
from tests.conftest import BrokerFactory
from tests.ops.http import Http, wire
from tests.server.users import ADMIN, TEAM, TOKENS, start
from tests.wire import Wire


async def schedule(w: Wire, topic: str, name: str, payload: str, *options: str) -> str:
    head = " ".join((f"SCHEDULE {topic} {name} {len(payload.encode())}", *options))
    await w.send(f"{head}\n{payload}\n")
    return await w.line()


async def test_stats_groups_carry_their_effective_policy_and_filter(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(
        http_port=0, ack_timeout=30.0, topic_policy=(parse_topic_policy("jobs=max_retries:5"),)
    )
    w = await Wire.open(broker.port)
    assert await w.cmd("SUB jobs workers") == "OK subscribed jobs in group workers"
    assert await w.cmd("SUB jobs mail filter=h.channel=sms|email") == (
        "OK subscribed jobs in group mail"
    )
    assert await w.cmd("POLICY jobs workers rate=100/1s backoff=fixed:5s") == (
        "OK policy set jobs workers"
    )
    assert await w.cmd("PUB jobs no headers") == "OK published"  # the filter passes it over
    http = Http(broker)

    async def groups() -> dict[str, dict[str, object]]:
        snap = await http.get_json("/api/stats")
        return {g["group"]: g for g in snap["groups"]}

    by_name = await groups()
    workers, mail = by_name["workers"], by_name["mail"]
    assert workers["policy"] == {
        "max_retries": "5",
        "backoff": "fixed:5s",
        "ack_timeout": "30s",
        "max_inflight": "5",
        "ordering": "key",
        "rate": "100/1s",
        "nack_backoff": "on",
        "source": "jobs",
        "overrides": ["backoff", "rate"],
    }
    assert workers["filter"] is None
    assert mail["filter"] == ["h.channel=email|sms"]
    assert mail["policy"]["overrides"] == []  # type: ignore[index]
    for _ in range(100):  # the filter is applied as the group takes the message
        if (await groups())["mail"]["filtered"] == 1:
            break
    assert (await groups())["mail"]["filtered"] == 1


async def test_schedules_lists_every_and_cron_jobs(brokers: BrokerFactory) -> None:
    broker = await brokers.start(http_port=0)
    w = await Wire.open(broker.port)
    assert (
        await schedule(w, "reports", "nightly", "build", 'cron="0 2 * * *"', "key=n")
    ).startswith("OK scheduled reports nightly next=")
    assert (await schedule(w, "reports", "often", "tick", "every=5m")).startswith("OK scheduled")
    assert (
        await schedule(w, "audit", "weekly", "x", 'cron="@weekly"', 'tz="Europe/Paris"')
    ).startswith("OK scheduled")
    http = Http(broker)
    body = await http.get_json("/api/schedules")
    names = [(j["topic"], j["name"]) for j in body["schedules"]]
    assert names == [("audit", "weekly"), ("reports", "nightly"), ("reports", "often")]
    weekly, nightly, often = body["schedules"]
    assert (
        weekly["cron"] == "@weekly" and weekly["tz"] == "Europe/Paris" and weekly["every"] is None
    )
    assert nightly["options"] == ["key=n"] and nightly["bytes"] == 5 and nightly["fired"] == 0
    assert nightly["last"] is None and nightly["next"] % 86400 == 7200
    assert often["every"] == "5m" and often["cron"] is None and often["tz"] is None
    one = await http.get_json("/api/schedules?topic=audit")
    assert [j["name"] for j in one["schedules"]] == ["weekly"]
    assert (await http.get_json("/api/schedules?topic=nothing"))["schedules"] == []
    assert await http.get_json("/api/schedules?topic=bad..name", 400) == {
        "error": "invalid topic name"
    }


async def test_schedules_shows_fired_and_last_after_a_firing(brokers: BrokerFactory) -> None:
    broker = await brokers.start(http_port=0, schedule_min_every=0.05)
    w = await Wire.open(broker.port)
    assert await w.cmd("SUB beats") == "OK subscribed beats"
    assert (await schedule(w, "beats", "beat", "alive", "every=100ms")).startswith("OK scheduled")
    assert (await w.line()).endswith(" alive")
    http = Http(broker)
    for _ in range(200):
        (job,) = (await http.get_json("/api/schedules"))["schedules"]
        if job["fired"] >= 1:
            break
    assert job["fired"] >= 1 and job["last"] is not None and job["next"] > job["last"]


async def test_schedules_respect_publish_or_subscribe_permission(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    broker = await start(brokers, tmp_path, http_port=0)
    admin = await wire(broker, ADMIN)
    for topic in ("orders", "orders.eu", "secret"):
        assert (await schedule(admin, topic, "job", "x", "every=1h")).startswith("OK scheduled")
    expect = {
        "publish": ["orders"],
        "subscribe": ["orders"],
        "manage": [],
        "none": [],
    }
    for user, topics in expect.items():
        http = Http(broker, TOKENS[user])
        listed = (await http.get_json("/api/schedules"))["schedules"]
        assert [j["topic"] for j in listed] == topics, user
        status = 200 if topics else 403
        await http.get_json("/api/schedules?topic=orders", status)
    team = Http(broker, TEAM)
    assert [j["topic"] for j in (await team.get_json("/api/schedules"))["schedules"]] == [
        "orders.eu"
    ]
    await team.get_json("/api/schedules?topic=secret", 403)
