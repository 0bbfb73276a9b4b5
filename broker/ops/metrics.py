"""Prometheus metrics, read from the same snapshot as ``STATS`` at scrape time.

Nothing is counted per message for Prometheus: the broker already keeps its
counters (and two fixed-bucket histograms), so a custom collector turns one
``collect(broker)`` into metric families when Prometheus asks. Keys the broker
adds to ``STATS`` later still show up, as gauges, without a change here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from broker.observe.histogram import Histogram
from broker.observe.stats import Snapshot, collect

if TYPE_CHECKING:
    from broker.server.app import Broker

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
PREFIX: Final = "linemq"

# key -> (is a counter, help). Keys not listed here are exported as gauges.
BROKER_FIELDS: Final[dict[str, tuple[bool, str]]] = {
    "uptime_seconds": (False, "Seconds since the broker started."),
    "connections": (False, "Open client connections."),
    "topics": (False, "Topics on disk."),
    "published": (True, "Messages published since the broker started."),
    "delivered": (True, "Fanout and group deliveries since the broker started."),
    "redelivered": (True, "Group redeliveries since the broker started."),
    "acked": (True, "Messages acknowledged by groups (durable)."),
    "dead_lettered": (True, "Messages moved to a dead-letter topic (durable)."),
    "inflight": (False, "Group deliveries waiting for an ack."),
    "bytes_on_disk": (False, "Bytes of every topic's segment files."),
}
TOPIC_FIELDS: Final[dict[str, tuple[bool, str]]] = {
    "published": (True, "Messages published to the topic since the broker started."),
    "last_offset": (False, "Offset of the topic's newest message."),
    "first_offset": (False, "Offset of the topic's oldest kept message."),
    "bytes": (False, "Bytes of the topic's segment files."),
    "segments": (False, "Segment files of the topic."),
    "subscribers": (False, "Fanout subscribers of the topic."),
    "groups": (False, "Consumer groups of the topic."),
}
GROUP_FIELDS: Final[dict[str, tuple[bool, str]]] = {
    "members": (False, "Connected members of the group."),
    "inflight": (False, "Messages delivered to the group and not yet acked."),
    "waiting": (False, "Failed messages waiting for their retry or for a member."),
    "lag": (False, "Messages the group has not finished."),
    "acked": (True, "Messages the group acknowledged (durable)."),
    "dead": (True, "Messages the group dead-lettered (durable)."),
    "next_offset": (False, "The next offset never delivered to the group."),
    "paused": (False, "1 while the group is paused."),
    "delivered": (True, "Deliveries to the group since the broker started."),
    "redelivered": (True, "Redeliveries to the group since the broker started."),
    "dropped": (True, "Messages retention deleted before the group finished them (durable)."),
}


class BrokerCollector(Collector):
    """Metric families of one broker; ``visible`` limits topics to what a user may read."""

    def __init__(self, broker: Broker, visible: Callable[[str], bool] | None = None) -> None:
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
        for kind, n in self.broker.damage.counts().items():
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
            self.broker.router.ctx.deliver_latency,
        )


def render(broker: Broker, visible: Callable[[str], bool] | None = None) -> bytes:
    """The text exposition format for one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BrokerCollector(broker, visible))
    return generate_latest(registry)


def filter_snapshot(snap: Snapshot, visible: Callable[[str], bool]) -> Snapshot:
    return Snapshot(
        broker=snap.broker,
        topics={t: f for t, f in snap.topics.items() if visible(t)},
        groups=[(t, g, f) for t, g, f in snap.groups if visible(t)],
    )


# (label names, label values, fields) for one broker, topic or group.
Row = tuple[tuple[str, ...], tuple[str, ...], Mapping[str, float]]


def _families(
    prefix: str, known: Mapping[str, tuple[bool, str]], rows: Sequence[Row]
) -> Iterator[Metric]:
    keys = list(known) + sorted({k for _, _, f in rows for k in f} - known.keys())
    for key in keys:
        is_counter, doc = known.get(key, (False, f"STATS field {key}."))
        family: CounterMetricFamily | GaugeMetricFamily
        labels = list(rows[0][0]) if rows else []
        if is_counter:
            family = CounterMetricFamily(prefix + key, doc, labels=labels)
        else:
            family = GaugeMetricFamily(prefix + key, doc, labels=labels)
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
