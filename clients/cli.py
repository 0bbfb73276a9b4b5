"""Client commands for the ``linemq`` CLI: pub, sub, history, groups, dlq, stats.

Exported as ``client_commands`` so the server's CLI group can attach them, and
as the standalone ``cli`` group. Output is the server's own lines where there is
one (``MSG``/``HISTORY``), so the CLI composes with grep and awk the way netcat
would; tables only where the wire format is JSON or counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import ssl as ssl_
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TextIO

import click
import orjson
from rich.console import Console
from rich.live import Live

from clients.aio import DEFAULT_HOST, DEFAULT_PORT, BrokerError, Client
from clients.protocol import REPLAY_ALL, DeadLetter, ProtocolError
from clients.stats_view import StatsSnapshot, render

PUB_BATCH: Final = 1000
MESSAGE_COLUMN_WIDTH: Final = 40


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to connect: collected from the shared connection options."""

    host: str
    port: int
    token: str | None = None
    ssl: ssl_.SSLContext | None = None

    def client(self, **kwargs: Any) -> Client:
        return Client(self.host, self.port, token=self.token, ssl=self.ssl, **kwargs)


def connection_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add --host/--port/--token/--tls* and hand the command one ``endpoint`` argument."""

    @functools.wraps(f)
    def wrapper(
        *args: Any,
        host: str,
        port: int,
        token: str | None,
        tls: bool,
        tls_ca: str | None,
        tls_cert: str | None,
        tls_key: str | None,
        **kwargs: Any,
    ) -> Any:
        context = None
        if tls or tls_ca or tls_cert:
            context = ssl_.create_default_context(cafile=tls_ca)
            if tls_cert:
                context.load_cert_chain(tls_cert, tls_key)
        return f(*args, endpoint=Endpoint(host, port, token or None, context), **kwargs)

    options = [
        click.option(
            "--host",
            envvar="LINEMQ_HOST",
            default=DEFAULT_HOST,
            show_default=True,
            help="Broker host (env LINEMQ_HOST).",
        ),
        click.option(
            "--port",
            envvar="LINEMQ_PORT",
            default=DEFAULT_PORT,
            show_default=True,
            type=click.IntRange(1, 65535),
            help="Broker port (env LINEMQ_PORT).",
        ),
        click.option(
            "--token",
            envvar="LINEMQ_TOKEN",
            default=None,
            help="Authenticate with this token (env LINEMQ_TOKEN).",
        ),
        click.option(
            "--tls",
            is_flag=True,
            envvar="LINEMQ_TLS",
            help="Connect with TLS, verifying the server's certificate.",
        ),
        click.option(
            "--tls-ca",
            envvar="LINEMQ_TLS_CA",
            default=None,
            type=click.Path(dir_okay=False, exists=True),
            help="CA file to verify the server with (implies --tls).",
        ),
        click.option(
            "--tls-cert",
            envvar="LINEMQ_TLS_CERT",
            default=None,
            type=click.Path(dir_okay=False, exists=True),
            help="Client certificate for mutual TLS (implies --tls).",
        ),
        click.option(
            "--tls-key",
            envvar="LINEMQ_TLS_KEY",
            default=None,
            type=click.Path(dir_okay=False, exists=True),
            help="Key of --tls-cert, if not in the same file.",
        ),
    ]
    command: Callable[..., Any] = wrapper
    for option in reversed(options):
        command = option(command)
    return command


def _run(main: Coroutine[Any, Any, None], endpoint: Endpoint) -> None:
    """Run one command's coroutine and turn failures into a message and an exit code."""
    try:
        asyncio.run(main)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how `sub` is meant to end
    except BrokenPipeError:
        # Reader went away (`linemq sub t | head`); stop quietly without a flush error at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except BrokerError as exc:
        click.echo(f"ERR {exc.reason}", err=True)
        sys.exit(1)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (OSError, TimeoutError, ProtocolError) as exc:
        click.echo(f"error: {endpoint.host}:{endpoint.port}: {exc or type(exc).__name__}", err=True)
        sys.exit(1)


@click.command()
@click.argument("topic")
@click.argument("message", nargs=-1)
@click.option("-v", "--verbose", is_flag=True, help="Print how many messages were published.")
@connection_options
def pub(topic: str, message: tuple[str, ...], verbose: bool, endpoint: Endpoint) -> None:
    """Publish MESSAGE to TOPIC, or one message per line of stdin if no MESSAGE is given.

    Stdin lines are pipelined in batches; empty lines are skipped.
    """

    async def main() -> None:
        # A publisher gets no deliveries, so it needs no HELLO: v1 bytes, one round trip less.
        async with endpoint.client(protocol=1) as c:
            if message:
                await c.publish(topic, " ".join(message))
                count = 1
            else:
                count = 0
                for batch in _batches(sys.stdin, PUB_BATCH):
                    count += await c.publish_many(topic, batch)
        if verbose:
            click.echo(f"published {count}")

    _run(main(), endpoint)


def _batches(stream: TextIO, size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for line in stream:
        text = line.rstrip("\r\n")
        if text:
            batch.append(text)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@click.command()
@click.argument("topic")
@click.option("-g", "--group", help="Join this consumer group (each message goes to one member).")
@click.option("--no-ack", is_flag=True, help="With --group: leave messages unacked.")
@click.option("-c", "--count", type=click.IntRange(min=1), help="Exit after N messages.")
@click.option(
    "--heartbeat-interval", type=click.FloatRange(min=0.01), default=10.0, show_default=True
)
@connection_options
def sub(
    topic: str,
    group: str | None,
    no_ack: bool,
    count: int | None,
    heartbeat_interval: float,
    endpoint: Endpoint,
) -> None:
    """Print each message of TOPIC as its raw MSG line until Ctrl-C (or --count)."""

    async def main() -> None:
        async with endpoint.client(heartbeat_interval=heartbeat_interval) as c:
            received = 0
            async for m in c.subscribe(topic, group):
                click.echo(m.raw)  # click.echo flushes, so each line shows up at once
                if group is not None and not no_ack:
                    try:
                        await m.ack()
                    except BrokerError as exc:  # e.g. ack timeout passed: say so, keep going
                        click.echo(f"ERR {exc.reason}", err=True)
                received += 1
                if count is not None and received >= count:
                    return

    _run(main(), endpoint)


@click.command()
@click.argument("topic")
@click.option("-n", "count", type=click.IntRange(min=0), default=10, show_default=True)
@connection_options
def history(topic: str, count: int, endpoint: Endpoint) -> None:
    """Print the last N messages of TOPIC as the server's HISTORY lines, oldest first."""

    async def main() -> None:
        async with endpoint.client() as c:
            for m in await c.history(topic, count):
                click.echo(m.raw)

    _run(main(), endpoint)


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

    _run(main(), endpoint)


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
                click.echo(letter.raw_json)
        elif not letters:
            click.echo(f"no dead letters for {topic}")
        else:
            for line in _table(_DLQ_HEADER, [_dlq_row(d) for d in letters]):
                click.echo(line)

    _run(main(), endpoint)


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

    _run(main(), endpoint)


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

    _run(main(), endpoint)


_DLQ_HEADER: Final = [
    "DLQ#",
    "ID",
    "GROUP",
    "ATTEMPTS",
    "REASON",
    "LAST DELIVERY",
    "REPLAYED",
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
        _truncate(d.text, MESSAGE_COLUMN_WIDTH),
    ]


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


client_commands: list[click.Command] = [pub, sub, history, groups, dlq, stats]


@click.group()
def cli() -> None:
    """linemq client commands."""


for _command in client_commands:
    cli.add_command(_command)


if __name__ == "__main__":
    cli()
