"""Scaling sweeps: one throughput workload per point, linemq and its peers alternating.

Every point gets a fresh server of each system (a point with 10,000 topics leaves nothing
behind for the next), runs one workload, and stops it. Within a round the systems run back
to back on the same point, so a slow spell of a shared machine mostly hits both sides of
that point's ratio.
"""

from __future__ import annotations

import shutil
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Final

from linemq.tools.bench import steal, throughput
from linemq.tools.bench.report import STEAL_NOTE_PCT
from linemq.tools.bench.runner import PhaseResult, Progress, run_phase
from linemq.tools.bench.servers import Server, Servers
from linemq.tools.bench.throughput import Load
from linemq.tools.bench.workloads import DRIVERS, Job

DIMENSIONS: Final = ("topics", "groups", "subscribers", "size")
DEFAULT_VALUES: Final[dict[str, tuple[int, ...]]] = {
    "topics": (1, 10, 100, 1_000, 10_000),
    "groups": (1, 10, 100),
    "subscribers": (1, 10, 100, 1_000),
    "size": (100, 1_000, 10_000, 100_000, 1_000_000),
}
WORKLOADS: Final = {
    "topics": "pipelined publish, each publish to the next topic",
    "groups": "end to end: publish while every group's members ack each message",
    "subscribers": "fanout: publish while every plain subscriber gets each message",
    "size": "pipelined publish",
}
WINDOW_BYTES: Final = 4 << 20  # a publisher keeps at most this many payload bytes in flight
MAX_CONSUMERS: Final = 2048  # consumer connections a point may open
MANY_TOPICS: Final = 9_000  # from here linemq gets --max-topics above the point's topics
PREFIX: Final = "sweep"
WARM_PREFIX: Final = "warm"

BrokerArgs = Callable[[str, Load], list[str]]


@dataclass(frozen=True, slots=True)
class SweepOptions:
    dimensions: tuple[str, ...]
    values: dict[str, tuple[int, ...]]
    topics: int = 1  # every point's topics, but in the topics sweep
    size: int = 100  # every point's payload, but in the size sweep
    members: int = 4  # acking members in each group of the groups sweep
    conns: int = 4
    window: int = 256
    count: int = 20_000
    point_deliveries: int = 2_000_000
    point_mb: int = 256
    rounds: int = 1
    procs: int = 1
    timeout: float = 120.0
    loadgen_cpus: frozenset[int] | None = None


@dataclass(frozen=True, slots=True)
class Point:
    dimension: str
    value: int
    load: Load


@dataclass(slots=True)
class PointResult:
    point: Point
    rates: dict[str, list[float]] = field(default_factory=dict)  # msg/s, one per round
    ratios: dict[str, list[float]] = field(default_factory=dict)  # linemq/peer, per round
    notes: list[str] = field(default_factory=list)

    def rate(self, system: str) -> float | None:
        got = self.rates.get(system)
        return statistics.median(got) if got else None

    def ratio(self, peer: str) -> float | None:
        got = self.ratios.get(peer)
        return statistics.median(got) if got else None


def plan(opts: SweepOptions) -> list[Point]:
    """The points of every swept dimension, each with its message count and window.

    A point runs ``count`` messages, fewer where that would pass ``point_deliveries``
    deliveries or ``point_mb`` MiB of payload, so a run stays cheap at 1,000 subscribers or
    1 MB messages; a publisher keeps at most ``WINDOW_BYTES`` of payload in flight.
    """
    points = []
    for dim in opts.dimensions:
        for value in opts.values[dim]:
            size = value if dim == "size" else opts.size
            groups = value if dim == "groups" else 0
            subscribers = value if dim == "subscribers" else 0
            fanout = max(1, groups, subscribers)
            count = min(
                opts.count,
                max(1, opts.point_deliveries // fanout),
                max(1, opts.point_mb * (1 << 20) // size),
            )
            load = Load(
                count=count,
                conns=opts.conns,
                window=min(opts.window, max(1, WINDOW_BYTES // size)),
                size=size,
                topics=value if dim == "topics" else opts.topics,
                groups=groups,
                members=opts.members,
                subscribers=subscribers,
            )
            points.append(Point(dim, value, load))
    return points


def broker_args(default: list[str]) -> BrokerArgs:
    """Each system's server arguments for a point: linemq's limits fitted to it."""

    def args(system: str, load: Load) -> list[str]:
        if system != "linemq":
            return []
        fitted = ["--max-topics", str(load.topics + 100)] if load.topics > MANY_TOPICS else []
        return [*fitted, *default]  # the user's own arguments come last and win

    return args


def run_sweep(
    points: list[Point],
    systems: list[str],
    servers: Servers,
    args: BrokerArgs,
    opts: SweepOptions,
    progress: Progress,
) -> list[PointResult]:
    results = []
    for point in points:
        result = PointResult(point)
        for n in range(opts.rounds):
            this_round: dict[str, float] = {}
            for system in systems:
                rate = _run_point(point, system, servers, args, opts, progress, result.notes)
                if rate is not None:
                    result.rates.setdefault(system, []).append(rate)
                    this_round[system] = rate
            ours = this_round.get("linemq")
            for peer, theirs in this_round.items():
                if peer != "linemq" and ours is not None:
                    result.ratios.setdefault(peer, []).append(ours / theirs)
            if opts.rounds > 1:
                progress.done(f"  {point.dimension}={point.value:,}: round {n + 1} done")
        results.append(result)
    return results


def _run_point(
    point: Point,
    system: str,
    servers: Servers,
    args: BrokerArgs,
    opts: SweepOptions,
    progress: Progress,
    notes: list[str],
) -> float | None:
    load = point.load
    label = f"{system} {point.dimension}={point.value:,}"

    def note(text: str) -> None:
        if f"{label}: {text}" not in notes:
            notes.append(f"{label}: {text}")

    driver = DRIVERS[system]()
    if load.consumers > MAX_CONSUMERS:
        note(f"skipped, {load.consumers:,} consumer connections (the most is {MAX_CONSUMERS:,})")
        return None
    if load.subscribers and not throughput.has_fanout(driver):
        note(f"skipped, the bench has no {system} subscriber")
        return None
    server = servers.start(system, args(system, load))
    try:
        return _measure(server, point, opts, progress, note)
    finally:
        server.stop()
        if not servers.keep:
            shutil.rmtree(server.data_dir, ignore_errors=True)


def _measure(
    server: Server,
    point: Point,
    opts: SweepOptions,
    progress: Progress,
    note: Callable[[str], None],
) -> float | None:
    load = point.load
    system, port = server.system, server.port
    driver = DRIVERS[system]()
    label = f"{system} {point.dimension}={point.value:,}"
    cpus = set(opts.loadgen_cpus) if opts.loadgen_cpus else None

    def phase(jobs: list[Job], total: int, target: int, what: str) -> PhaseResult:
        done = run_phase(
            what, jobs, procs=opts.procs, timeout=opts.timeout, total=total,
            progress=progress, consume_target=target, cpus=cpus,
        )  # fmt: skip
        if done.error or done.timed_out:
            why = "timed out" if done.timed_out else done.error.strip().splitlines()[-1]
            note(why)
        errors = sum(r.errors for r in done.results)
        if errors:
            note(f"{errors:,} error replies")
        return done

    # A publish run finds its topics created (it times publishing, not creating topics);
    # consumers start on topics of their own, so they get only the timed run's messages.
    consumers = load.groups or load.subscribers
    warm_prefix = WARM_PREFIX if consumers else PREFIX
    throughput.run_prepare(driver, port, warm_prefix, replace(load, groups=0, subscribers=0))
    warm_jobs, n = throughput.warm_up(system, port, warm_prefix, load)
    warm = phase(warm_jobs, n, 0, f"{label} warm-up")
    if warm.error or warm.timed_out:
        return None
    if consumers:
        throughput.run_prepare(driver, port, PREFIX, load)
    before = steal.sample()
    target = load.deliveries
    run = phase(throughput.jobs(system, port, PREFIX, load), target or load.count, target, label)
    stolen = steal.stolen_percent(before, steal.sample())
    if stolen is not None and stolen >= STEAL_NOTE_PCT:
        note(f"the host stole {stolen:.0f}% of the CPU")
    if run.error or run.timed_out:
        return None
    got = throughput.rate(run, load)
    if not got:
        note("nothing was published or delivered")
        return None
    return got
