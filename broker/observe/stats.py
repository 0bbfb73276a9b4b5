"""One snapshot of the broker's counters, shared by ``STATS``, ``/metrics`` and the dashboard.

It reads the broker through ``Figures``, a few read-only questions the broker answers
(``server/face.py`` does), so nothing here knows how the broker, its groups or its
logs are built: observe sits below them and imports none of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol


class TopicFigures(Protocol):
    """What the counters read of one topic's log."""

    @property
    def last_offset(self) -> int: ...
    @property
    def first_offset(self) -> int: ...
    @property
    def size_bytes(self) -> int: ...
    @property
    def segment_count(self) -> int: ...


class GroupFigures(Protocol):
    """What the counters read of one consumer group."""

    def counters(self) -> dict[str, int]:
        """Every ``STATS`` group field: inflight, lag, acked, dead, delivered..."""
        ...

    def lag(self) -> int:
        """Messages not finished; cheap, read for every chart sample."""
        ...

    @property
    def failures(self) -> Mapping[str, int]:
        """Failed attempts by reason, durable like ``acked`` (``GroupState.failures``)."""
        ...

    @property
    def member_count(self) -> int: ...


class Figures(Protocol):
    """The broker as its counters see it; every call is cheap and reads memory only."""

    @property
    def started_at(self) -> float: ...
    @property
    def connection_count(self) -> int: ...
    @property
    def fanout_sent(self) -> int:
        """Fanout deliveries since start (group deliveries are the groups' counters)."""
        ...

    @property
    def retired(self) -> Mapping[str, int]:
        """Counters of deleted groups, so that a total never falls while running."""
        ...

    def topic_names(self) -> list[str]: ...
    def topic(self, name: str) -> TopicFigures | None: ...
    def published(self, topic: str) -> int: ...
    def published_total(self) -> int: ...
    def subscribers(self, topic: str) -> int: ...
    def subscribing_connections(self) -> int:
        """Connections subscribed to anything: a topic, a group or a pattern."""
        ...

    def groups_of(self, topic: str) -> Mapping[str, GroupFigures]: ...
    def all_groups(self) -> Iterable[tuple[str, str, GroupFigures]]: ...
    def damage_counts(self) -> dict[str, int]: ...
    def schedule_counts(self) -> dict[str, int]:
        """``schedules`` (repeatable jobs stored) and ``schedule_fires`` (since start)."""
        ...


@dataclass(slots=True)
class Snapshot:
    broker: dict[str, float] = field(default_factory=dict)
    topics: dict[str, dict[str, int]] = field(default_factory=dict)
    groups: list[tuple[str, str, dict[str, int]]] = field(default_factory=list)


def collect(figures: Figures, topic: str | None = None) -> Snapshot:
    """Counters of every topic (or just ``topic``), its groups, and the broker as a whole."""
    snap = Snapshot()
    names = [topic] if topic is not None else sorted(figures.topic_names())
    for name in names:
        log = figures.topic(name)
        groups = figures.groups_of(name)
        if log is None and not groups:
            continue
        snap.topics[name] = {
            "published": figures.published(name),
            "last_offset": log.last_offset if log else 0,
            "first_offset": log.first_offset if log else 0,
            "bytes": log.size_bytes if log else 0,
            "segments": log.segment_count if log else 0,
            "subscribers": figures.subscribers(name),
            "groups": len(groups),
        }
        for group_name, group in sorted(groups.items()):
            snap.groups.append((name, group_name, {**group.counters(), **failure_counts(group)}))
    all_groups = [group for _, _, group in figures.all_groups()]
    every = [group.counters() for group in all_groups]
    counts = _totals(figures, every)
    retired = figures.retired
    snap.broker = {
        "uptime_seconds": round(time.time() - figures.started_at, 3),
        "connections": figures.connection_count,
        "topics": len(figures.topic_names()),
        "published": counts["published"],
        "delivered": counts["delivered"],
        "redelivered": sum(c["redelivered"] for c in every) + retired["redelivered"],
        "acked": counts["acked"],
        "dead_lettered": counts["dead_lettered"],
        "inflight": sum(c["inflight"] for c in every),
        "failures": sum(sum(g.failures.values()) for g in all_groups) + retired["failures"],
        "subscribers": figures.subscribing_connections(),
        "memberships": sum(g.member_count for g in all_groups),
        "bytes_on_disk": sum(t["bytes"] for t in snap.topics.values()) if topic is None else 0,
        **figures.schedule_counts(),
    }
    if topic is None:  # what storage found damaged since start, by kind (see storage.damage)
        snap.broker.update({f"damage_{kind}": n for kind, n in figures.damage_counts().items()})
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


def failure_counts(group: GroupFigures) -> dict[str, int]:
    """Failed attempts (durable, like ``acked``): in all (``failures``) and by kind."""
    counts = group.failures
    out = {"failures": sum(counts.values())}
    out.update({name: counts.get(reason, 0) for reason, name in FAILURE_FIELDS.items()})
    return out


def totals(figures: Figures) -> dict[str, int]:
    """The message counters the dashboard charts as rates (see ``series``)."""
    return _totals(figures, [group.counters() for _, _, group in figures.all_groups()])


def _totals(figures: Figures, counters: list[dict[str, int]]) -> dict[str, int]:
    retired = figures.retired
    return {
        "published": figures.published_total(),
        "delivered": sum(c["delivered"] for c in counters)
        + figures.fanout_sent
        + retired["delivered"],
        "acked": sum(c["acked"] for c in counters) + retired["acked"],
        "dead_lettered": sum(c["dead"] for c in counters) + retired["dead"],
    }


def filter_snapshot(snap: Snapshot, visible: Callable[[str], bool]) -> Snapshot:
    """Only the topics (and their groups) ``visible`` allows; broker totals stay whole."""
    return Snapshot(
        broker=snap.broker,
        topics={t: f for t, f in snap.topics.items() if visible(t)},
        groups=[(t, g, f) for t, g, f in snap.groups if visible(t)],
    )
