"""The benchmark suite for one system: every workload in turn, reduced to named metrics."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from linemq.tools.bench import steal, throughput
from linemq.tools.bench.driver import Driver
from linemq.tools.bench.runner import PhaseResult, Progress, run_phase
from linemq.tools.bench.servers import HOST, Server
from linemq.tools.bench.throughput import GROUP, Load
from linemq.tools.bench.workloads import DRIVERS, Job, topic_names

MAX_E2E_CONSUMERS = 256  # a spread end-to-end run has groups of K members on every topic


@dataclass(frozen=True, slots=True)
class Options:
    conns: int = 4
    window: int = 256
    size: int = 100
    count: int = 200_000
    latency_count: int = 20_000
    e2e_count: int = 200_000
    group_members: int = 4
    rate: float = 10_000.0
    rate_seconds: float = 5.0
    procs: int = 1
    timeout: float = 120.0
    idle_conns: int = 0
    restart: bool = True
    loadgen_cpus: frozenset[int] | None = None
    topics: int = 1  # publishes spread round-robin over this many topics (runs 1, 3, 4)
    groups: int = 1  # groups on every topic in the end-to-end run, each of group_members
    subscribers: int = 0  # > 0: a fanout run with this many plain subscribers on every topic


@dataclass(slots=True)
class SuiteResult:
    system: str
    metrics: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def percentile(sorted_values: list[int], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return float(sorted_values[rank])


def run_suite(server: Server, opts: Options, progress: Progress) -> SuiteResult:
    name = server.system
    out = SuiteResult(name)
    m = out.metrics
    driver = DRIVERS[name]()
    port = server.port
    m["rss_start_mb"] = server.rss_mb()
    suite_start = steal.sample()
    stolen: dict[str, float] = {}

    def phase(label: str, jobs: list[Job], total: int, target: int = 0) -> PhaseResult:
        before = steal.sample()
        result = run_phase(
            f"{name} {label}",
            jobs,
            procs=opts.procs,
            timeout=opts.timeout,
            total=total,
            progress=progress,
            consume_target=target,
            cpus=set(opts.loadgen_cpus) if opts.loadgen_cpus else None,
        )
        share = steal.stolen_percent(before, steal.sample())
        if share is not None:
            stolen[label] = share
        if result.error or result.timed_out:
            why = "timed out" if result.timed_out else result.error.strip().splitlines()[-1]
            out.notes.append(f"{name} {label}: {why}")
        errors = sum(r.errors for r in result.results)
        if errors:
            out.notes.append(f"{name} {label}: {errors} error replies")
        return result

    asyncio.run(_prepare(driver, port, topic_names("bench_pub", opts.topics), None, 0))
    asyncio.run(driver.prepare(HOST, port, "bench_rtt", None, 0))

    # 1. pipelined publish throughput
    load = Load(opts.count, opts.conns, opts.window, opts.size, opts.topics)
    publish = phase("publish", throughput.publishers(name, port, "bench_pub", load), opts.count)
    if (got := throughput.rate(publish, load)) is not None:
        m["publish_rate"] = got

    # 2. window-1 round trip
    rtt = phase("publish rtt", [Job("rtt", name, HOST, port, "bench_rtt", opts.latency_count)],
                opts.latency_count).of("rtt")  # fmt: skip
    if rtt and rtt[0].latencies_ns:
        lat = sorted(rtt[0].latencies_ns)
        for q, key in ((50, "rtt_p50_us"), (99, "rtt_p99_us"), (99.9, "rtt_p999_us")):
            m[key] = percentile(lat, q) / 1000
        if "publish rtt" in stolen:
            m["rtt_steal_pct"] = stolen["publish rtt"]

    # 3. end to end: pipelined producers while groups of K members ack (on every topic)
    k = opts.group_members
    load = Load(opts.e2e_count, opts.conns, opts.window, opts.size, opts.topics, opts.groups, k)
    if load.consumers > MAX_E2E_CONSUMERS:
        out.notes.append(
            f"{name} end to end: skipped, {opts.topics} topics x {opts.groups} groups x {k} "
            f"members is more than {MAX_E2E_CONSUMERS} consumer connections"
        )
    else:
        throughput.run_prepare(driver, port, "bench_e2e", load)
        jobs = throughput.jobs(name, port, "bench_e2e", load)
        e2e = phase("end to end", jobs, load.deliveries, load.deliveries)
        if (got := throughput.rate(e2e, load)) is not None:
            m["e2e_rate"] = got

    # 3b. fanout: pipelined producers while plain subscribers get every message
    if opts.subscribers:
        load = Load(opts.e2e_count, opts.conns, opts.window, opts.size, opts.topics,
                    subscribers=opts.subscribers)  # fmt: skip
        if not throughput.has_fanout(driver):
            out.notes.append(f"{name} fanout: skipped, the bench has no {name} subscriber")
        else:
            fan = phase("fanout", throughput.jobs(name, port, "bench_fan", load),
                        load.deliveries, load.deliveries)  # fmt: skip
            if (got := throughput.rate(fan, load)) is not None:
                m["fanout_rate"] = got

    # 4. publish -> deliver latency at a fixed rate
    n = max(1, int(opts.rate * opts.rate_seconds))
    asyncio.run(driver.prepare(HOST, port, "bench_lat", GROUP, k))
    consumers = [Job("consume", name, HOST, port, "bench_lat", group=GROUP, member=i,
                     rate=opts.rate) for i in range(k)]  # fmt: skip
    producer = Job("rate", name, HOST, port, "bench_lat", n, size=max(opts.size, 20),
                   rate=opts.rate)  # fmt: skip
    lat_phase = phase(f"deliver @{opts.rate:,.0f}/s", [producer, *consumers], n, n)
    samples = sorted(x for r in lat_phase.of("consume") for x in r.latencies_ns)
    if samples:
        for q, key in ((50, "deliver_p50_ms"), (99, "deliver_p99_ms"), (99.9, "deliver_p999_ms")):
            m[key] = percentile(samples, q) / 1e6
        sent = lat_phase.of("rate")
        if sent:
            m["rate_achieved"] = sent[0].count / max(1e-9, sent[0].t1 - sent[0].t0)

    m["rss_end_mb"] = server.rss_mb()
    share = steal.stolen_percent(suite_start, steal.sample())
    if share is not None:
        m["steal_pct"] = share

    # 5. idle connections, each answering PING
    if opts.idle_conns:
        idle = phase("idle conns", [Job("idle", name, HOST, port, count=opts.idle_conns,
                                        server_pid=server.pid)], opts.idle_conns)  # fmt: skip
        held = idle.of("idle")
        if held:
            r = held[0]
            m["idle_answered"] = r.count
            m["idle_open_s"] = r.extra["open_s"]
            grown = r.extra["rss_held_kb"] - r.extra["rss_before_kb"]
            m["idle_rss_per_conn_kb"] = grown / max(1, opts.idle_conns)

    # 6. restart on the same data
    if opts.restart:
        progress.show(f"  {name} restart")
        m["restart_ms"] = server.restart() * 1000
        if server.recovery_ms is not None:
            m["recovery_ms"] = server.recovery_ms
        m["rss_restart_mb"] = server.rss_mb()
        progress.done(f"  {name} restart: serving PING after {m['restart_ms']:.0f} ms")
    return out


async def _prepare(
    driver: Driver, port: int, topics: list[str], group: str | None, members: int
) -> None:
    for topic in topics:
        await driver.prepare(HOST, port, topic, group, members)
