"""``linemq stats``: the STATS reply gathered into one snapshot and drawn as rich tables.

Kept out of ``cli.py`` so the command stays a few lines, and out of the client
library so importing ``clients`` never pulls in rich.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from linemq.clients.cli_output import add_row, table
from linemq.clients.protocol import StatLine

Fields = Mapping[str, int | float]


@dataclass(slots=True)
class StatsSnapshot:
    broker: Fields = field(default_factory=dict)
    topics: dict[str, Fields] = field(default_factory=dict)
    groups: dict[tuple[str, str], Fields] = field(default_factory=dict)

    @classmethod
    def from_lines(cls, lines: Iterable[StatLine]) -> StatsSnapshot:
        """Unknown kinds are skipped, so a newer broker's extra lines do no harm."""
        snap = cls()
        for line in lines:
            match line.kind, line.names:
                case "broker", ():
                    snap.broker = line.fields
                case "topic", (topic,):
                    snap.topics[topic] = line.fields
                case "group", (topic, group):
                    snap.groups[(topic, group)] = line.fields
        return snap

    def as_json(self) -> dict[str, Any]:
        """The shape of the HTTP ``/api/stats`` reply."""
        return {
            "broker": dict(self.broker),
            "topics": {t: dict(f) for t, f in self.topics.items()},
            "groups": [{"topic": t, "group": g, **f} for (t, g), f in self.groups.items()],
        }


def render(
    snap: StatsSnapshot, previous: StatsSnapshot | None = None, elapsed: float = 0.0
) -> RenderableType:
    """The broker line, a topics table and a groups table; rates when ``previous`` is given."""
    rates = previous is not None and elapsed > 0
    b = snap.broker
    broker = Text.assemble(
        ("broker ", "bold"),
        f"up {timedelta(seconds=int(b.get('uptime_seconds', 0)))}  ",
        f"connections {_n(b.get('connections'))}  topics {_n(b.get('topics'))}  ",
        f"published {_n(b.get('published'))}  delivered {_n(b.get('delivered'))}  ",
        f"inflight {_n(b.get('inflight'))}  dead-lettered {_n(b.get('dead_lettered'))}",
        f"  subscribers {_n(b.get('subscribers'))}" if "subscribers" in b else "",
        f"  failures {_n(b.get('failures'))}" if "failures" in b else "",
        f"  on disk {_bytes(b['bytes_on_disk'])}" if "bytes_on_disk" in b else "",
    )
    topics = topics_table(snap, previous, elapsed)
    columns = ["TOPIC", "GROUP"]
    keys = ["members", "inflight", "waiting", "lag", "acked", "dead", "delivered", "redelivered"]
    if any("failures" in f for f in snap.groups.values()):  # brokers before it had none
        keys.append("failures")
    for key in keys:
        columns.append(key.upper())
        if key == "delivered" and rates:
            columns.append("DELIV/S")
    groups = table(*columns, "STATE", title="groups", right=tuple(columns[2:]))
    for (topic, group), f in snap.groups.items():
        before = previous.groups.get((topic, group)) if previous is not None else None
        cells = []
        for key in keys:
            cells.append(_n(f.get(key)))
            if key == "delivered" and rates:
                cells.append(_rate(f, before, "delivered", elapsed))
        state = Text("paused", style="yellow") if f.get("paused") else Text("running", "green")
        add_row(groups, topic, group, *cells, state)
    parts: list[RenderableType] = [broker]
    parts.append(topics if snap.topics else Text("no topics", style="dim"))
    parts.append(groups if snap.groups else Text("no consumer groups", style="dim"))
    return Group(*parts)


def topics_table(
    snap: StatsSnapshot,
    previous: StatsSnapshot | None = None,
    elapsed: float = 0.0,
    title: str | None = "topics",
) -> Table:
    """One row per topic: counts, offsets, size; a PUB/S column when ``previous`` is given."""
    rates = previous is not None and elapsed > 0
    numbers = ("PUBLISHED", *(["PUB/S"] if rates else []), "OFFSETS", "SIZE", "SEGMENTS")
    t = table("TOPIC", *numbers, "SUBS", "GROUPS", title=title, right=(*numbers, "SUBS", "GROUPS"))
    for name, f in snap.topics.items():
        before = previous.topics.get(name) if previous is not None else None
        offsets = f"{_n(f.get('first_offset'))}-{_n(f.get('last_offset'))}"
        add_row(
            t,
            name,
            _n(f.get("published")),
            *([_rate(f, before, "published", elapsed)] if rates else []),
            offsets if f.get("last_offset") else "-",
            _bytes(f.get("bytes", 0)),
            _n(f.get("segments")),
            _n(f.get("subscribers")),
            _n(f.get("groups")),
        )
    return t


def _rate(now: Fields, before: Fields | None, key: str, elapsed: float) -> str:
    if before is None or key not in now or key not in before or now[key] < before[key]:
        return "-"
    return f"{(now[key] - before[key]) / elapsed:,.1f}"


def _n(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
