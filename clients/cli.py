"""Client commands for the ``linemq`` CLI: pub, sub, history, seek (and, from ``cli_ops``,
groups, dlq, stats).

Exported as ``client_commands`` so the server's CLI group can attach them, and
as the standalone ``cli`` group. Output is the server's own lines where there is
one (``MSG``/``HISTORY``), so the CLI composes with grep and awk the way netcat
would. A payload that is not one line of UTF-8 (possible with protocol v2) is
shown on its line with backslash escapes, or written as bytes with ``--raw``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO, Final, TextIO

import click

from clients.aio import BrokerError, Client, Message
from clients.cli_common import UNSAFE_ON_TERMINAL, Endpoint, connection_options, is_terminal, run
from clients.cli_ops import dlq, groups, stats
from clients.options import PRIORITIES
from clients.protocol import PublishResult, encode_put, encode_seek, encode_sub

PUB_BATCH: Final = 1000
_ESCAPES: Final = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


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
@click.option("--id", "publisher_id", help="Idempotency id: a repeat is stored only once.")
@click.option(
    "-H", "--header", "headers", multiple=True, metavar="NAME=VALUE", help="A header; repeatable."
)
@click.option("-v", "--verbose", is_flag=True, help="Say what was published.")
@connection_options
def pub(
    topic: str,
    message: tuple[str, ...],
    payload_file: BinaryIO | None,
    key: str | None,
    priority: str | None,
    delay: str | None,
    ttl: str | None,
    publisher_id: str | None,
    headers: Sequence[str],
    verbose: bool,
    endpoint: Endpoint,
) -> None:
    """Publish MESSAGE to TOPIC, or one message per line of stdin if no MESSAGE is given.

    Stdin lines are pipelined in batches; empty lines are skipped. Any of --file,
    --key, --priority, --delay, --ttl, --id or --header publishes with PUT
    (protocol v2); then -v prints "published <offset> <id>" (or "duplicate
    <offset> <id>" for an --id the broker has already seen) for each message.
    Without them it is the v1 PUB, and -v prints how many were published.
    """
    if message and payload_file is not None:
        raise click.UsageError("give MESSAGE or --file, not both")
    options: dict[str, Any] = {
        "key": key,
        "priority": priority,
        "delay": delay,
        "ttl": ttl,
        "id": publisher_id,
        "headers": _headers(headers) if headers else None,
    }
    options = {name: value for name, value in options.items() if value is not None}
    v2 = bool(options) or payload_file is not None
    if publisher_id is not None and not message and payload_file is None:
        raise click.UsageError("--id names one message: give MESSAGE or --file")
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
                if verbose:
                    for r in results:
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
@click.option("--no-ack", is_flag=True, help="With --group: leave messages unacked.")
@click.option("-c", "--count", type=click.IntRange(min=1), help="Exit after N messages.")
@click.option(
    "--raw",
    is_flag=True,
    help="Write each payload's exact bytes to stdout instead of lines, with nothing between "
    "messages (use --count 1 to save one payload to a file).",
)
@click.option(
    "--heartbeat-interval", type=click.FloatRange(min=0.01), default=10.0, show_default=True
)
@connection_options
def sub(
    topic: str,
    group: str | None,
    start: str | None,
    no_ack: bool,
    count: int | None,
    raw: bool,
    heartbeat_interval: float,
    endpoint: Endpoint,
) -> None:
    """Print each message of TOPIC as its MSG line until Ctrl-C (or --count).

    TOPIC may be a pattern: orders.* (one token) or orders.> (one or more). A
    payload that is one line of UTF-8 prints exactly as the broker's v1 MSG line.
    Any other payload (newlines, NUL, invalid UTF-8) prints on that line with
    backslash escapes: \\n \\r \\t \\\\ and \\xNN for other control or invalid bytes.
    On a terminal, a payload with control characters (escape sequences) is escaped too.
    """
    try:
        encode_sub(topic, group, start)  # a bad name, pattern or --from: usage error, no connect
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    async def main() -> None:
        terminal = is_terminal()
        async with endpoint.client(heartbeat_interval=heartbeat_interval) as c:
            received = 0
            async for m in c.subscribe(topic, group, start):
                if raw:
                    sys.stdout.buffer.write(m.payload)
                    sys.stdout.buffer.flush()
                else:
                    # click.echo flushes: each line shows at once. color=True: never strip
                    # escape sequences from piped output (a terminal gets them escaped).
                    click.echo(display_line(m, terminal=terminal), color=True)
                if group is not None and not no_ack:
                    try:
                        await m.ack()
                    except BrokerError as exc:  # e.g. ack timeout passed: say so, keep going
                        click.echo(f"ERR {exc.reason}", err=True)
                received += 1
                if count is not None and received >= count:
                    return

    run(main(), endpoint)


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


def escape_payload(payload: bytes) -> str:
    """One printable line: ``\\n``, ``\\r``, ``\\t``, ``\\\\``, ``\\xNN`` for the rest."""
    out = []
    for ch in payload.decode("utf-8", errors="surrogateescape"):
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 0xDC80 <= code <= 0xDCFF:  # an invalid byte, kept by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif UNSAFE_ON_TERMINAL.match(ch):  # C1 controls and bidi overrides
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


@click.command()
@click.argument("topic")
@click.option("-n", "count", type=click.IntRange(min=0), default=10, show_default=True)
@connection_options
def history(topic: str, count: int, endpoint: Endpoint) -> None:
    """Print the last N messages of TOPIC as the server's HISTORY lines, oldest first.

    Payloads that are not one line of UTF-8 are escaped as in `sub`.
    """

    async def main() -> None:
        terminal = is_terminal()
        async with endpoint.client() as c:
            for m in await c.history(topic, count):
                click.echo(display_line(m, terminal=terminal), color=True)

    run(main(), endpoint)


@click.command()
@click.argument("topic")
@click.argument("group")
@click.argument("position")
@connection_options
def seek(topic: str, group: str, position: str, endpoint: Endpoint) -> None:
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
        click.echo(f"seek {topic} {group} {offset}")

    run(main(), endpoint)


client_commands: list[click.Command] = [pub, sub, history, seek, groups, dlq, stats]


@click.group()
def cli() -> None:
    """linemq client commands."""


for _command in client_commands:
    cli.add_command(_command)


if __name__ == "__main__":
    cli()
