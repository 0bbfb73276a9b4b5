"""/healthz, /readyz and /metrics of a broker started with --http-port 0."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import BrokerFactory
from tests.ops.http import Http, dead_letter
from tests.server.groupwire import member, next_msg
from tests.wire import Wire


async def test_http_port_zero_binds_an_ephemeral_port_reported_by_the_server(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(http_port=0)
    assert broker.http is not None
    assert broker.http.port > 0
    assert broker.http.port != broker.port


async def test_healthz_is_ok_and_readyz_follows_readiness(brokers: BrokerFactory) -> None:
    broker = await brokers.start(http_port=0)
    http = Http(broker)
    assert await http.get("/healthz") == (200, "ok\n")
    assert (await http.get("/readyz"))[0] == 200
    broker.ready = False  # as during start-up and shutdown
    assert (await http.get("/readyz"))[0] == 503
    assert (await http.get("/healthz"))[0] == 200


async def test_metrics_parse_and_show_published_counts_and_group_lag(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(http_port=0, max_inflight=1)
    consumer = await member(broker.port, "jobs", "workers")
    publisher = await Wire.open(broker.port)
    for i in range(5):
        assert await publisher.cmd(f"PUB jobs job-{i}") == "OK published"
    await next_msg(consumer)  # one in flight, four never delivered: lag 5

    status, text = await Http(broker).get("/metrics")
    assert status == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("linemq_topic_published_total", (("topic", "jobs"),))] == 5
    assert samples[("linemq_published_total", ())] == 5
    group = (("group", "workers"), ("topic", "jobs"))
    assert samples[("linemq_group_lag", group)] == 5
    assert samples[("linemq_group_inflight", group)] == 1
    assert samples[("linemq_group_members", group)] == 1
    assert samples[("linemq_group_paused", group)] == 0
    assert samples[("linemq_connections", ())] == 2
    assert samples[("linemq_publish_latency_seconds_count", ())] == 5
    assert samples[("linemq_publish_latency_seconds_bucket", (("le", "+Inf"),))] == 5
    assert samples[("linemq_deliver_latency_seconds_count", ())] == 1


async def test_publish_latency_counts_every_pipelined_publish(brokers: BrokerFactory) -> None:
    """Runs of publishes share a timestamp and are observed together: none is lost."""
    broker = await brokers.start(http_port=0)
    one, two = await Wire.open(broker.port), await Wire.open(broker.port)
    await one.send("".join(f"PUB a {i}\nPUB b {i}\n" for i in range(200)))
    await two.send("".join(f"PUB a x{i}\n" for i in range(300)))
    assert await one.lines(400) == ["OK published"] * 400
    assert await two.lines(300) == ["OK published"] * 300
    _, text = await Http(broker).get("/metrics")
    samples = {
        (s.name, tuple(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("linemq_publish_latency_seconds_count", ())] == 700
    assert samples[("linemq_publish_latency_seconds_bucket", (("le", "+Inf"),))] == 700
    assert samples[("linemq_published_total", ())] == 700


async def test_metrics_types_and_dead_letter_counters(brokers: BrokerFactory) -> None:
    broker = await brokers.start(http_port=0, ack_timeout=0.05, max_retries=0)
    await dead_letter(broker, "jobs", "workers", "boom")
    _, text = await Http(broker).get("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["linemq_group_dead"].type == "counter"
    assert families["linemq_group_lag"].type == "gauge"
    assert families["linemq_publish_latency_seconds"].type == "histogram"
    dead = families["linemq_group_dead"].samples
    assert [(s.labels, s.value) for s in dead] == [({"topic": "jobs", "group": "workers"}, 1)]
    published = {s.labels["topic"]: s.value for s in families["linemq_topic_published"].samples}
    assert published == {"jobs": 1, "jobs.dlq": 1}
