"""One snapshot of the broker's counters, shared by ``STATS``, ``/metrics`` and the dashboard."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

from linemq.broker.delivery.clients import ClientState
from linemq.broker.delivery.group import ConsumerGroup

if TYPE_CHECKING:
    from linemq.broker.server.app import Broker


class HttpServer(Protocol):
    """The operations HTTP endpoint (``--http-port``) as the broker sees it."""

    @property
    def port(self) -> int: ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class Snapshot:
    broker: dict[str, float] = field(default_factory=dict)
    topics: dict[str, dict[str, int]] = field(default_factory=dict)
    groups: list[tuple[str, str, dict[str, int]]] = field(default_factory=list)


def collect(broker: Broker, topic: str | None = None) -> Snapshot:
    """Counters of every topic (or just ``topic``), its groups, and the broker as a whole."""
    snap = Snapshot()
    router = broker.router
    names = [topic] if topic is not None else sorted(broker.store.topics())
    for name in names:
        log = broker.store.get(name)
        groups = router.groups.get(name, {})
        if log is None and not groups:
            continue
        snap.topics[name] = {
            "published": broker.published.get(name, 0),
            "last_offset": log.last_offset if log else 0,
            "first_offset": log.first_offset if log else 0,
            "bytes": log.size_bytes if log else 0,
            "segments": log.segment_count if log else 0,
            "subscribers": len(router.fanout.get(name, ())),
            "groups": len(groups),
        }
        for group_name, group in sorted(groups.items()):
            snap.groups.append((name, group_name, {**group.counters(), **failure_counts(group)}))
    all_groups = [g for gs in router.groups.values() for g in gs.values()]
    counts = totals(broker, all_groups)
    snap.broker = {
        "uptime_seconds": round(time.time() - broker.started_at, 3),
        "connections": len(broker.connections),
        "topics": len(broker.store.topics()),
        "published": counts["published"],
        "delivered": counts["delivered"],
        "redelivered": sum(g.redelivered for g in all_groups) + router.retired["redelivered"],
        "acked": counts["acked"],
        "dead_lettered": counts["dead_lettered"],
        "inflight": sum(g.info()["inflight"] for g in all_groups),
        "failures": sum(sum(g.failures.values()) for g in all_groups) + router.retired["failures"],
        "subscribers": sum(1 for c in broker.connections if _subscribes(c.client)),
        "memberships": sum(len(g.members) for g in all_groups),
        "bytes_on_disk": sum(t["bytes"] for t in snap.topics.values()) if topic is None else 0,
    }
    if topic is None:  # what storage found damaged since start, by kind (see storage.damage)
        damage = broker.damage.counts()
        snap.broker.update({f"damage_{kind}": n for kind, n in damage.items()})
    if topic is not None:
        del snap.broker["bytes_on_disk"]
    return snap


FAILURE_FIELDS: Final = {
    "nacked": "nacks",
    "ack_timeout": "ack_timeouts",
    "consumer_dead": "consumer_deaths",
    "terminated": "terms",
}
"""A group's failed attempts by reason (``GroupFailures``), as STATS names them."""


def failure_counts(group: ConsumerGroup) -> dict[str, int]:
    """Failed attempts since the broker started: in all (``failures``) and by kind."""
    counts = group.failures
    out = {"failures": sum(counts.values())}
    out.update({name: counts.get(reason, 0) for reason, name in FAILURE_FIELDS.items()})
    return out


def _subscribes(client: ClientState) -> bool:
    return bool(client.topics or client.members or client.patterns)


def totals(broker: Broker, groups: list[ConsumerGroup]) -> dict[str, int]:
    """The message counters the dashboard charts as rates (see ``series``)."""
    retired = broker.router.retired  # deleted groups: a total never falls while running
    return {
        "published": sum(broker.published.values()),
        "delivered": sum(g.delivered for g in groups) + broker.fanout_sent + retired["delivered"],
        "acked": sum(g.state.acked_count for g in groups) + retired["acked"],
        "dead_lettered": sum(g.state.dead for g in groups) + retired["dead"],
    }


def filter_snapshot(snap: Snapshot, visible: Callable[[str], bool]) -> Snapshot:
    """Only the topics (and their groups) ``visible`` allows; broker totals stay whole."""
    return Snapshot(
        broker=snap.broker,
        topics={t: f for t, f in snap.topics.items() if visible(t)},
        groups=[(t, g, f) for t, g, f in snap.groups if visible(t)],
    )
