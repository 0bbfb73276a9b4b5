"""The workloads, written once against ``Driver``: each job is one connection's work.

A job runs in a load-generator process (``runner.py``) and returns a ``JobResult`` with
monotonic start and end times, so results from several processes can be merged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Literal

from linemq.tools.bench.driver import TS_DIGITS, Counter, Driver, Sink
from linemq.tools.bench.linemq_driver import LinemqDriver
from linemq.tools.bench.nats_driver import NatsDriver
from linemq.tools.bench.redis_driver import RedisDriver

JobKind = Literal["pub", "rtt", "rate", "consume", "fanout", "idle"]
DRIVERS: dict[str, type[Driver]] = {
    "linemq": LinemqDriver,
    "redis": RedisDriver,
    "nats": NatsDriver,
}
IDLE_CONNECT_BATCH = 250


@dataclass(frozen=True, slots=True)
class Job:
    kind: JobKind
    system: str
    host: str
    port: int
    topic: str = ""
    count: int = 0
    window: int = 1
    size: int = 100
    group: str = ""
    member: int = 0
    rate: float = 0.0
    server_pid: int = 0
    topics: int = 1  # > 1: publish round-robin to ``topic_names(topic, topics)``
    wait_ready: int = 0  # a publisher starts once this many fanout subscribers are live


def topic_names(topic: str, topics: int) -> list[str]:
    """The topics a spread run uses: ``topic`` alone, or ``topic.0`` .. ``topic.N-1``."""
    return [topic] if topics <= 1 else [f"{topic}.{i}" for i in range(topics)]


class PubCycle:
    """Encoded publishes to every topic in turn, handed out in runs without per-message work.

    With one topic a run is ``one * n``; with several, slices of the concatenated
    publishes (cycled), so the load generator stays as cheap per message as it is
    for one topic and the server sees each publish go to the next topic.
    """

    def __init__(self, encoded: list[bytes], start: int = 0) -> None:
        self._one = encoded[0] if len(encoded) == 1 else b""
        self._all = b"".join(encoded)
        self._starts = [0]
        for e in encoded:
            self._starts.append(self._starts[-1] + len(e))
        self._n = len(encoded)
        self._next = start % self._n

    def take(self, count: int) -> bytes:
        if self._one:
            return self._one * count
        parts = []
        while count:
            i = self._next
            j = min(self._n, i + count)
            parts.append(self._all[self._starts[i] : self._starts[j]])
            count -= j - i
            self._next = j % self._n
        return b"".join(parts)


@dataclass(slots=True)
class JobResult:
    kind: JobKind
    count: int = 0
    errors: int = 0
    t0: float = 0.0
    t1: float = 0.0
    latencies_ns: list[int] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class Shared:
    """What a process's jobs share: the progress counters and the run's limits."""

    published: Counter
    consumed: Counter
    consume_target: int
    deadline: float
    cpus: set[int] | None = None
    sinks: list[Sink] = field(default_factory=list)
    ready: Counter | None = None  # fanout subscribers live, in every process


def payload(size: int, ts_ns: int | None = None) -> bytes:
    """``size`` bytes of text; with ``ts_ns``, it starts with the send time for latency."""
    head = b"%0*d" % (TS_DIGITS, ts_ns) if ts_ns is not None else b""
    return head + b"x" * max(0, size - len(head))


async def run_job(job: Job, shared: Shared) -> JobResult:
    driver = DRIVERS[job.system]()
    match job.kind:
        case "pub":
            return await _publish_pipelined(driver, job, shared)
        case "rtt":
            return await _publish_rtt(driver, job, shared)
        case "rate":
            return await _publish_at_rate(driver, job, shared)
        case "consume":
            return await _consume(driver, job, shared)
        case "fanout":
            return await _fanout(driver, job, shared)
        case "idle":
            return await _idle(driver, job, shared)


async def _publish_pipelined(driver: Driver, job: Job, shared: Shared) -> JobResult:
    """Keep ``window`` publishes unacknowledged; each ack sends the next one."""
    conn = await driver.connect(job.host, job.port)
    await _wait_ready(job, shared)
    body = payload(job.size)
    pubs = PubCycle(
        [driver.encode_pub(conn, t, body) for t in topic_names(job.topic, job.topics)],
        start=job.member * 7919,  # connections start at different topics
    )
    acks = driver.pub_acks()
    result = JobResult("pub", t0=time.monotonic())
    sent = min(job.window, job.count)
    conn.writer.write(pubs.take(sent))
    try:
        while result.count < job.count:
            ok, failed = acks.feed(await conn.read())
            done = ok + failed
            if not done:
                continue
            result.count += ok
            result.errors += failed
            more = min(done, job.count - sent)
            if more:
                conn.writer.write(pubs.take(more))
                sent += more
            shared.published.add(done)
            if result.count + result.errors >= job.count:
                break
    finally:
        result.t1 = time.monotonic()
        await conn.close()
    return result


async def _publish_rtt(driver: Driver, job: Job, shared: Shared) -> JobResult:
    """Window 1: send one publish, wait for its ack, and time the round trip."""
    conn = await driver.connect(job.host, job.port)
    one = driver.encode_pub(conn, job.topic, payload(job.size))
    acks = driver.pub_acks()
    result = JobResult("rtt", t0=time.monotonic())
    latencies = result.latencies_ns
    clock = time.perf_counter_ns
    try:
        for _ in range(job.count):
            start = clock()
            conn.writer.write(one)
            done = 0
            while not done:
                ok, failed = acks.feed(await conn.read())
                done = ok + failed
                result.errors += failed
            latencies.append(clock() - start)
            result.count += 1
            if result.count % 256 == 0:
                shared.published.add(256)
        shared.published.add(result.count % 256)
    finally:
        result.t1 = time.monotonic()
        await conn.close()
    return result


async def _publish_at_rate(driver: Driver, job: Job, shared: Shared) -> JobResult:
    """Publish ``count`` messages at ``rate`` per second, each stamped with its send time."""
    conn = await driver.connect(job.host, job.port)
    acks = driver.pub_acks()
    result = JobResult("rate", t0=time.monotonic())

    async def read_acks() -> None:
        while result.count + result.errors < job.count:
            ok, failed = acks.feed(await conn.read())
            result.count += ok
            result.errors += failed
            shared.published.add(ok + failed)

    reader = asyncio.ensure_future(read_acks())
    sent = 0
    start = time.monotonic()
    try:
        while sent < job.count and not reader.done():
            due = min(job.count, int((time.monotonic() - start) * job.rate) + 1)
            if due > sent:
                one = driver.encode_pub(conn, job.topic, payload(job.size, time.monotonic_ns()))
                conn.writer.write(one * (due - sent))
                sent = due
            await asyncio.sleep(0.0005)
        await reader
    finally:
        reader.cancel()
        result.t1 = time.monotonic()
        await conn.close()
    return result


async def _consume(driver: Driver, job: Job, shared: Shared) -> JobResult:
    sink = Sink(shared.consumed, shared.consume_target, shared.deadline, latency=job.rate > 0)
    shared.sinks.append(sink)
    result = JobResult("consume", t0=time.monotonic())
    await driver.consume(job.host, job.port, job.topic, job.group, job.member, sink)
    result.count = sink.received
    result.errors = sink.errors
    result.t1 = sink.last or time.monotonic()
    result.latencies_ns = sink.latencies_ns
    return result


async def _wait_ready(job: Job, shared: Shared) -> None:
    """Hold a publisher until every fanout subscriber is live (they get only what follows)."""
    if not job.wait_ready or shared.ready is None:
        return
    while shared.ready.value < job.wait_ready:
        if time.monotonic() > shared.deadline:
            raise TimeoutError("fanout subscribers were not all live in time")
        await asyncio.sleep(0.002)


async def _fanout(driver: Driver, job: Job, shared: Shared) -> JobResult:
    sink = Sink(shared.consumed, shared.consume_target, shared.deadline)
    shared.sinks.append(sink)
    assert shared.ready is not None
    await driver.subscribe(job.host, job.port, job.topic, sink, shared.ready)
    return JobResult("fanout", count=sink.received, errors=sink.errors, t0=sink.last, t1=sink.last)


def rss_kb(pid: int) -> int:
    """VmRSS of a process, in KiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


async def _idle(driver: Driver, job: Job, shared: Shared) -> JobResult:
    """Open ``count`` connections, ping each, hold them all open, then ping each again."""
    result = JobResult("idle", t0=time.monotonic())
    rss_before = rss_kb(job.server_pid)
    conns = []
    try:
        for first in range(0, job.count, IDLE_CONNECT_BATCH):
            n = min(IDLE_CONNECT_BATCH, job.count - first)
            batch = await asyncio.gather(*(driver.connect(job.host, job.port) for _ in range(n)))
            conns.extend(batch)
            await asyncio.gather(*(driver.ping(c) for c in batch))
            shared.published.add(n)
        opened = time.monotonic()
        await asyncio.sleep(0.5)
        rss_held = rss_kb(job.server_pid)
        answered = 0
        for first in range(0, len(conns), IDLE_CONNECT_BATCH):
            batch = conns[first : first + IDLE_CONNECT_BATCH]
            await asyncio.gather(*(driver.ping(c) for c in batch))
            answered += len(batch)
        result.count = answered
        result.extra = {
            "open_s": opened - result.t0,
            "rss_before_kb": rss_before,
            "rss_held_kb": rss_held,
        }
    finally:
        result.t1 = time.monotonic()
        for conn in conns:
            conn.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.sleep(0.1)
    return result
