"""Cycles of start, load, kill -9 and damage, then a drain without kills."""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from linemq.tools.torture.clients import (
    check_start_log,
    check_store,
    consumer,
    corrupt,
    publisher,
    request,
)
from linemq.tools.torture.disk import DiskDamage, damage_disk, reported_offsets, unreported
from linemq.tools.torture.model import (
    GROUP,
    TOPIC,
    BrokerChild,
    CycleResult,
    Ledger,
    TortureOptions,
    TortureReport,
)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException) and not isinstance(
            r, asyncio.CancelledError | ConnectionError | OSError
        ):
            raise r


async def run_cycle(
    child: BrokerChild, ledger: Ledger, opts: TortureOptions, rng: random.Random, n: int
) -> tuple[CycleResult, dict[str, int], DiskDamage | None]:
    stats = CycleResult(n)
    consumers = [asyncio.create_task(consumer(child.port, ledger, stats))]
    consumers += [
        asyncio.create_task(consumer(child.port, ledger, stats)) for _ in range(opts.consumers - 1)
    ]
    # The group must exist (durably) before the first publish, or it would start after it.
    await request(child.port, "PING", "OK pong")
    quota = max(1, opts.max_messages // opts.cycles // opts.conns)
    pace = (quota, quota / opts.kill_after[1], opts.max_messages)
    publishers = [
        asyncio.create_task(publisher(child.port, ledger, f"c{n}p{i}", rng, stats, pace))
        for i in range(opts.conns)
    ]
    await asyncio.sleep(rng.uniform(*opts.kill_after))
    assert child.proc is not None
    if child.proc.poll() is not None:
        stats.violations.append(f"broker exited by itself with {child.proc.returncode}")
    child.kill9()
    await _cancel(publishers + consumers)
    damage = {}
    disk = None
    if opts.corrupt:
        disk = damage_disk(child.data_dir, rng, "segment" if n % 2 else "journal")
        _remember(ledger, disk)
        stats.corrupted = disk.describe()
    elif opts.corrupt_every and n % opts.corrupt_every == 0:
        damage = corrupt(child.data_dir, rng)
        stats.corrupted = "+".join(damage)
    return stats, damage, disk


def _remember(ledger: Ledger, disk: DiskDamage) -> None:
    """What the damage costs the checks: destroyed texts may be missing (never altered);
    a lost tail's offsets that no client was sent may be handed out again; acks so far
    may be forgotten with a damaged journal (so they may be redelivered)."""
    for rec in disk.records:
        ledger.destroyed.add(rec.text)
        if rec.cut and rec.offset not in ledger.delivered:
            ledger.known.pop(rec.offset, None)
    if disk.kind == "journal" and (disk.flipped or disk.cut):
        ledger.journal_damaged = ledger.incarnation


async def drain(
    child: BrokerChild, ledger: Ledger, stored: list[tuple[int, str]], opts: TortureOptions
) -> CycleResult:
    stats = CycleResult(0)
    tasks = [
        asyncio.create_task(consumer(child.port, ledger, stats)) for _ in range(opts.consumers)
    ]
    deadline = time.monotonic() + opts.drain_timeout
    fields: dict[str, int] = {}
    try:
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            lines = await request(child.port, f"GROUPS {TOPIC}", "OK groups end")
            mine = [ln for ln in lines if ln.split(" ")[2:3] == [GROUP]]
            if not mine:
                stats.violations.append(f"group {GROUP} missing from GROUPS: {lines}")
                break
            pairs = (p.split("=", 1) for p in mine[0].split(" ")[3:])
            fields = {k: int(v) for k, v in pairs if v.isdigit()}  # the policy's are text
            if fields["lag"] == 0:
                break
        else:
            stats.violations.append(f"group not drained in {opts.drain_timeout}s: {fields}")
    finally:
        await _cancel(tasks)
    end = stored[-1][0] + 1 if stored else 1
    next_offset = fields.get("next_offset", 0)
    if fields.get("dead", 0) or not (next_offset == end or (opts.corrupt and next_offset > end)):
        stats.violations.append(f"group ended with {fields}, {len(stored)} stored up to {end - 1}")
    ids = [i for _, i in stored]
    never = [i for i in ids if i not in ledger.acked and i not in ledger.ack_sent]
    if never:
        stats.violations.append(f"{len(never)} stored messages never delivered, e.g. {never[:3]}")
    return stats


async def _torture(
    child: BrokerChild,
    opts: TortureOptions,
    report: TortureReport,
    on_cycle: Callable[[CycleResult], None],
) -> None:
    rng = random.Random(opts.seed)
    ledger = Ledger()
    damage: dict[str, int] = {}
    disk: DiskDamage | None = None
    stopped = time.monotonic() + opts.time_limit
    for n in range(1, opts.cycles + 2):
        final = n > opts.cycles or time.monotonic() > stopped
        ledger.incarnation += 1
        await child.start()
        check = CycleResult(n)
        check_start_log(child, damage, check, disk=opts.corrupt)
        stored = await check_store(
            child.port, ledger, check, lambda: reported_offsets(child.events())
        )
        if disk is not None:
            check.violations += unreported(disk, child.events())
        if final:
            result = await drain(child, ledger, stored, opts)
            result.violations[:0] = check.violations
            report.drained = result.ok
            result.stored = len(stored)
            child.stop()
        else:
            result, damage, disk = await run_cycle(child, ledger, opts, rng, n)
            result.violations[:0] = check.violations
            result.stored = check.stored
        report.cycles.append(result)
        report.published, report.acked = len(ledger.confirmed), len(ledger.acked)
        report.stored = len(stored)
        on_cycle(result)
        if final:
            return


def run_torture(
    data_dir: Path | None = None,
    *,
    keep: bool = False,
    on_cycle: Callable[[CycleResult], None] = lambda _: None,
    **options: Any,
) -> TortureReport:
    """Run the torture; never leaves a broker process behind, even on Ctrl-C."""
    opts = TortureOptions(**options)
    root = Path(tempfile.mkdtemp(prefix="linemq-torture-"))
    data = data_dir if data_dir is not None else root / "data"
    (root / "logs").mkdir()
    args = ["--fsync", opts.fsync, "--segment-bytes", str(opts.segment_bytes)]
    args += ["--max-inflight", str(opts.max_inflight), "--ack-timeout", str(opts.ack_timeout)]
    args += ["--max-retries", "1000000", "--heartbeat-timeout", "3600"]
    args += ["--retry-backoff-base", "0.05", "--retry-backoff-max", "0.5"]
    child = BrokerChild(data, root / "logs", args)
    report = TortureReport(opts.seed, root)
    try:
        asyncio.run(_torture(child, opts, report, on_cycle))
    finally:
        child.stop()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return report


# -- the command ---------------------------------------------------------------------
