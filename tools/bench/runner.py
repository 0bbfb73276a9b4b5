"""Run a workload's jobs in load-generator processes, with a progress line and a time limit.

Each process runs its share of the jobs on one uvloop; a single Python process saturates
one core, so ``procs`` > 1 spreads connections over processes (``fork``: the parent holds
no event loop). Counters in shared memory give the parent its progress line and tell the
consumers of every process when the whole group has received enough.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import queue
import sys
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.context import ForkContext
from multiprocessing.queues import Queue
from typing import Any, TextIO

from linemq.tools.bench.workloads import Job, JobResult, Shared, run_job

PROGRESS_EVERY = 0.25


class SharedCount:
    """An integer in shared memory that every load-generator process adds to."""

    def __init__(self, ctx: ForkContext) -> None:
        self._value: Any = ctx.Value("q", 0)

    def add(self, n: int) -> None:
        with self._value.get_lock():
            self._value.value += n

    @property
    def value(self) -> int:
        return int(self._value.value)


@dataclass(slots=True)
class PhaseResult:
    results: list[JobResult] = field(default_factory=list)
    elapsed: float = 0.0
    timed_out: bool = False
    error: str = ""

    def of(self, kind: str) -> list[JobResult]:
        return [r for r in self.results if r.kind == kind]


class Progress:
    """One updating line on stderr: ``label  done/total  rate/s``."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.live = self.stream.isatty()
        self._width = 0

    def show(self, text: str) -> None:
        if not (self.enabled and self.live):
            return
        pad = max(0, self._width - len(text))
        self._width = len(text)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()

    def done(self, text: str) -> None:
        """The phase's last line stays; without a terminal it is the only one written."""
        if self.enabled:
            self.live = True
            self.show(text)
            self.live = self.stream.isatty()
            self.stream.write("\n")
            self.stream.flush()
        self._width = 0


def _worker(jobs: list[Job], shared: Shared, results: Queue[Any]) -> None:
    import os

    import uvloop

    if shared.cpus:
        os.sched_setaffinity(0, shared.cpus)
    try:
        out = uvloop.run(_run_jobs(jobs, shared))
        results.put(("ok", out))
    except BaseException:
        results.put(("error", traceback.format_exc()))


async def _run_jobs(jobs: list[Job], shared: Shared) -> list[JobResult]:
    async def watch() -> None:
        while True:
            await asyncio.sleep(0.02)
            if any(s.done for s in shared.sinks) or time.monotonic() > shared.deadline:
                for sink in shared.sinks:
                    sink.stop()
                if time.monotonic() > shared.deadline:
                    raise TimeoutError("workload time limit reached")

    watcher = asyncio.ensure_future(watch())
    try:
        return list(await asyncio.gather(*(run_job(job, shared) for job in jobs)))
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await watcher


def run_phase(
    label: str,
    jobs: list[Job],
    *,
    procs: int,
    timeout: float,
    total: int,
    progress: Progress,
    consume_target: int = 0,
    cpus: set[int] | None = None,
) -> PhaseResult:
    """Run ``jobs`` spread round-robin over ``procs`` processes; stop them at ``timeout``."""
    ctx = mp.get_context("fork")
    published, consumed = SharedCount(ctx), SharedCount(ctx)
    start = time.monotonic()
    shared = Shared(published, consumed, consume_target, start + timeout, cpus)
    shared.ready = SharedCount(ctx)
    buckets = [jobs[i::procs] for i in range(procs)]
    buckets = [b for b in buckets if b]
    results: Queue[Any] = ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(b, shared, results), daemon=True) for b in buckets]
    phase = PhaseResult()
    try:
        for w in workers:
            w.start()
        replies = 0
        last_shown = 0.0
        while replies < len(workers):
            try:
                status, payload = results.get(timeout=0.05)
            except queue.Empty:
                now = time.monotonic()
                if now - last_shown >= PROGRESS_EVERY:
                    last_shown = now
                    progress.show(_progress_text(label, published, consumed, total, now - start))
                if now > start + timeout + 5:
                    phase.timed_out = True
                    break
                continue
            replies += 1
            if status == "ok":
                phase.results.extend(payload)
            else:
                phase.error = phase.error or str(payload)
                phase.timed_out = "TimeoutError" in str(payload)
        phase.elapsed = time.monotonic() - start
        progress.done(_progress_text(label, published, consumed, total, phase.elapsed))
    finally:
        for w in workers:
            w.join(timeout=2)
            if w.is_alive():
                w.terminate()
                w.join(timeout=2)
    return phase


def _progress_text(
    label: str, published: SharedCount, consumed: SharedCount, total: int, elapsed: float
) -> str:
    done = max(published.value, consumed.value)
    rate = done / elapsed if elapsed > 0 else 0.0
    text = f"  {label:<28} {done:>9,}/{total:,}  {rate:>11,.0f}/s  {elapsed:5.1f}s"
    if consumed.value and published.value:
        text += f"  (published {published.value:,}, consumed {consumed.value:,})"
    return text
