"""``linemq schedule add|list|rm``: repeatable jobs (SCHEDULE, SCHEDULES, UNSCHEDULE).

Same output rules as the other commands: plain text or a table, or JSON with ``--json``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, BinaryIO

import click

from linemq.clients.cli_common import Endpoint, connection_options, run
from linemq.clients.cli_output import add_row, emit_json, json_option, show, table
from linemq.clients.options import PRIORITIES
from linemq.clients.schedule_lines import ScheduleInfo
from linemq.clients.schedules import encode_schedule


@click.group()
def schedule() -> None:
    """Repeatable jobs the broker publishes on its own, every DURATION or on a cron time."""


@schedule.command("add")
@click.argument("topic")
@click.argument("name")
@click.argument("message", required=False)
@click.option("--every", metavar="DURATION", help="Publish every this long (30s, 5m, 1h).")
@click.option("--cron", metavar="EXPR", help="Publish at these times ('0 2 * * *'), UTC.")
@click.option("--tz", metavar="ZONE", help="Read --cron in this time zone (Europe/Paris).")
@click.option(
    "-f", "--file", "payload_file", type=click.File("rb"), help="The payload: this file's bytes."
)
@click.option("--key", help="Ordering key of each message.")
@click.option("--priority", type=click.Choice(list(PRIORITIES)), help="Delivery priority.")
@click.option("--delay", metavar="DURATION", help="Deliver each message this long after it fires.")
@click.option("--ttl", metavar="DURATION", help="Drop a message not delivered this long after.")
@click.option("--max-retries", type=click.IntRange(min=0), help="Failed retries before the DLQ.")
@click.option(
    "-H", "--header", "headers", multiple=True, metavar="NAME=VALUE", help="A header; repeatable."
)
@json_option
@connection_options
def add(
    topic: str,
    name: str,
    message: str | None,
    every: str | None,
    cron: str | None,
    tz: str | None,
    payload_file: BinaryIO | None,
    headers: tuple[str, ...],
    as_json: bool,
    endpoint: Endpoint,
    **put_options: Any,
) -> None:
    """Make (or replace) the job NAME on TOPIC, publishing MESSAGE (or --file) with
    --every or --cron, and print its first due time."""
    if (message is None) == (payload_file is None):
        raise click.UsageError("give MESSAGE or --file")
    payload = payload_file.read() if payload_file is not None else (message or "").encode()
    options = {k: v for k, v in put_options.items() if v is not None}
    if headers:
        options["headers"] = _headers(headers)
    try:
        encode_schedule(topic, name, payload, every=every, cron=cron, tz=tz, **options)
    except ValueError as e:
        raise click.UsageError(str(e)) from None

    async def main() -> None:
        async with endpoint.client(protocol=1) as c:
            first = await c.schedule(topic, name, payload, every=every, cron=cron, tz=tz, **options)
        if as_json:
            emit_json({"topic": topic, "name": name, "next": first})
        else:
            click.echo(f"scheduled {topic} {name}, next {_when(first)}")

    run(main(), endpoint)


@schedule.command("list")
@click.argument("topic", required=False)
@json_option
@connection_options
def list_(topic: str | None, as_json: bool, endpoint: Endpoint) -> None:
    """The repeatable jobs (of TOPIC): timing, next and last due times, firings, options."""

    async def main() -> None:
        async with endpoint.client(protocol=1) as c:
            jobs = await c.schedules(topic)
        if as_json:
            for job in jobs:
                emit_json(_as_json(job))
            return
        if not jobs:
            click.echo("no schedules")
            return
        t = table("TOPIC", "NAME", "WHEN", "NEXT", "LAST", "FIRED", "BYTES", "OPTIONS")
        for job in jobs:
            last = _when(job.last) if job.last is not None else "-"
            cells = [job.topic, job.name, _timing(job), _when(job.next), last]
            add_row(t, *cells, str(job.fired), str(job.bytes), " ".join(job.options))
        show(t)

    run(main(), endpoint)


@schedule.command("rm")
@click.argument("topic")
@click.argument("name")
@json_option
@connection_options
def rm(topic: str, name: str, as_json: bool, endpoint: Endpoint) -> None:
    """Remove the job NAME of TOPIC (UNSCHEDULE)."""

    async def main() -> None:
        async with endpoint.client(protocol=1) as c:
            await c.unschedule(topic, name)
        if as_json:
            emit_json({"topic": topic, "name": name, "removed": True})
        else:
            click.echo(f"unscheduled {topic} {name}")

    run(main(), endpoint)


def _timing(job: ScheduleInfo) -> str:
    if job.cron is not None:
        return f"cron {job.cron}" + (f" ({job.tz})" if job.tz else "")
    return f"every {job.every}"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(sep=" ", timespec="seconds")


def _as_json(job: ScheduleInfo) -> dict[str, object]:
    return {
        "topic": job.topic,
        "name": job.name,
        "every": job.every,
        "cron": job.cron,
        "tz": job.tz,
        "next": job.next,
        "last": job.last,
        "fired": job.fired,
        "bytes": job.bytes,
        "options": list(job.options),
    }


def _headers(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--header")
        out[name] = value
    return out
