"""With --auth-file the API and /metrics take the same tokens and permissions as the port."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from linemq.broker.auth import hash_token
from linemq.broker.server.app import Broker
from tests.conftest import BrokerFactory
from tests.ops.http import Http, dead_letter

ORDERS = "orders-secret-token"
READER = "reader-secret-token"
ADMIN = "admin-secret-token"


def auth_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.toml"
    path.write_text(
        f"""
[[users]]
name = "orders"
token_sha256 = "{hash_token(ORDERS)}"
publish = ["orders"]
subscribe = ["orders"]
manage = ["orders"]

[[users]]
name = "reader"
token_sha256 = "{hash_token(READER)}"
publish = []
subscribe = ["orders"]

[[users]]
name = "admin"
token_sha256 = "{hash_token(ADMIN)}"
publish = [">"]
subscribe = [">"]
manage = [">"]
"""
    )
    return path


async def start(brokers: BrokerFactory, tmp_path: Path) -> Broker:
    return await brokers.start(
        http_port=0,
        auth_file=auth_file(tmp_path),
        ack_timeout=0.05,
        max_retries=0,
        heartbeat_timeout=60.0,
    )


async def test_api_and_metrics_need_a_valid_bearer_token(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    broker = await start(brokers, tmp_path)
    anonymous, wrong = Http(broker), Http(broker, "not-a-token")
    for path in ("/api/stats", "/api/dlq?topic=orders", "/metrics"):
        assert (await anonymous.get(path))[0] == 401
        assert (await wrong.get(path))[0] == 401
    assert await anonymous.post("/api/dlq/purge", {"topic": "orders"}, 401) == {
        "error": "auth required"
    }
    assert (await Http(broker, ADMIN).get("/metrics"))[0] == 200
    assert (await Http(broker, ADMIN).get_json("/api/stats"))["user"] == "admin"


async def test_probes_and_the_page_stay_open(brokers: BrokerFactory, tmp_path: Path) -> None:
    broker = await start(brokers, tmp_path)
    anonymous = Http(broker)
    assert (await anonymous.get("/healthz"))[0] == 200
    assert (await anonymous.get("/readyz"))[0] == 200
    assert (await anonymous.get("/"))[0] == 200


async def test_users_see_only_topics_they_may_subscribe_to(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    broker = await start(brokers, tmp_path)
    await dead_letter_as_admin(broker)
    snap = await Http(broker, ORDERS).get_json("/api/stats")
    assert set(snap["topics"]) == {"orders", "orders.dlq"}
    assert [g["topic"] for g in snap["groups"]] == ["orders"]
    assert set((await Http(broker, ADMIN).get_json("/api/stats"))["topics"]) >= {"payments"}
    await Http(broker, ORDERS).get_json("/api/stats?topic=payments", 403)
    await Http(broker, ORDERS).get_json("/api/dlq?topic=payments", 403)

    _, text = await Http(broker, ORDERS).get("/metrics")
    topics = {
        s.labels["topic"]
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if "topic" in s.labels
    }
    assert topics == {"orders", "orders.dlq"}


async def test_writes_need_the_same_permissions_as_the_commands(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    broker = await start(brokers, tmp_path)
    await dead_letter_as_admin(broker)
    reader, orders = Http(broker, READER), Http(broker, ORDERS)
    replay = {"topic": "orders", "all": True}
    # replay: manage on the topic
    assert await reader.post("/api/dlq/replay", replay, 403) == {"error": "permission denied"}
    await orders.post("/api/dlq/replay", {"topic": "payments", "all": True}, 403)
    assert await orders.post("/api/dlq/replay", replay) == {"replayed": 1, "skipped": 0}
    # purge: manage on the topic, not on its .dlq name
    await reader.post("/api/dlq/purge", {"topic": "orders"}, 403)
    await orders.post("/api/dlq/purge", {"topic": "payments"}, 403)
    assert await orders.post("/api/dlq/purge", {"topic": "orders"}) == {"purged": 1}
    # pause/resume: manage on the topic; reading it is not enough
    group = {"topic": "orders", "group": "workers"}
    await reader.post("/api/groups/pause", group, 403)
    assert (await orders.post("/api/groups/pause", group))["paused"] is True
    await orders.post("/api/groups/pause", {"topic": "payments", "group": "workers"}, 403)


async def dead_letter_as_admin(broker: Broker) -> None:
    for topic in ("orders", "payments"):
        consumer = await dead_letter(broker, topic, "workers", f"{topic} failed", token=ADMIN)
        await consumer.close()
