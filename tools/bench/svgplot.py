"""A log-log line plot as SVG text, one panel per swept dimension, with no plotting library.

The bench needs one kind of figure, and writing it here keeps ``linemq bench`` free of a
plotting dependency; the output is plain text that diffs and reviews like the tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final
from xml.sax.saxutils import escape

PANEL_W: Final = 400
PANEL_H: Final = 270
LEFT, RIGHT, TOP, BOTTOM = 62, 18, 34, 44
COLUMNS: Final = 2
LEGEND_H: Final = 30
COLOURS: Final = ("#c0392b", "#2e6da4", "#27894b", "#8e44ad")
Y_LABEL: Final = "µs per message"


@dataclass(frozen=True, slots=True)
class Panel:
    title: str  # also the x axis: the swept value
    series: dict[str, list[tuple[float, float]]]  # name -> (x, y) points, x and y > 0


def _decades(values: list[float]) -> tuple[int, int]:
    lo = math.floor(math.log10(min(values)))
    hi = math.ceil(math.log10(max(values)))
    return lo, max(hi, lo + 1)


def _number(v: float) -> str:
    """1, 10, 100, 1k, 10k, 1M; 0.1 and 0.01 below one."""
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def _panel(panel: Panel, ox: float, oy: float, colours: dict[str, str]) -> list[str]:
    xs = [x for pts in panel.series.values() for x, _ in pts]
    ys = [y for pts in panel.series.values() for _, y in pts]
    out = [f'<g class="panel" data-title="{escape(panel.title)}">']
    x0, x1 = ox + LEFT, ox + PANEL_W - RIGHT
    y0, y1 = oy + PANEL_H - BOTTOM, oy + TOP
    out.append(
        f'<text x="{(x0 + x1) / 2:.1f}" y="{oy + 20:.1f}" text-anchor="middle" '
        f'font-weight="bold">{escape(panel.title)}</text>'
    )
    if not xs:
        out.append(
            f'<text x="{(x0 + x1) / 2:.1f}" y="{(y0 + y1) / 2:.1f}" '
            'text-anchor="middle">no figures</text></g>'
        )
        return out
    xlo, xhi = _decades(xs)
    ylo, yhi = _decades(ys)

    def px(x: float) -> float:
        return x0 + (math.log10(x) - xlo) / (xhi - xlo) * (x1 - x0)

    def py(y: float) -> float:
        return y0 - (math.log10(y) - ylo) / (yhi - ylo) * (y0 - y1)

    out.append(
        f'<rect x="{x0:.1f}" y="{y1:.1f}" width="{x1 - x0:.1f}" height="{y0 - y1:.1f}" '
        'fill="none" stroke="#888"/>'
    )
    for d in range(xlo, xhi + 1):
        x = px(10.0**d)
        out.append(f'<line x1="{x:.1f}" y1="{y0:.1f}" x2="{x:.1f}" y2="{y1:.1f}" stroke="#ddd"/>')
        out.append(
            f'<text x="{x:.1f}" y="{y0 + 16:.1f}" text-anchor="middle">{_number(10.0**d)}</text>'
        )
    for d in range(ylo, yhi + 1):
        y = py(10.0**d)
        out.append(f'<line x1="{x0:.1f}" y1="{y:.1f}" x2="{x1:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(
            f'<text x="{x0 - 6:.1f}" y="{y + 4:.1f}" text-anchor="end">{_number(10.0**d)}</text>'
        )
    out.append(
        f'<text x="{(x0 + x1) / 2:.1f}" y="{y0 + 34:.1f}" text-anchor="middle" '
        f'fill="#555">{escape(panel.title)} (log)</text>'
    )
    ymid = (y0 + y1) / 2
    out.append(
        f'<text x="{ox + 14:.1f}" y="{ymid:.1f}" text-anchor="middle" fill="#555" '
        f'transform="rotate(-90 {ox + 14:.1f} {ymid:.1f})">{Y_LABEL} (log)</text>'
    )
    for name, pts in panel.series.items():
        if not pts:
            continue
        colour = colours[name]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in sorted(pts))
        out.append(f'<g class="series" data-series="{escape(name)}" stroke="{colour}">')
        out.append(f'<polyline points="{coords}" fill="none" stroke-width="2"/>')
        for x, y in sorted(pts):
            out.append(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}">'
                f"<title>{escape(name)}: {_number(x)} -&gt; {y:,.2f} µs</title></circle>"
            )
        out.append("</g>")
    out.append("</g>")
    return out


def render(panels: list[Panel], caption: str = "") -> str:
    """The whole figure: panels two to a row, a legend and a caption under them."""
    names = list(dict.fromkeys(n for p in panels for n in p.series))
    colours = {n: COLOURS[i % len(COLOURS)] for i, n in enumerate(names)}
    cols = min(COLUMNS, max(1, len(panels)))
    rows = math.ceil(len(panels) / cols) if panels else 1
    width = cols * PANEL_W
    height = rows * PANEL_H + LEGEND_H + (20 if caption else 0)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for i, panel in enumerate(panels):
        out.extend(_panel(panel, (i % cols) * PANEL_W, (i // cols) * PANEL_H, colours))
    ly = rows * PANEL_H + 18
    for i, name in enumerate(names):
        lx = LEFT + i * 120
        out.append(
            f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 24}" y2="{ly - 4}" '
            f'stroke="{colours[name]}" stroke-width="2"/>'
        )
        out.append(f'<text x="{lx + 30}" y="{ly}">{escape(name)}</text>')
    if caption:
        out.append(f'<text x="{LEFT}" y="{ly + 20}" fill="#555">{escape(caption)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
