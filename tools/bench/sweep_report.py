"""A sweep's tables (plain text or markdown), its ``--json`` document and its plot's series.

Cost per message is wall time per published message (1 / msg/s): what a sender waits
for on average when the system runs flat out, each message delivered to every group or
subscriber of its topic. A ratio is linemq's msg/s over the peer's, above 1 when linemq is
faster, the median of each round's ratio.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from linemq.clients.cli_output import add_row, plain
from linemq.clients.cli_output import table as plain_table
from linemq.tools.bench.svgplot import Panel
from linemq.tools.bench.sweep import WINDOW_BYTES, WORKLOADS, PointResult, SweepOptions

AXES: Final = {
    "topics": "topics",
    "groups": "groups per topic",
    "subscribers": "subscribers per topic",
    "size": "payload bytes",
}
NAMES: Final = {"linemq": "linemq", "redis": "Redis", "nats": "NATS"}


def _name(system: str) -> str:
    return NAMES.get(system, system)


def rows(results: list[PointResult], systems: list[str]) -> tuple[list[str], list[list[str]]]:
    """The header and rows of one dimension's table."""
    dim = results[0].point.dimension
    peers = [s for s in systems if s != "linemq"]
    header = [AXES[dim], "messages"]
    header += [f"{_name(s)} msg/s" for s in systems]
    header += [f"{_name(s)} µs/msg" for s in systems]
    header += [f"linemq/{_name(p)}" for p in peers]
    out = []
    for r in results:
        row = [f"{r.point.value:,}", f"{r.point.load.count:,}"]
        rates = [r.rate(s) for s in systems]
        row += ["-" if x is None else f"{x:,.0f}" for x in rates]
        row += ["-" if x is None else _us(1e6 / x) for x in rates]
        for p in peers:
            q = r.ratio(p)
            cell = "-" if q is None else f"{q:.2f}x"
            got = r.ratios.get(p, [])
            if len(got) > 1:
                cell += f" ({min(got):.2f}-{max(got):.2f})"
            row.append(cell)
        out.append(row)
    return header, out


def _us(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def by_dimension(results: list[PointResult]) -> list[list[PointResult]]:
    groups: dict[str, list[PointResult]] = {}
    for r in results:
        groups.setdefault(r.point.dimension, []).append(r)
    return list(groups.values())


def describe(dim_results: list[PointResult], opts: SweepOptions) -> str:
    """What one dimension's workload is, and what stays fixed while it moves."""
    dim = dim_results[0].point.dimension
    load = dim_results[0].point.load
    fixed = []
    if dim != "topics":
        fixed.append(f"{load.topics:,} topic{'s' if load.topics > 1 else ''}")
    if dim != "size":
        fixed.append(f"{load.size:,} B payloads")
    if dim == "groups":
        fixed.append(f"{load.members} acking members per group")
    fixed.append(f"{opts.conns} publishing connections x window {opts.window}")
    text = f"{WORKLOADS[dim]}; {', '.join(fixed)}"
    narrowed = [r.point for r in dim_results if r.point.load.window < opts.window]
    if narrowed:
        text += f" (window cut to {WINDOW_BYTES >> 20} MiB of payload in flight: "
        text += ", ".join(f"{p.load.window} at {p.value:,}" for p in narrowed) + ")"
    return text


def text(
    results: list[PointResult], systems: list[str], opts: SweepOptions, context: list[str]
) -> str:
    lines: list[str] = []
    for dim_results in by_dimension(results):
        header, body = rows(dim_results, systems)
        t = plain_table(header[0], *header[1:], right=tuple(header))
        for row in body:
            add_row(t, *row)
        lines.append(f"{AXES[dim_results[0].point.dimension]}: {describe(dim_results, opts)}")
        lines.extend(plain(t).splitlines())
        lines.append("")
    lines.extend(context)
    lines.extend(f"note: {n}" for r in results for n in r.notes)
    return "\n".join(lines)


def markdown(
    results: list[PointResult],
    systems: list[str],
    opts: SweepOptions,
    context: list[str],
    plot: str | None,
) -> str:
    """The BENCHMARKS.md section's body, to paste as it is."""
    lines: list[str] = []
    if plot:
        lines += [f"![cost per message against topics, groups, subscribers, size]({plot})", ""]
    for dim_results in by_dimension(results):
        header, body = rows(dim_results, systems)
        lines.append(f"**{AXES[dim_results[0].point.dimension]}**: {describe(dim_results, opts)}")
        lines.append("")
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines.extend("| " + " | ".join(row) + " |" for row in body)
        lines.append("")
    lines.extend(context)
    notes = [n for r in results for n in r.notes]
    if notes:
        lines.append("")
        lines.extend(f"- {n}" for n in notes)
    return "\n".join(lines)


def panels(results: list[PointResult], systems: list[str]) -> list[Panel]:
    """One plot panel per dimension: µs per message against the swept value, per system."""
    out = []
    for dim_results in by_dimension(results):
        series: dict[str, list[tuple[float, float]]] = {}
        for s in systems:
            pts = []
            for r in dim_results:
                rate = r.rate(s)
                if rate:
                    pts.append((float(r.point.value), 1e6 / rate))
            series[_name(s)] = pts
        out.append(Panel(AXES[dim_results[0].point.dimension], series))
    return out


def document(
    results: list[PointResult], systems: list[str], opts: SweepOptions, context: list[str]
) -> dict[str, Any]:
    return {
        "options": {
            k: (sorted(v) if isinstance(v, frozenset) else v)
            for k, v in dataclasses.asdict(opts).items()
        },
        "systems": systems,
        "context": context,
        "points": [
            {
                "dimension": r.point.dimension,
                "value": r.point.value,
                "load": dataclasses.asdict(r.point.load),
                "rates": {s: r.rate(s) for s in systems},
                "us_per_msg": {s: (1e6 / x if (x := r.rate(s)) else None) for s in systems},
                "ratios": {p: r.ratio(p) for p in systems if p != "linemq"},
                "round_rates": r.rates,
                "round_ratios": r.ratios,
                "notes": r.notes,
            }
            for r in results
        ],
    }
