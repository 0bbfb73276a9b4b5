"""Operator commands of the ``linemq`` CLI: ping, topics, groups (show, delete), pause,
resume, dlq (list, replay, purge) and stats.

Each prints a table (``clients/cli_output.py``: one style, never cut when piped)
or, with ``--json``, one JSON object per line. The message commands live in
``clients/cli.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Final

import click
from rich.live import Live

from linemq.clients.aio import BrokerError
from linemq.clients.cli_common import Endpoint, Seconds, connection_options, run
from linemq.clients.cli_output import (
    add_row,
    emit_json,
    escape_payload,
    is_terminal,
    json_option,
    plain,
    show,
    table,
    terminal_console,
    terminal_safe,
)
from linemq.clients.errors import ConnectionLost, Timeout
from linemq.clients.options import format_priority
from linemq.clients.protocol import DeadLetter, check_name, check_topic_or_pattern
from linemq.clients.servers import Address
from linemq.clients.stats_view import StatsSnapshot, render, topics_table

COUNT_HELP: Final = "How many (server default 100)."


@click.command()
@click.option(
    "-n",
    "--count",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="How many PINGs to send.",
)
@click.option(
    "-i",
    "--interval",
    type=Seconds(0),
    default=1.0,
    show_default=True,
    help="Seconds between PINGs.",
)
@json_option
@connection_options
def ping(count: int, interval: float, as_json: bool, endpoint: Endpoint) -> None:
    """Check that the broker answers: one line per PING with its round-trip time."""

    async def main() -> None:
        async with endpoint.client(protocol=1) as c:
            for seq in range(1, count + 1):
                if seq > 1:
                    await asyncio.sleep(interval)
                started = time.perf_counter()
                await c.ping()
                ms = (time.perf_counter() - started) * 1000
                where = Address(c.host, c.port)
                if as_json:
                    emit_json(
                        {
                            "host": c.host,
                            "port": c.port,
                            "seq": seq,
                            "ms": round(ms, 3),
                        }
                    )
                else:
                    click.echo(f"pong from {where} seq={seq} time={ms:.2f} ms")

    run(main(), endpoint)


@click.command()
@json_option
@connection_options
def topics(as_json: bool, endpoint: Endpoint) -> None:
    """List the broker's topics with their message counts, offsets and size (from STATS)."""

    async def main() -> None:
        async with endpoint.client(protocol=1) as c:
            snap = StatsSnapshot.from_lines(await c.stats())
        if as_json:
            for name, fields in snap.topics.items():
                emit_json({"topic": name, **fields})
        elif not snap.topics:
            click.echo("no topics")
        else:
            show(topics_table(snap, title=None))

    run(main(), endpoint)


class _Groups(click.Group):
    """``groups TOPIC`` lists (``groups show TOPIC``); ``groups delete TOPIC GROUP`` deletes.

    A first word that is not a subcommand is a topic, so ``linemq groups jobs`` works as it
    always did; a topic named like a subcommand is listed with ``groups show NAME``.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["show", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_Groups)
def groups() -> None:
    """Show the consumer groups of a topic (linemq groups TOPIC), or delete one."""


@groups.command("show")
@click.argument("topic")
@json_option
@connection_options
def groups_show(topic: str, as_json: bool, endpoint: Endpoint) -> None:
    """Show the consumer groups of TOPIC with their counters (also: linemq groups TOPIC)."""

    async def main() -> None:
        async with endpoint.client(protocol=1) as c:
            infos = await c.groups(topic)
        if as_json:
            for g in infos:
                emit_json({"topic": g.topic, "group": g.group, **g.stats})
            return
        if not infos:
            click.echo(f"no consumer groups on {topic}")
            return
        keys = list(dict.fromkeys(k for g in infos for k in g.stats))
        numbers = tuple(k.upper() for k in keys)
        t = table("GROUP", *numbers, right=numbers)
        for g in infos:
            add_row(t, g.group, *(str(g.stats.get(k, "")) for k in keys))
        show(t)

    run(main(), endpoint)


@groups.command("delete")
@click.argument("topic")
@click.argument("group")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Delete it even while members are connected.")
@json_option
@connection_options
def groups_delete(
    topic: str, group: str, yes: bool, force: bool, as_json: bool, endpoint: Endpoint
) -> None:
    """Delete consumer GROUP of TOPIC for good (DELETE TOPIC GROUP); TOPIC may be a wildcard.

    Its position and pending messages are forgotten; a later subscriber to GROUP starts a
    new group at the next message. Asks first on a terminal; elsewhere --yes is required.
    """
    try:
        check_topic_or_pattern(topic)
        check_name(group, "group")
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError(f"delete forgets group {group} of {topic}: add --yes")
        click.confirm(f"Delete group {group} of {topic} for good?", abort=True, err=True)

    async def main() -> None:
        async with endpoint.client(protocol=1) as c:
            await c.delete_group(topic, group, force=force)
        if as_json:
            emit_json({"topic": topic, "group": group, "deleted": True})
        else:
            click.echo(f"deleted {topic} {group}")

    run(main(), endpoint)


def _pause_command(paused: bool) -> click.Command:
    verb = "pause" if paused else "resume"

    @click.command(verb)
    @click.argument("topic")
    @click.argument("group")
    @json_option
    @connection_options
    def command(topic: str, group: str, as_json: bool, endpoint: Endpoint) -> None:
        async def main() -> None:
            async with endpoint.client(protocol=1) as c:
                await (c.pause if paused else c.resume)(topic, group)
            if as_json:
                emit_json({"topic": topic, "group": group, "paused": paused})
            else:
                click.echo(f"{verb}d {topic} {group}")

        _check_names(topic, group)
        run(main(), endpoint)

    command.help = (
        "Stop deliveries to GROUP on TOPIC (durably) until `resume`. The group keeps "
        "collecting messages, and messages in flight can still be acked."
        if paused
        else "Start deliveries to a paused GROUP on TOPIC again."
    )
    return command


pause = _pause_command(True)
resume = _pause_command(False)


def _check_names(topic: str, group: str | None = None) -> None:
    """A bad name is a usage error (exit 2) found before connecting."""
    try:
        check_name(topic)
        if group is not None:
            check_name(group, "group")
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@click.group()
def dlq() -> None:
    """Inspect, replay and purge dead letters (the messages in TOPIC.dlq)."""


@dlq.command("list")
@click.argument("topic")
@click.option("-n", "--count", type=click.IntRange(min=0), help=COUNT_HELP)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print each dead letter's JSON as the broker sent it, one per line.",
)
@connection_options
def dlq_list(topic: str, count: int | None, as_json: bool, endpoint: Endpoint) -> None:
    """List the latest dead letters of TOPIC, oldest first."""

    async def main() -> None:
        async with endpoint.client(protocol=1) as c:
            letters = await c.dlq(topic, count)
        if as_json:
            for letter in letters:
                click.echo(terminal_safe(letter.raw_json) if is_terminal() else letter.raw_json)
        elif not letters:
            click.echo(f"no dead letters for {topic}")
        else:
            t = table(*_DLQ_HEADER, right=("ATTEMPTS",))
            if is_terminal():  # fit the screen; piped, every message is shown whole
                t.columns[-1].overflow = "ellipsis"
                t.columns[-1].no_wrap = True
            for d in letters:
                add_row(t, *_dlq_row(d))
            show(t)

    run(main(), endpoint)


@dlq.command("replay")
@click.argument("topic")
@click.option(
    "--id",
    "ids",
    multiple=True,
    metavar="MESSAGE_ID",
    help="Dead letter to replay, by its original or its DLQ message id; repeatable.",
)
@click.option(
    "--all", "replay_all", is_flag=True, help="Replay every dead letter not yet replayed."
)
@json_option
@connection_options
def dlq_replay(
    topic: str, ids: Sequence[str], replay_all: bool, as_json: bool, endpoint: Endpoint
) -> None:
    """Republish dead letters of TOPIC as new messages and print how many.

    An id that names no dead letter is an error (the broker's ERR line on stderr,
    exit 1); the ids that were found are still replayed and counted.
    """
    if bool(ids) == replay_all:
        raise click.UsageError("give either --all or at least one --id")
    targets: list[str | None] = [None] if replay_all else list(dict.fromkeys(ids))

    async def main() -> int:
        async with endpoint.client(protocol=1) as c:
            results = await asyncio.gather(
                *(c.replay(topic, t, all=t is None) for t in targets), return_exceptions=True
            )
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, BrokerError):
                raise r
        errors = [r for r in results if isinstance(r, BrokerError)]
        if len(errors) < len(results):
            count = sum(r for r in results if isinstance(r, int))
            if as_json:
                emit_json({"topic": topic, "replayed": count})
            else:
                click.echo(f"replayed {count}")
        for e in errors:
            click.echo(f"ERR {e.reason}", err=True)
        return 1 if errors else 0

    run(main(), endpoint)


@dlq.command("purge")
@click.argument("topic")
@click.option(
    "--id",
    "letter",
    default=None,
    help="Remove only this letter (dlq offset, dlq id or message id).",
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@connection_options
def dlq_purge(topic: str, letter: str | None, yes: bool, as_json: bool, endpoint: Endpoint) -> None:
    """Delete every dead letter of TOPIC (PURGE TOPIC.dlq), or one (--id), and print how many.

    Asks first on a terminal; elsewhere (a script, a pipe) --yes is required.
    """
    _check_names(topic)
    what = f"dead letter {letter} of {topic}" if letter else f"every dead letter of {topic}"
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError(f"purge deletes {what}: add --yes")
        click.confirm(f"Delete {what}?", abort=True, err=True)

    async def main() -> None:
        async with endpoint.client(protocol=1) as c:
            count = await c.purge_dlq(topic, letter)
        if as_json:
            emit_json({"topic": topic, "purged": count})
        else:
            click.echo(f"purged {count}")

    run(main(), endpoint)


@click.command()
@click.argument("topic", required=False)
@click.option(
    "--watch",
    type=Seconds(0.1),
    is_flag=False,
    flag_value=2.0,
    default=None,
    metavar="[SECONDS]",
    help="Refresh every SECONDS (default 2) until Ctrl-C, with rates: in place on a "
    "terminal, one snapshot after another when piped.",
)
@json_option
@connection_options
def stats(topic: str | None, watch: float | None, as_json: bool, endpoint: Endpoint) -> None:
    """Show the broker's counters (STATS): the broker, its topics and consumer groups.

    With TOPIC, only that topic and its groups. With --json, one JSON object per
    snapshot (per line with --watch). Piped, each snapshot is written and flushed
    as it comes, without screen control codes.
    """

    def show_json(snap: StatsSnapshot) -> None:
        emit_json(snap.as_json())

    async def main() -> None:
        async with endpoint.client() as c:
            loop = asyncio.get_running_loop()
            snap, at = StatsSnapshot.from_lines(await c.stats(topic)), loop.time()
            if as_json:
                show_json(snap)
            if watch is None:
                if not as_json:
                    show(render(snap))
                return
            in_place = not as_json and is_terminal()
            if not as_json and not in_place:
                click.echo(plain(render(snap)), nl=False)
            with contextlib.ExitStack() as stack:
                live = None
                if in_place:
                    live = Live(render(snap), console=terminal_console())
                    stack.enter_context(live)
                while True:
                    await asyncio.sleep(watch)
                    try:
                        new, now = StatsSnapshot.from_lines(await c.stats(topic)), loop.time()
                    except (ConnectionLost, Timeout) as exc:  # the client is reconnecting
                        click.echo(f"linemq: {exc}; still trying", err=True)
                        continue
                    if as_json:
                        show_json(new)
                    elif live is not None:
                        live.update(render(new, snap, now - at), refresh=True)
                    else:
                        click.echo("\n" + plain(render(new, snap, now - at)), nl=False)
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
        escape_payload(d.text.encode()),
    ]


def _v2_fields(d: DeadLetter) -> str:
    """What a replay carries besides the text: the key, priority, headers and exact
    payload of a ``PUT`` (``-`` for a plain ``PUB``)."""
    original = d.original or {}
    parts = []
    if isinstance(original.get("k"), str):
        parts.append(f"key={original['k']}")
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
