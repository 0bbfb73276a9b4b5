"""The throughput workloads the suite and the sweeps share, built and measured in one place.

Three shapes: pipelined publish (spread over topics), end to end (publish while groups of
acking members drain every topic) and fanout (publish while plain subscribers get every
message). A rate is always *published messages per second*, each delivered to every group
or subscriber of its topic, so a row for 10 groups and a row for 1 group count the same
messages; deliveries per second are that times the groups or subscribers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

from linemq.tools.bench.driver import Driver
from linemq.tools.bench.runner import PhaseResult
from linemq.tools.bench.servers import HOST
from linemq.tools.bench.workloads import Job, JobResult, topic_names

GROUP: Final = "bench"


@dataclass(frozen=True, slots=True)
class Load:
    """One throughput run: ``count`` messages from ``conns`` x ``window`` publishers."""

    count: int
    conns: int = 4
    window: int = 256
    size: int = 100
    topics: int = 1
    groups: int = 0  # end to end: this many groups on every topic (0: no consumers)
    members: int = 4  # acking members in each group
    subscribers: int = 0  # fanout: plain subscribers on every topic

    @property
    def consumers(self) -> int:
        """Consumer connections the run opens."""
        return self.topics * (self.groups * self.members + self.subscribers)

    @property
    def deliveries(self) -> int:
        """Deliveries the consumers must count before the run is over."""
        return self.count * max(self.groups, self.subscribers, 0)


def has_fanout(driver: Driver) -> bool:
    """Whether the bench can run plain subscribers on this system."""
    return type(driver).subscribe is not Driver.subscribe


def group_names(groups: int) -> list[str]:
    """``bench`` (what a single-group run always called it), then ``bench1`` ..."""
    return [GROUP if i == 0 else f"{GROUP}{i}" for i in range(groups)]


def split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, max(1, parts))
    return [base + (1 if i < extra else 0) for i in range(max(1, parts))]


def interleave(a: list[Job], b: list[Job]) -> list[Job]:
    """Alternate the two lists so round-robin over processes splits both evenly."""
    out: list[Job] = []
    for i in range(max(len(a), len(b))):
        out.extend(x[i] for x in (a, b) if i < len(x))
    return out


async def prepare(driver: Driver, port: int, prefix: str, load: Load) -> None:
    """Create every topic's groups before publishing: a group keeps what follows it.

    Without groups, each topic still gets one call: NATS needs a stream to publish to.
    """
    for topic in topic_names(prefix, load.topics):
        groups: list[str | None] = [*group_names(load.groups)] or [None]
        for group in groups:
            await driver.prepare(HOST, port, topic, group, load.members)


def publishers(system: str, port: int, prefix: str, load: Load, wait_ready: int = 0) -> list[Job]:
    return [
        Job("pub", system, HOST, port, prefix, n, load.window, load.size, member=i,
            topics=load.topics, wait_ready=wait_ready)
        for i, n in enumerate(split(load.count, load.conns))
        if n
    ]  # fmt: skip


def jobs(system: str, port: int, prefix: str, load: Load) -> list[Job]:
    """Every connection of the run: consumers (if any) interleaved with publishers."""
    topics = topic_names(prefix, load.topics)
    consumers = [
        Job("consume", system, HOST, port, t, group=g, member=i)
        for t in topics
        for g in group_names(load.groups)
        for i in range(load.members)
    ]
    consumers += [
        Job("fanout", system, HOST, port, t, member=i)
        for t in topics
        for i in range(load.subscribers)
    ]
    wait = load.topics * load.subscribers
    return interleave(consumers, publishers(system, port, prefix, load, wait))


def warm_up(system: str, port: int, prefix: str, load: Load) -> tuple[list[Job], int]:
    """Untimed publishes first: to every topic, and a quarter of the run's messages at least.

    A fresh server's first fraction of a second (allocations, the first file of each
    topic) would otherwise weigh on a short point. The jobs, and how many they publish.
    """
    n = max(load.topics, load.count // 4)
    warm = Load(n, load.conns, load.window, load.size, load.topics)
    return publishers(system, port, prefix, warm), n


def rate(phase: PhaseResult, load: Load) -> float | None:
    """Published messages per second, first publish to last delivery (or last ack)."""
    pubs = phase.of("pub")
    if not pubs:
        return None
    got = phase.of("consume") + phase.of("fanout")
    if not (load.groups or load.subscribers):
        return sum(r.count for r in pubs) / _span(pubs)
    if not got:
        return None
    fanout = max(load.groups, load.subscribers)
    return sum(r.count for r in got) / fanout / _span(got, pubs)


def _span(results: list[JobResult], starts: list[JobResult] | None = None) -> float:
    first = min(r.t0 for r in (starts if starts is not None else results))
    return max(1e-9, max(r.t1 for r in results) - first)


def run_prepare(driver: Driver, port: int, prefix: str, load: Load) -> None:
    asyncio.run(prepare(driver, port, prefix, load))
