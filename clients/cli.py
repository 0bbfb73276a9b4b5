"""Client commands for the ``linemq`` CLI: pub, sub, history, seek (and, from ``cli_ops``,
ping, topics, groups, pause, resume, dlq, stats; from ``cli_work``, work).

Exported as ``client_commands`` so the server's CLI group can attach them, and
as the standalone ``cli`` group. Output is the server's own lines where there is
one (``MSG``/``HISTORY``), so the CLI composes with grep and awk the way netcat
would. A payload that is not one line of UTF-8 (possible with protocol v2) is
shown on its line with backslash escapes, or written as bytes with ``--raw``.
With ``--json`` every command prints JSON objects, one per line.
"""

from __future__ import annotations

import asyncio
import base64
import sys
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO, Final, TextIO

import click

from linemq.clients.aio import BrokerError, Client, Message
from linemq.clients.cli_common import Endpoint, Seconds, connection_options, old_spelling, run
from linemq.clients.cli_jobs import clean, policy, status, topics
from linemq.clients.cli_ops import dlq, groups, pause, ping, resume, stats
from linemq.clients.cli_output import (
    UNSAFE_ON_TERMINAL,
    emit_json,
    escape_payload,
    is_terminal,
    json_option,
)
from linemq.clients.cli_schedule import schedule
from linemq.clients.cli_work import work
from linemq.clients.options import PRIORITIES, is_pattern
from linemq.clients.protocol import PublishResult, encode_put, encode_seek, encode_sub

PUB_BATCH: Final = 1000


@click.command()
@click.argument("topic")
@click.argument("message", nargs=-1)
@click.option(
    "-f",
    "--file",
    "payload_file",
    type=click.File("rb"),
    help="Publish this file's bytes, exactly, as one message ('-' for all of stdin).",
)
@click.option("--key", help="Ordering key: a group never has two messages of a key in flight.")
@click.option("--priority", type=click.Choice(list(PRIORITIES)), help="Delivery priority.")
@click.option("--delay", metavar="DURATION", help="Deliver after this long (500ms, 5s, 2m, 1h).")
@click.option("--ttl", metavar="DURATION", help="Drop the message if not delivered by then.")
@click.option(
    "--dedup-id",
    metavar="ID",
    help="Publisher id for idempotency: a repeat within the broker's dedup window is stored once.",
)
@old_spelling("dedup_id", "--id")
@click.option(
    "--max-retries",
    type=click.IntRange(min=0),
    help="Failed retries before this message is dead-lettered (over the topic's policy).",
)
@click.option(
    "-H", "--header", "headers", multiple=True, metavar="NAME=VALUE", help="A header; repeatable."
)
@click.option("-v", "--verbose", is_flag=True, help="Say what was published.")
@json_option
@connection_options
def pub(
    topic: str,
    message: tuple[str, ...],
    payload_file: BinaryIO | None,
    key: str | None,
    priority: str | None,
    delay: str | None,
    ttl: str | None,
    dedup_id: str | None,
    max_retries: int | None,
    headers: Sequence[str],
    verbose: bool,
    as_json: bool,
    endpoint: Endpoint,
) -> None:
    """Publish MESSAGE to TOPIC, or one message per line of stdin if no MESSAGE is given.

    Stdin lines are pipelined in batches; empty lines are skipped. Any of --file,
    --key, --priority, --delay, --ttl, --dedup-id, --max-retries, --header or --json publishes
    with PUT (protocol v2); then -v prints "published <offset> <id>" (or
    "duplicate <offset> <id>" for a --dedup-id the broker has already seen) for
    each message, and --json the same as {"topic", "offset", "id", "duplicate"}.
    Without them it is the v1 PUB, and -v prints how many were published.
    """
    if message and payload_file is not None:
        raise click.UsageError("give MESSAGE or --file, not both")
    options: dict[str, Any] = {
        "key": key,
        "priority": priority,
        "delay": delay,
        "ttl": ttl,
        "id": dedup_id,
        "headers": _headers(headers) if headers else None,
        "max_retries": max_retries,
    }
    options = {name: value for name, value in options.items() if value is not None}
    v2 = bool(options) or payload_file is not None or as_json
    if dedup_id is not None and not message and payload_file is None:
        raise click.UsageError("--dedup-id names one message: give MESSAGE or --file")
    try:
        encode_put(topic, b"", **options)  # check every option before connecting
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    async def main() -> None:
        # A publisher gets no deliveries, so it needs no HELLO: v1 bytes, one round trip less.
        async with endpoint.client(protocol=1) as c:
            if not v2:
                count = await _publish_v1(c, topic, message)
                if verbose:
                    click.echo(f"published {count}")
                return
            if payload_file is not None:
                payloads: Iterator[list[bytes]] = iter([[payload_file.read()]])
            elif message:
                payloads = iter([[" ".join(message).encode()]])
            else:
                payloads = ([t.encode() for t in b] for b in _batches(sys.stdin, PUB_BATCH))
            for batch in payloads:
                results = await asyncio.gather(*(c.put(topic, p, **options) for p in batch))
                for r in results:
                    if as_json:
                        emit_json(
                            {
                                "topic": topic,
                                "offset": r.offset,
                                "id": r.id,
                                "duplicate": r.duplicate,
                            }
                        )
                    elif verbose:
                        click.echo(_put_result(r))

    run(main(), endpoint)


async def _publish_v1(c: Client, topic: str, message: tuple[str, ...]) -> int:
    if message:
        await c.publish(topic, " ".join(message))
        return 1
    count = 0
    for batch in _batches(sys.stdin, PUB_BATCH):
        count += await c.publish_many(topic, batch)
    return count


def _put_result(r: PublishResult) -> str:
    return f"{'duplicate' if r.duplicate else 'published'} {r.offset} {r.id}"


def _headers(pairs: Sequence[str]) -> dict[str, str]:
    headers = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--header")
        headers[name] = value
    return headers


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
@click.option(
    "--from",
    "start",
    metavar="POSITION",
    help="Start at earliest, latest, an offset N, time:<epoch> or ago:<duration> (e.g. ago:5m). "
    "For a group, only when this creates it.",
)
@click.option(
    "--history",
    "history_count",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="First print the last N messages (as HISTORY lines), then go on live from the "
    "next one, with none missed or doubled in between. Fanout on one topic only.",
)
@click.option(
    "--ordering",
    type=click.Choice(["fifo", "key", "none"]),
    help="With --group: the group's ordering when this creates it (fifo: one message out "
    "at a time, a retried one holding back the rest; key, the default: one per key=; "
    "none: keys are not held).",
)
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="TEST",
    help="With --group: a header filter of the group this creates (repeat: all must hold), "
    "e.g. 'h.type=email|sms', 'h.lang!=en', 'h.trace', '!h.debug'.",
)
@click.option("--no-ack", is_flag=True, help="With --group: leave messages unacked.")
@click.option(
    "-n", "--count", type=click.IntRange(min=1), help="Exit after N messages (history included)."
)
@old_spelling("count", "-c", type=click.IntRange(min=1))
@click.option(
    "--raw",
    is_flag=True,
    help="Write each payload's exact bytes to stdout instead of lines, with nothing between "
    "messages (use --count 1 to save one payload to a file).",
)
@click.option(
    "--heartbeat-interval",
    type=Seconds(0.01),
    default=10.0,
    show_default=True,
    help="Seconds between HEARTBEATs while in a group; keep it under the broker's "
    "--heartbeat-timeout.",
)
@json_option
@connection_options
def sub(
    topic: str,
    group: str | None,
    start: str | None,
    history_count: int,
    ordering: str | None,
    filters: tuple[str, ...],
    no_ack: bool,
    count: int | None,
    raw: bool,
    heartbeat_interval: float,
    as_json: bool,
    endpoint: Endpoint,
) -> None:
    """Print each message of TOPIC as its MSG line until Ctrl-C (or --count).

    TOPIC may be a pattern: orders.* (one token) or orders.> (one or more). A
    payload that is one line of UTF-8 prints exactly as the broker's v1 MSG line.
    Any other payload (newlines, NUL, invalid UTF-8) prints on that line with
    backslash escapes: \\n \\r \\t \\\\ and \\xNN for other control or invalid bytes.
    With --json, one object per message (see `history --json`). On a terminal, a
    payload with control characters (escape sequences) is escaped too.
    """
    if history_count and (group is not None or start is not None or is_pattern(topic)):
        raise click.UsageError("--history is for a fanout SUB on one topic, without --from")
    if raw and as_json:
        raise click.UsageError("give --raw or --json, not both")
    try:
        header_filter = list(filters) or None
        encode_sub(topic, group, start, ordering, header_filter)  # bad: usage error
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    terminal = is_terminal()

    def write(m: Message) -> None:
        if raw:
            sys.stdout.buffer.write(m.payload)
            sys.stdout.buffer.flush()
        elif as_json:
            emit_json(message_json(m))
        else:
            # click.echo flushes: each line shows at once. color=True: never strip
            # escape sequences from piped output (a terminal gets them escaped).
            click.echo(display_line(m, terminal=terminal), color=True)

    async def main() -> None:
        async with endpoint.client(heartbeat_interval=heartbeat_interval) as c:
            received = 0
            position: int | str | None = start
            if history_count:
                # HISTORY, then SUB from the offset after the last one shown: the broker
                # replays whatever came in between, so nothing is missed or printed twice.
                past = await c.history(topic, history_count)
                for m in past:
                    write(m)
                    received += 1
                    if count is not None and received >= count:
                        return
                position = past[-1].offset + 1 if past else "earliest"
            # Across a broker restart the client reconnects, re-joins the group and
            # resumes fanout after the last offset printed: this loop just waits.
            async for m in await c.subscribe(topic, group, position, ordering, header_filter):
                write(m)
                if group is not None and not no_ack:
                    try:
                        await m.ack()
                    except BrokerError as exc:  # e.g. ack timeout passed: say so, keep going
                        click.echo(f"ERR {exc.reason}", err=True)
                received += 1
                if count is not None and received >= count:
                    return

    run(main(), endpoint)


def message_json(m: Message) -> dict[str, Any]:
    """A delivery as JSON: ``payload`` when it is UTF-8 text, else ``payload_b64``."""
    out: dict[str, Any] = {"topic": m.topic, "id": m.id, "offset": m.offset, "ts": m.ts}
    try:
        out["payload"] = m.payload.decode()
    except UnicodeDecodeError:
        out["payload_b64"] = base64.b64encode(m.payload).decode()
    optional = {
        "group": m.group,
        "headers": dict(m.headers) or None,
        "key": m.key,
        "priority": m.priority,
        "attempt": m.attempt,
    }
    out.update((k, v) for k, v in optional.items() if v is not None)
    return out


def display_line(m: Message, *, terminal: bool = False) -> str:
    """``m.raw``, unless the payload is not one line of text: then the same line, escaped.

    ``terminal``: also escape a payload with control characters, so that a message
    cannot drive the terminal it is shown on (piped output stays exact).
    """
    try:
        text = m.payload.decode()
    except UnicodeDecodeError:
        text = None
    if (
        text is not None
        and not any(c in text for c in "\n\r\x00")
        and not (terminal and UNSAFE_ON_TERMINAL.search(text))
    ):
        return m.raw
    prefix = " ".join(m.raw.split(" ", 5)[:5])
    return f"{prefix} {escape_payload(m.payload)}"


@click.command()
@click.argument("topic")
@click.option(
    "-n",
    "--count",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="How many messages.",
)
@json_option
@connection_options
def history(topic: str, count: int, as_json: bool, endpoint: Endpoint) -> None:
    """Print the last N messages of TOPIC as the server's HISTORY lines, oldest first.

    Payloads that are not one line of UTF-8 are escaped as in `sub`. With --json,
    one object per message: topic, id, offset, ts, and payload (its text) or
    payload_b64 (when it is not UTF-8), plus headers, key, priority and attempt
    when the message has them.
    """

    async def main() -> None:
        terminal = is_terminal()
        async with endpoint.client() as c:
            for m in await c.history(topic, count):
                if as_json:
                    emit_json(message_json(m))
                else:
                    click.echo(display_line(m, terminal=terminal), color=True)

    run(main(), endpoint)


@click.command()
@click.argument("topic")
@click.argument("group")
@click.argument("position")
@json_option
@connection_options
def seek(topic: str, group: str, position: str, as_json: bool, endpoint: Endpoint) -> None:
    """Move GROUP's next delivery on TOPIC to POSITION and print the offset it resolved to.

    POSITION is earliest, latest, an offset N, time:<epoch seconds> or ago:<duration>.
    Messages from there on are delivered again, acked or not.
    """
    try:
        encode_seek(topic, group, position)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    async def main() -> None:
        async with endpoint.client(protocol=1) as c:
            offset = await c.seek(topic, group, position)
        if as_json:
            emit_json({"topic": topic, "group": group, "offset": offset})
        else:
            click.echo(f"seek {topic} {group} {offset}")

    run(main(), endpoint)


client_commands: list[click.Command] = [
    pub,
    sub,
    history,
    seek,
    ping,
    topics,
    groups,
    pause,
    resume,
    dlq,
    stats,
    work,
    status,
    clean,
    policy,
    schedule,
]


@click.group()
def cli() -> None:
    """linemq client commands."""


for _command in client_commands:
    cli.add_command(_command)


if __name__ == "__main__":
    cli()
