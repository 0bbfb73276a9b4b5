"""Prometheus metrics, read from the same snapshot as ``STATS`` at scrape time.

Nothing is counted per message for Prometheus: the broker already keeps its
counters (and two fixed-bucket histograms), so a custom collector turns one
``collect(broker)`` into metric families when Prometheus asks. Every ``STATS``
field has an entry in the tables below saying its metric name and type; a field
without one is not exported (a test fails instead), so a counter never ships as
a gauge by accident. The process, platform and GC collectors of
``prometheus_client`` add CPU, memory, file descriptors and GC passes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from linemq.broker.observe.histogram import Histogram
from linemq.broker.observe.stats import collect, filter_snapshot
from linemq.broker.ops.port import Operations

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
PREFIX: Final = "linemq"


@dataclass(frozen=True, slots=True)
class Field:
    """How one ``STATS`` field is exported.

    ``name`` has no prefix and, for a counter, no ``_total``: the exposition adds
    it. ``deprecated`` is an old name still exported with the same value.
    """

    name: str
    type: Literal["counter", "gauge"]
    help: str
    deprecated: str | None = None


def _counter(name: str, help: str) -> Field:
    return Field(name, "counter", help)


def _gauge(name: str, help: str, deprecated: str | None = None) -> Field:
    return Field(name, "gauge", help, deprecated)


BROKER_FIELDS: Final[dict[str, Field]] = {
    "uptime_seconds": _gauge("uptime_seconds", "Seconds since the broker started."),
    "connections": _gauge("connections", "Open client connections."),
    "topics": _gauge("topics", "Topics on disk."),
    "published": _counter("published", "Messages published since the broker started."),
    "delivered": _counter("delivered", "Fanout and group deliveries since the broker started."),
    "redelivered": _counter("redelivered", "Group redeliveries since the broker started."),
    "acked": _counter("acked", "Messages acknowledged by groups (durable)."),
    "dead_lettered": _counter("dead_lettered", "Messages moved to a dead-letter topic (durable)."),
    "inflight": _gauge("inflight", "Group deliveries waiting for an ack."),
    "failures": _counter(
        "failures",
        "Failed group deliveries (nacks, ack timeouts, dead members, terms; durable).",
    ),
    "subscribers": _gauge(
        "subscribers", "Connections with a subscription or a group membership (consumers)."
    ),
    "memberships": _gauge("memberships", "Group memberships, over every group."),
    "schedules": _gauge("schedules", "Repeatable jobs (SCHEDULE) stored."),
    "schedule_fires": _counter(
        "schedule_fires", "Messages published by repeatable jobs since the broker started."
    ),
    "bytes_on_disk": _gauge(
        "storage_bytes", "Bytes of every topic's segment files.", deprecated="bytes_on_disk"
    ),
}
TOPIC_FIELDS: Final[dict[str, Field]] = {
    "published": _counter("published", "Messages published to the topic since the broker started."),
    "last_offset": _gauge("last_offset", "Offset of the topic's newest message."),
    "first_offset": _gauge("first_offset", "Offset of the topic's oldest kept message."),
    "bytes": _gauge("bytes", "Bytes of the topic's segment files."),
    "segments": _gauge("segments", "Segment files of the topic."),
    "subscribers": _gauge("subscribers", "Fanout subscribers of the topic."),
    "groups": _gauge("groups", "Consumer groups of the topic."),
}
GROUP_FIELDS: Final[dict[str, Field]] = {
    "members": _gauge("members", "Connected members of the group."),
    "inflight": _gauge("inflight", "Messages delivered to the group and not yet acked."),
    "waiting": _gauge("waiting", "Failed messages waiting for their retry or for a member."),
    "lag": _gauge("lag", "Messages the group has not finished."),
    "acked": _counter("acked", "Messages the group acknowledged (durable)."),
    "dead": _counter("dead", "Messages the group dead-lettered (durable)."),
    "next_offset": _gauge("next_offset", "The next offset never delivered to the group."),
    "paused": _gauge("paused", "1 while the group is paused."),
    "delivered": _counter("delivered", "Deliveries to the group since the broker started."),
    "redelivered": _counter("redelivered", "Redeliveries to the group since the broker started."),
    "dropped": _counter(
        "dropped", "Messages retention deleted before the group finished them (durable)."
    ),
    "expired": _counter(
        "expired", "Messages whose TTL passed before the group took them (durable)."
    ),
    "failures": _counter("failures", "Failed deliveries of the group (durable)."),
    "nacks": _counter("nacks", "Deliveries of the group NACKed (durable)."),
    "ack_timeouts": _counter(
        "ack_timeouts", "Deliveries of the group not acked in time (durable)."
    ),
    "consumer_deaths": _counter(
        "consumer_deaths", "Deliveries whose member died or disconnected holding them (durable)."
    ),
    "terms": _counter("terms", "Deliveries of the group TERMed (durable)."),
    "filtered": _counter(
        "filtered", "Messages passed over without delivery: not matching its filter (durable)."
    ),
    "rate_limited": _counter(
        "rate_limited", "Times the group's deliveries waited for its rate limit, since start."
    ),
}


class Metrics:
    """The broker's registry: the process, platform and GC collectors, made once.

    The broker's own families are built per scrape, because what a scrape may
    see depends on the token it brings (``visible``).
    """

    def __init__(self, broker: Operations) -> None:
        self.broker = broker
        self.registry = CollectorRegistry(auto_describe=False)
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)

    def render(self, visible: Callable[[str], bool] | None = None) -> bytes:
        """The text exposition format for one scrape."""
        return generate_latest(_Chain(self.registry, BrokerCollector(self.broker, visible)))


class _Chain(Collector):
    def __init__(self, *parts: Collector) -> None:
        self.parts = parts

    def collect(self) -> Iterator[Metric]:
        for part in self.parts:
            yield from part.collect()


class BrokerCollector(Collector):
    """Metric families of one broker; ``visible`` limits topics to what a user may read."""

    def __init__(self, broker: Operations, visible: Callable[[str], bool] | None = None) -> None:
        self.broker = broker
        self.visible = visible

    def collect(self) -> Iterator[Metric]:
        snap = collect(self.broker)
        if self.visible is not None:
            snap = filter_snapshot(snap, self.visible)
        plain = {k: v for k, v in snap.broker.items() if not k.startswith("damage_")}
        yield from _families(f"{PREFIX}_", BROKER_FIELDS, [((), (), plain)])
        damage = CounterMetricFamily(
            f"{PREFIX}_storage_damage",
            "Damage found on disk since start, by kind (record, segment, lost_offsets, "
            "journal_line, unopenable): each place counted once.",
            labels=["kind"],
        )
        for kind, n in self.broker.damage_counts().items():
            damage.add_metric([kind], n)
        yield damage
        topics = [(("topic",), (t,), f) for t, f in snap.topics.items()]
        yield from _families(f"{PREFIX}_topic_", TOPIC_FIELDS, topics)
        groups = [(("topic", "group"), (t, g), f) for t, g, f in snap.groups]
        yield from _families(f"{PREFIX}_group_", GROUP_FIELDS, groups)
        yield _histogram(
            f"{PREFIX}_publish_latency_seconds",
            "From a publish being accepted to its record being written.",
            self.broker.publish_latency,
        )
        yield _histogram(
            f"{PREFIX}_deliver_latency_seconds",
            "From publish to first delivery, per group delivery.",
            self.broker.deliver_latency,
        )


# (label names, label values, fields) for one broker, topic or group.
Row = tuple[tuple[str, ...], tuple[str, ...], Mapping[str, float]]


def _families(prefix: str, known: Mapping[str, Field], rows: Sequence[Row]) -> Iterator[Metric]:
    labels = list(rows[0][0]) if rows else []
    for key, spec in known.items():
        names = [(spec.name, spec.help)]
        if spec.deprecated is not None:
            names.append((spec.deprecated, f"Deprecated: use {prefix}{spec.name}. {spec.help}"))
        for name, doc in names:
            family: CounterMetricFamily | GaugeMetricFamily
            if spec.type == "counter":
                family = CounterMetricFamily(prefix + name, doc, labels=labels)
            else:
                family = GaugeMetricFamily(prefix + name, doc, labels=labels)
            for _, values, fields in rows:
                if key in fields:
                    family.add_metric(list(values), fields[key])
            yield family


def _histogram(name: str, doc: str, hist: Histogram) -> HistogramMetricFamily:
    buckets = [(_le(bound), float(n)) for bound, n in hist.cumulative()]
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=hist.sum)


def _le(bound: float) -> str:
    """A bucket bound as Prometheus writes it (``0.005``, ``+Inf``)."""
    return "+Inf" if math.isinf(bound) else repr(bound)
