"""``linemq bench --sweep ...``: plan the points, run them, print the tables, write the plot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from linemq.tools.bench import sweep_report
from linemq.tools.bench.runner import Progress
from linemq.tools.bench.servers import BINARIES, Servers, available, machine, raise_fd_limit
from linemq.tools.bench.svgplot import render
from linemq.tools.bench.sweep import (
    DEFAULT_VALUES,
    SweepOptions,
    broker_args,
    plan,
    run_sweep,
)

SWEEP_COUNT = 20_000
SWEEP_PEERS = ["redis"]


def run(
    o: dict[str, Any],
    swept: list[str],
    default_args: list[str],
    server_cpus: set[int] | None,
    loadgen_cpus: set[int] | None,
) -> None:
    if o["host"] is not None:
        raise click.UsageError("a sweep starts a fresh broker for every point: drop --host")
    for dim in swept:
        if dim == "subscribers" and min(o[dim]) == 0 and len(o[dim]) > 1:
            raise click.UsageError("--subscribers: a sweep starts at 1 subscriber")
    fixed = {k: o[k][0] if len(o[k]) == 1 else v[0] for k, v in DEFAULT_VALUES.items()}
    opts = SweepOptions(
        dimensions=tuple(swept),
        values={d: o[d] if len(o[d]) > 1 else DEFAULT_VALUES[d] for d in swept},
        topics=fixed["topics"],
        size=fixed["size"],
        members=o["group_members"],
        conns=o["conns"],
        window=o["window"],
        count=o["count"] or SWEEP_COUNT,
        point_deliveries=o["point_deliveries"],
        point_mb=o["point_mb"],
        rounds=o["rounds"],
        procs=o["procs"],
        timeout=o["timeout"],
        loadgen_cpus=frozenset(loadgen_cpus) if loadgen_cpus else None,
    )
    points = plan(opts)
    raise_fd_limit(2 * max(p.load.topics + p.load.consumers for p in points) + 1024)
    progress = Progress(enabled=not o["quiet"])
    wanted = SWEEP_PEERS if o["compare"] is None else o["compare"]
    skipped = [p for p in wanted if not available(p)]
    for peer in skipped:
        progress.done(f"  {peer}: skipped ({BINARIES[peer]} not installed)")
    systems = ["linemq", *(p for p in wanted if p not in skipped)]
    started = time.time()
    load_before = os.getloadavg()
    try:
        with Servers(keep=o["keep"], cpus=server_cpus) as servers:
            args = broker_args([*default_args, *o["broker_args"]])
            results = run_sweep(points, systems, servers, args, opts, progress)
            if o["keep"]:
                progress.done(f"  data and logs kept in {servers.root}")
    except KeyboardInterrupt:
        click.echo("\ninterrupted: servers stopped, temporary dirs removed", err=True)
        sys.exit(130)
    context = _context(systems, started, load_before, server_cpus, loadgen_cpus, o["procs"])
    context += [f"{peer} skipped: {BINARIES[peer]} not installed" for peer in skipped]
    if o["plot"]:
        rounds = f"medians of {opts.rounds} rounds, " if opts.rounds > 1 else ""
        caption = f"wall time per published message ({rounds}systems alternating); {context[0]}"
        svg = render(sweep_report.panels(results, systems), caption)
        Path(o["plot"]).write_text(svg, encoding="utf-8")
    if o["as_json"]:
        doc = sweep_report.document(results, systems, opts, context)
        click.echo(json.dumps(doc, indent=2))
    elif o["markdown"]:
        click.echo(sweep_report.markdown(results, systems, opts, context, o["plot"]))
    else:
        click.echo(sweep_report.text(results, systems, opts, context))


def _context(
    systems: list[str],
    started: float,
    load_before: tuple[float, float, float],
    server_cpus: set[int] | None,
    loadgen_cpus: set[int] | None,
    procs: int,
) -> list[str]:
    """Where and when the figures were taken: they mean little without it."""
    m = machine()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started))
    lines = [f"{when}, {m['nproc']} CPUs ({m['cpu']}), {m['ram']} RAM"]
    versions = [f"Python {m['python']}"] + [_version(s) for s in systems if s != "linemq"]
    where = "on the same CPUs as the servers"
    if server_cpus and loadgen_cpus:
        where = f"on CPU {sorted(loadgen_cpus)}, servers on CPU {sorted(server_cpus)}"
    lines.append(
        f"{', '.join(versions)}; load generator: {procs} process(es) {where}; "
        f"load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    return lines


def _version(system: str) -> str:
    try:
        out = subprocess.run(
            [BINARIES[system], "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return system
    for word in out.split():
        if word.startswith("v=") or word[:1].isdigit() or word[:2] in ("v1", "v2", "v3"):
            return f"{system} {word.removeprefix('v=').removeprefix('v')}"
    return system
