"""The JSON API: stats, dead letters, replay, purge, pause, resume and group deletion."""

from __future__ import annotations

import aiohttp

from tests.conftest import BrokerFactory
from tests.ops.http import Http, dead_letter
from tests.server.groupwire import member, next_msg
from tests.wire import Wire

FAST_DLQ = {"http_port": 0, "ack_timeout": 0.05, "max_retries": 0, "heartbeat_timeout": 60.0}


async def test_stats_lists_topics_and_groups(brokers: BrokerFactory) -> None:
    broker = await brokers.start(http_port=0)
    consumer = await member(broker.port, "jobs", "workers")
    publisher = await Wire.open(broker.port)
    assert await publisher.cmd("PUB jobs one") == "OK published"
    await next_msg(consumer)
    assert await publisher.cmd("PUB other two") == "OK published"

    snap = await Http(broker).get_json("/api/stats")
    assert snap["user"] is None
    assert snap["broker"]["published"] == 2
    assert snap["topics"]["jobs"]["published"] == 1
    assert set(snap["topics"]) == {"jobs", "other"}
    (group,) = snap["groups"]
    assert group["topic"] == "jobs" and group["group"] == "workers"
    assert group["members"] == 1 and group["inflight"] == 1 and group["lag"] == 1

    one = await Http(broker).get_json("/api/stats?topic=other")
    assert set(one["topics"]) == {"other"} and one["groups"] == []


async def test_dlq_lists_letters_with_failure_metadata_and_arbitrary_text(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(**FAST_DLQ)
    text = '<script>alert("x")</script> & "quotes"'
    await dead_letter(broker, "jobs", "workers", text)
    body = await Http(broker).get_json("/api/dlq?topic=jobs&n=10")
    assert body["topic"] == "jobs"
    (letter,) = body["letters"]
    assert letter["msg"] == text
    assert letter["group"] == "workers"
    assert letter["reason"] == "ack_timeout"
    assert letter["attempts"] == 1
    assert letter["dlq_offset"] == 1
    assert letter["replayed"] is None
    assert (await Http(broker).get_json("/api/dlq?topic=none"))["letters"] == []


async def test_replay_via_api_delivers_to_a_group_member(brokers: BrokerFactory) -> None:
    broker = await brokers.start(**FAST_DLQ)
    consumer = await dead_letter(broker, "jobs", "workers", "try again")
    http = Http(broker)
    (letter,) = (await http.get_json("/api/dlq?topic=jobs"))["letters"]

    assert await http.post("/api/dlq/replay", {"topic": "jobs", "id": letter["id"]}) == {
        "replayed": 1,
        "skipped": 0,
    }
    redelivered = await next_msg(consumer)
    assert redelivered.text == "try again"
    assert redelivered.id != letter["id"]
    assert await consumer.cmd(f"ACK {redelivered.id}") == "OK ack_received"

    (after,) = (await http.get_json("/api/dlq?topic=jobs"))["letters"]
    assert after["replayed"]["offset"] == redelivered.offset
    assert await http.post("/api/dlq/replay", {"topic": "jobs", "all": True}) == {
        "replayed": 0,
        "skipped": 0,
    }


async def test_replay_all_and_unknown_id(brokers: BrokerFactory) -> None:
    broker = await brokers.start(**FAST_DLQ)
    consumer = await dead_letter(broker, "jobs", "workers", "first")
    await consumer.close()
    consumer = await dead_letter(broker, "jobs", "workers", "second")
    http = Http(broker)
    missing = await http.post("/api/dlq/replay", {"topic": "jobs", "id": "msg_nope"}, 404)
    assert missing == {"error": "dead letter msg_nope not found in jobs.dlq"}
    assert await http.post("/api/dlq/replay", {"topic": "jobs", "all": True}) == {
        "replayed": 2,
        "skipped": 0,
    }
    texts = {(await next_msg(consumer)).text for _ in range(2)}
    assert texts == {"first", "second"}


async def test_purge_deletes_the_dead_letters(brokers: BrokerFactory) -> None:
    broker = await brokers.start(**FAST_DLQ)
    await dead_letter(broker, "jobs", "workers", "doomed")
    http = Http(broker)
    assert await http.post("/api/dlq/purge", {"topic": "jobs"}) == {"purged": 1}
    assert (await http.get_json("/api/dlq?topic=jobs"))["letters"] == []
    assert await http.post("/api/dlq/purge", {"topic": "jobs"}) == {"purged": 0}


async def test_pause_and_resume_a_group(brokers: BrokerFactory) -> None:
    broker = await brokers.start(http_port=0)
    consumer = await member(broker.port, "jobs", "workers")
    http = Http(broker)
    body = {"topic": "jobs", "group": "workers"}
    assert await http.post("/api/groups/pause", body) == {**body, "paused": True}
    publisher = await Wire.open(broker.port)
    assert await publisher.cmd("PUB jobs held") == "OK published"
    assert await consumer.silent(0.2)
    (group,) = (await http.get_json("/api/stats"))["groups"]
    assert group["paused"] == 1 and group["lag"] == 1

    assert await http.post("/api/groups/resume", body) == {**body, "paused": False}
    assert (await next_msg(consumer)).text == "held"
    assert broker.router.groups["jobs"]["workers"].state.journal.has_pending is False

    unknown = {"topic": "jobs", "group": "nobody"}
    assert await http.post("/api/groups/pause", unknown, 404) == {
        "error": "no group nobody on jobs"
    }


async def test_pause_survives_a_restart(brokers: BrokerFactory) -> None:
    broker = await brokers.start(http_port=0)
    await member(broker.port, "jobs", "workers")
    await Http(broker).post("/api/groups/pause", {"topic": "jobs", "group": "workers"})
    broker = await brokers.restart(broker)
    assert broker.router.groups["jobs"]["workers"].counters()["paused"] == 1


async def test_bad_requests_are_refused_with_a_reason(brokers: BrokerFactory) -> None:
    broker = await brokers.start(http_port=0)
    http = Http(broker)
    assert await http.post("/api/dlq/purge", {"topic": "../etc"}, 400) == {
        "error": "invalid topic name"
    }
    assert (await http.post("/api/dlq/replay", {"topic": "jobs"}, 400))["error"]
    assert (await http.get_json("/api/dlq?topic=jobs&n=x", 400))["error"] == "n must be an integer"
    assert (await http.post("/api/dlq/purge", ["jobs"], 400))[
        "error"
    ] == "body must be a JSON object"
    # A form post (what another web page could send without a preflight) is refused.
    async with (
        aiohttp.ClientSession() as s,
        s.post(http.base + "/api/dlq/purge", data={"topic": "jobs"}) as r,
    ):
        assert r.status == 415
    assert (await http.get("/api/nothing"))[0] == 404


async def test_dashboard_page_is_served_with_a_strict_content_security_policy(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(http_port=0)
    http = Http(broker)
    async with aiohttp.ClientSession() as s, s.get(http.base + "/") as r:
        assert r.status == 200
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        assert "<title>linemq</title>" in await r.text()
    for path in ("/static/app.js", "/static/style.css"):
        assert (await http.get(path))[0] == 200


async def test_changes_are_answered_after_the_fsync_with_fsync_always(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(**FAST_DLQ, fsync="always")
    consumer = await dead_letter(broker, "jobs", "workers", "durable")
    http = Http(broker)
    assert await http.post("/api/dlq/replay", {"topic": "jobs", "all": True}) == {
        "replayed": 1,
        "skipped": 0,
    }
    assert broker.engine.durable_gen >= broker.engine.gen - 1
    assert (await next_msg(consumer)).text == "durable"
    body = {"topic": "jobs", "group": "workers"}
    assert (await http.post("/api/groups/pause", body))["paused"] is True
    assert not broker.router.groups["jobs"]["workers"].state.journal.has_pending


async def test_on_loopback_only_requests_naming_a_loopback_host_are_answered(
    brokers: BrokerFactory,
) -> None:
    # A page whose name was made to resolve to 127.0.0.1 (DNS rebinding) sends its
    # own name as Host; without --auth-file it would otherwise reach the API.
    broker = await brokers.start(http_port=0)
    assert broker.http is not None
    url = f"http://127.0.0.1:{broker.http.port}"
    port = broker.http.port
    async with aiohttp.ClientSession() as s:
        for host in (f"rebound.example:{port}", "rebound.example", f"10.1.2.3:{port}"):
            for method, path in (("GET", "/api/stats"), ("POST", "/api/purge"), ("GET", "/")):
                async with s.request(method, url + path, headers={"Host": host}, json={}) as r:
                    assert r.status == 403, (host, path)
                    assert await r.json() == {
                        "error": "host not allowed: use localhost or a loopback address"
                    }
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost"):
            async with s.get(url + "/api/stats", headers={"Host": host}) as r:
                assert r.status == 200, host


async def test_delete_a_group(brokers: BrokerFactory) -> None:
    broker = await brokers.start(http_port=0)
    consumer = await member(broker.port, "jobs", "workers")
    http = Http(broker)
    body = {"topic": "jobs", "group": "workers"}
    assert await http.post("/api/groups/delete", body, 409) == {"error": "group has members"}
    assert await http.post("/api/groups/delete", {**body, "force": "yes"}, 400) == {
        "error": '"force" must be true or false'
    }
    assert await http.post("/api/groups/delete", {**body, "force": True}) == {
        **body,
        "deleted": True,
    }
    assert (await http.get_json("/api/stats"))["groups"] == []
    _, metrics = await http.get("/metrics")
    assert 'group="workers"' not in metrics
    assert await http.post("/api/groups/delete", body, 404) == {"error": "no group workers on jobs"}
    assert await consumer.cmd("SUB jobs.* billing") == "OK subscribed jobs.* in group billing"
    assert await consumer.cmd("UNSUB jobs.* billing") == "OK unsubscribed jobs.* from group billing"
    pattern = {"topic": "jobs.*", "group": "billing"}
    assert await http.post("/api/groups/delete", pattern) == {**pattern, "deleted": True}
    assert await http.post("/api/groups/delete", {"topic": "jobs..x", "group": "g"}, 400) == {
        "error": "invalid topic name"
    }
