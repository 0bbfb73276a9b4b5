"""Operator commands of the ``linemq`` CLI: groups, dlq (list, replay) and stats.

Tables where the wire format is JSON or counters; the message commands live in
``clients/cli.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Final

import click
import orjson
from rich.console import Console
from rich.live import Live

from clients.cli_common import Endpoint, connection_options, is_terminal, run, terminal_safe
from clients.options import format_priority
from clients.protocol import REPLAY_ALL, DeadLetter
from clients.stats_view import StatsSnapshot, render

MESSAGE_COLUMN_WIDTH: Final = 40
KEY_COLUMN_WIDTH: Final = 20


@click.command()
@click.argument("topic")
@connection_options
def groups(topic: str, endpoint: Endpoint) -> None:
    """Show the consumer groups of TOPIC with their counters."""

    async def main() -> None:
        async with endpoint.client() as c:
            infos = await c.groups(topic)
        if not infos:
            click.echo(f"no consumer groups on {topic}")
            return
        keys = list(dict.fromkeys(k for g in infos for k in g.stats))
        header = ["GROUP", *(k.upper() for k in keys)]
        rows = [[g.group, *(str(g.stats.get(k, "")) for k in keys)] for g in infos]
        for line in _table(header, rows):
            click.echo(line)

    run(main(), endpoint)


@click.group()
def dlq() -> None:
    """Inspect and replay dead letters."""


@dlq.command("list")
@click.argument("topic")
@click.option("-n", "count", type=click.IntRange(min=0), help="How many (server default 100).")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON of each dead letter.")
@connection_options
def dlq_list(topic: str, count: int | None, as_json: bool, endpoint: Endpoint) -> None:
    """List the latest dead letters of TOPIC, oldest first."""

    async def main() -> None:
        async with endpoint.client() as c:
            letters = await c.dlq(topic, count)
        if as_json:
            for letter in letters:
                click.echo(terminal_safe(letter.raw_json) if is_terminal() else letter.raw_json)
        elif not letters:
            click.echo(f"no dead letters for {topic}")
        else:
            for line in _table(_DLQ_HEADER, [_dlq_row(d) for d in letters]):
                click.echo(line)

    run(main(), endpoint)


@dlq.command("replay")
@click.argument("topic")
@click.option("--id", "ids", multiple=True, help="Dead letter to replay (original or DLQ id).")
@click.option(
    "--all", "replay_all", is_flag=True, help="Replay every dead letter not yet replayed."
)
@connection_options
def dlq_replay(topic: str, ids: Sequence[str], replay_all: bool, endpoint: Endpoint) -> None:
    """Republish dead letters of TOPIC as new messages."""
    if bool(ids) == replay_all:
        raise click.UsageError("give either --all or at least one --id")
    targets = [REPLAY_ALL] if replay_all else list(ids)

    async def main() -> None:
        async with endpoint.client() as c:
            results = await asyncio.gather(
                *(c.replay(topic, t) for t in targets), return_exceptions=True
            )
        click.echo(f"replayed {sum(r for r in results if isinstance(r, int))}")
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    run(main(), endpoint)


@click.command()
@click.argument("topic", required=False)
@click.option(
    "--watch",
    type=click.FloatRange(min=0.1),
    is_flag=False,
    flag_value=2.0,
    default=None,
    metavar="[SECONDS]",
    help="Refresh in place every SECONDS (default 2) until Ctrl-C, with rates.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as JSON instead.")
@connection_options
def stats(topic: str | None, watch: float | None, as_json: bool, endpoint: Endpoint) -> None:
    """Show the broker's counters (STATS): the broker, its topics and consumer groups.

    With TOPIC, only that topic and its groups. With --json and --watch, one JSON
    object per line.
    """

    def show(snap: StatsSnapshot) -> None:
        click.echo(orjson.dumps(snap.as_json()).decode())

    async def main() -> None:
        async with endpoint.client() as c:
            loop = asyncio.get_running_loop()
            snap, at = StatsSnapshot.from_lines(await c.stats(topic)), loop.time()
            if as_json:
                show(snap)
            if watch is None:
                if not as_json:
                    Console().print(render(snap))
                return
            with contextlib.ExitStack() as stack:
                live = None if as_json else stack.enter_context(Live(render(snap)))
                while True:
                    await asyncio.sleep(watch)
                    new, now = StatsSnapshot.from_lines(await c.stats(topic)), loop.time()
                    if live is None:
                        show(new)
                    else:
                        live.update(render(new, snap, now - at), refresh=True)
                    snap, at = new, now

    run(main(), endpoint)


_DLQ_HEADER: Final = [
    "DLQ#",
    "ID",
    "GROUP",
    "ATTEMPTS",
    "REASON",
    "LAST DELIVERY",
    "REPLAYED",
    "V2",
    "MESSAGE",
]


def _dlq_row(d: DeadLetter) -> list[str]:
    replayed = "no" if d.replayed is None else f"yes (offset {d.replayed.offset})"
    return [
        str(d.dlq_offset),
        d.id,
        d.group or "-",
        str(d.attempts),
        d.reason,
        _when(d.last_delivery_ts),
        replayed,
        _v2_fields(d),
        _truncate(d.text, MESSAGE_COLUMN_WIDTH),
    ]


def _v2_fields(d: DeadLetter) -> str:
    """What a replay carries besides the text: the key, priority, headers and exact
    payload of a ``PUT`` (``-`` for a plain ``PUB``)."""
    original = d.original or {}
    parts = []
    if isinstance(original.get("k"), str):
        parts.append(f"key={_truncate(original['k'], KEY_COLUMN_WIDTH)}")
    if "p" in original:
        try:
            parts.append(f"priority={format_priority(original['p'])}")
        except ValueError:
            parts.append(f"priority={original['p']!r}")
    if isinstance(original.get("h"), dict) and original["h"]:
        parts.append(f"headers={len(original['h'])}")
    if "b64" in original:
        parts.append("binary")
    return " ".join(parts) or "-"


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Aligned columns for people to read: control characters in a cell are escaped."""
    rows = [[terminal_safe(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
