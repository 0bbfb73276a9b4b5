"""/metrics names and types: every STATS field declared, Prometheus conventions, process metrics."""

from __future__ import annotations

import re
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from linemq.broker.observe import stats
from linemq.broker.ops import metrics
from linemq.broker.ops.metrics import BROKER_FIELDS, GROUP_FIELDS, TOPIC_FIELDS
from linemq.broker.server.app import Broker
from tests.conftest import BrokerFactory
from tests.ops.http import Http, dead_letter
from tests.server.groupwire import member, next_msg
from tests.wire import Wire

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")


async def busy_broker(brokers: BrokerFactory) -> Broker:
    """Topics, a fanout subscriber, a group with an ack, and a dead letter."""
    broker = await brokers.start(http_port=0, ack_timeout=0.05, max_retries=0)
    fan = await Wire.open(broker.port)
    assert await fan.cmd("SUB news") == "OK subscribed news"
    consumer = await member(broker.port, "jobs", "workers")
    publisher = await Wire.open(broker.port)
    assert await publisher.cmd("PUB jobs one") == "OK published"
    assert await publisher.cmd("PUB news hello") == "OK published"
    delivery = await next_msg(consumer)
    assert await consumer.cmd(f"ACK {delivery.id}") == "OK ack_received"
    await dead_letter(broker, "orders", "billing", "declined")
    return broker


async def families(broker: Broker) -> dict[str, Any]:
    status, text = await Http(broker).get("/metrics")
    assert status == 200
    return {f.name: f for f in text_string_to_metric_families(text)}


async def test_every_stats_field_has_a_declared_metric(brokers: BrokerFactory) -> None:
    """A new STATS field must get a name and a type here, or this test fails."""
    broker = await busy_broker(brokers)
    snap = stats.collect(broker.face)
    # damage_<kind> fields are one labelled family, linemq_storage_damage_total{kind=...}
    damage = {k for k in snap.broker if k.startswith("damage_")}
    assert damage == {f"damage_{kind}" for kind in broker.damage.counts()}
    assert set(snap.broker) - damage == set(BROKER_FIELDS)
    exported = await families(broker)
    assert exported["linemq_storage_damage"].type == "counter"
    for fields in snap.topics.values():
        assert set(fields) == set(TOPIC_FIELDS)
    assert snap.groups
    for _, _, fields in snap.groups:
        assert set(fields) == set(GROUP_FIELDS)


async def test_an_undeclared_field_is_not_exported_as_a_gauge(
    brokers: BrokerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = await busy_broker(brokers)

    def with_extra(b: stats.Figures, topic: str | None = None) -> stats.Snapshot:
        snap = stats.collect(b, topic)
        snap.broker["shiny_new_counter"] = 7
        return snap

    monkeypatch.setattr(metrics, "collect", with_extra)
    found = await families(broker)
    assert not [name for name in found if "shiny" in name]
    assert found["linemq_published"].type == "counter"


async def test_metric_names_follow_prometheus_conventions(brokers: BrokerFactory) -> None:
    found = await families(await busy_broker(brokers))
    ours = {name: f for name, f in found.items() if name.startswith("linemq_")}
    for name, family in ours.items():
        assert NAME.match(name), name
        assert family.documentation, name
        if family.type == "counter":
            assert all(s.name == name + "_total" for s in family.samples), name
        else:
            assert not name.endswith("_total"), name
        words = name.split("_")
        if "bytes" in words and not family.documentation.startswith("Deprecated"):
            assert words[-1] == "bytes", f"{name}: a unit goes last"
    # Counters are typed as counters, gauges as gauges: no field falls back to a default.
    assert ours["linemq_group_expired"].type == "counter"
    assert ours["linemq_group_dead"].type == "counter"
    assert ours["linemq_group_lag"].type == "gauge"
    assert ours["linemq_acked"].type == "counter"


async def test_disk_bytes_are_storage_bytes_and_the_old_name_is_deprecated(
    brokers: BrokerFactory,
) -> None:
    broker = await busy_broker(brokers)
    found = await families(broker)
    size = sum(t.size_bytes for name in broker.store.topics() if (t := broker.store.get(name)))
    assert size > 0
    assert found["linemq_storage_bytes"].samples[0].value == size
    old = found["linemq_bytes_on_disk"]
    assert old.documentation.startswith("Deprecated: use linemq_storage_bytes")
    assert old.samples[0].value == size


async def test_process_platform_and_gc_metrics_are_exported(brokers: BrokerFactory) -> None:
    found = await families(await busy_broker(brokers))

    def one(name: str) -> Sample:
        return found[name].samples[0]

    assert one("process_resident_memory_bytes").value > 1_000_000
    assert one("process_open_fds").value >= 4  # listeners, a data file, our connections
    assert found["process_cpu_seconds"].type == "counter"
    assert one("process_cpu_seconds").value > 0
    assert one("process_start_time_seconds").value > 0
    assert found["python_gc_collections"].type == "counter"
    assert {s.labels["generation"] for s in found["python_gc_collections"].samples} >= {"0", "1"}
    assert "implementation" in one("python_info").labels


async def test_metrics_with_auth_show_process_metrics_but_only_readable_topics(
    brokers: BrokerFactory, tmp_path: Any
) -> None:
    from linemq.broker.auth import hash_token

    users = tmp_path / "users.toml"
    users.write_text(
        f'[[users]]\nname = "a"\ntoken_sha256 = "{hash_token("tok-a")}"\n'
        'publish = [">"]\nsubscribe = ["a.>"]\n'
    )
    broker = await brokers.start(http_port=0, auth_file=users)
    w = await Wire.open(broker.port)
    assert await w.cmd("AUTH tok-a") == "OK authenticated"
    assert await w.cmd("PUB a.one x") == "OK published"
    assert await w.cmd("PUB b.two y") == "OK published"
    status, text = await Http(broker, "tok-a").get("/metrics")
    assert status == 200
    found = {f.name: f for f in text_string_to_metric_families(text)}
    topics = {s.labels["topic"] for s in found["linemq_topic_published"].samples}
    assert topics == {"a.one"}
    assert found["process_resident_memory_bytes"].samples
    assert (await Http(broker).get("/metrics"))[0] == 401
