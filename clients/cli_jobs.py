"""Job-queue commands of the ``linemq`` CLI: ``status`` (where a message is), ``policy``, ``clean``
(acked history) and ``topics delete`` (with ``topics``, from cli_ops, as ``topics list``).

Same output rules as ``cli_ops``: a table, or one JSON object with ``--json``.
"""

from __future__ import annotations

import sys
from datetime import datetime

import click

from linemq.clients.cli_common import Endpoint, connection_options, run
from linemq.clients.cli_ops import topics as topics_list
from linemq.clients.cli_output import add_row, emit_json, json_option, show, table
from linemq.clients.lookups import GroupPlace, MessageStatus
from linemq.clients.options import parse_duration
from linemq.clients.policies import GroupPolicy, TopicPolicy, encode_set_policy
from linemq.clients.protocol import check_name

DETAIL_SKIP = frozenset({"state", "attempt", "attempts", "member", "progress", "note"})


@click.command()
@click.argument("topic")
@click.argument("message")
@json_option
@connection_options
def status(topic: str, message: str, as_json: bool, endpoint: Endpoint) -> None:
    """Where MESSAGE (an id, or an offset) of TOPIC is in each of its consumer groups:
    waiting, in flight (member, attempt, progress), done or dead-lettered (STATUS)."""
    try:
        check_name(topic)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    what: str | int = int(message) if message.isascii() and message.isdigit() else message

    async def main() -> None:
        async with endpoint.client(protocol=1) as c:
            found = await c.status(topic, what)
        if as_json:
            emit_json(_as_json(found))
            return
        when = datetime.fromtimestamp(found.ts).isoformat(sep=" ", timespec="milliseconds")
        extra = "".join(f" {k}={v}" for k, v in found.fields.items() if k != "ts")
        click.echo(f"{found.topic} {found.offset} {found.id} published {when}{extra}")
        if not found.groups:
            click.echo(f"no consumer groups on {topic}")
            return
        t = table("GROUP", "STATE", "ATTEMPTS", "MEMBER", "PROGRESS", "DETAIL", right=("ATTEMPTS",))
        for g in found.groups:
            add_row(t, g.group, g.state, str(g.attempts), g.member or "", _progress(g), _detail(g))
        show(t)

    run(main(), endpoint)


@click.command()
@click.argument("topic")
@click.argument("group", required=False)
@click.option(
    "--set",
    "changes",
    multiple=True,
    metavar="KEY=VALUE",
    help="With GROUP: set this setting of the group (repeat; KEY=default clears it): "
    "max_retries, backoff, ack_timeout, max_inflight, ordering, rate, nack_backoff.",
)
@json_option
@connection_options
def policy(
    topic: str, group: str | None, changes: tuple[str, ...], as_json: bool, endpoint: Endpoint
) -> None:
    """The delivery policy TOPIC's consumer groups use (POLICY): max retries, backoff,
    ack timeout, max in flight per member, ordering, rate, nack backoff, and the
    --topic-policy pattern that set it. With GROUP, that group's, and which settings are
    its own; with --set, change them first (needs manage)."""
    try:
        check_name(topic)
        if group is not None:
            check_name(group, "group")
        settings = dict(_setting(c) for c in changes)
        if settings:
            if group is None:
                raise ValueError("--set needs a GROUP")
            encode_set_policy(topic, group, settings)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None

    async def main() -> None:
        async with endpoint.client(protocol=1) as c:
            if group is None:
                found: TopicPolicy = await c.policy(topic)
            elif settings:
                found = await c.set_group_policy(topic, group, **settings)
            else:
                found = await c.group_policy(topic, group)
        fields = {
            "topic": found.topic,
            **({"group": found.group} if isinstance(found, GroupPolicy) else {}),
            "max_retries": found.max_retries,
            "backoff": found.backoff,
            "ack_timeout": found.ack_timeout,
            "max_inflight": found.max_inflight,
            "ordering": found.ordering,
            "rate": found.rate,
            "nack_backoff": found.nack_backoff,
            "source": found.source,
            **({"overrides": list(found.overrides)} if isinstance(found, GroupPolicy) else {}),
        }
        if as_json:
            emit_json(fields)
            return
        head = (
            f"max_retries={found.max_retries} backoff={found.backoff} "
            f"ack_timeout={found.ack_timeout:g}s max_inflight={found.max_inflight}"
        )
        rest = (
            f"ordering={found.ordering} rate={found.rate or 'none'} "
            f"nack_backoff={'on' if found.nack_backoff else 'off'}"
        )
        if isinstance(found, GroupPolicy):  # in the order of the POLICY lines
            own = ",".join(found.overrides) or "none"
            click.echo(
                f"{found.topic} {found.group} {head} {rest} source={found.source} overrides={own}"
            )
        else:
            click.echo(f"{found.topic} {head} source={found.source} {rest}")

    run(main(), endpoint)


def _setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise ValueError(f"--set takes KEY=VALUE, got {text!r}")
    return key, value


def _progress(g: GroupPlace) -> str:
    parts = []
    if g.progress is not None:
        parts.append(f"{g.progress:g}%")
    if g.note:
        parts.append(g.note)
    return " ".join(parts)


def _detail(g: GroupPlace) -> str:
    return " ".join(f"{k}={v}" for k, v in g.fields.items() if k not in DETAIL_SKIP)


def _as_json(found: MessageStatus) -> dict[str, object]:
    return {
        "topic": found.topic,
        "offset": found.offset,
        "id": found.id,
        "ts": found.ts,
        **{k: v for k, v in found.fields.items() if k != "ts"},
        "groups": [{"group": g.group, **g.fields} for g in found.groups],
    }


class _Topics(click.Group):
    """``topics`` lists (``topics list``), as it always did; ``topics delete TOPIC`` deletes."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_Topics)
def topics() -> None:
    """List the broker's topics (linemq topics), or delete one."""


topics.add_command(topics_list, "list")


@topics.command("delete")
@click.argument("topic")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Delete it even while clients subscribe to it.")
@json_option
@connection_options
def topics_delete(topic: str, yes: bool, force: bool, as_json: bool, endpoint: Endpoint) -> None:
    """Delete TOPIC for good: its messages, its dead letters and every consumer group of
    both (DELETE TOPIC). A topic made again under the name goes on at the next offset.
    Asks first on a terminal; elsewhere --yes is required."""
    try:
        check_name(topic)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError(f"delete removes topic {topic} and its groups: add --yes")
        click.confirm(f"Delete topic {topic}, its dead letters and groups?", abort=True, err=True)

    async def main() -> None:
        async with endpoint.client(protocol=1) as c:
            await c.delete_topic(topic, force=force)
        if as_json:
            emit_json({"topic": topic, "deleted": True})
        else:
            click.echo(f"deleted {topic}")

    run(main(), endpoint)


@click.command()
@click.argument("topic")
@click.option("--older", default=None, help="Only segments whose newest message is older (7d).")
@click.option("--keep", type=click.IntRange(min=0), default=None, help="Keep the newest N.")
@json_option
@connection_options
def clean(
    topic: str, older: str | None, keep: int | None, as_json: bool, endpoint: Endpoint
) -> None:
    """Delete TOPIC's oldest whole segments that every consumer group has finished, older
    than --older and/or beyond the newest --keep messages (CLEAN), and print how many."""
    try:
        check_name(topic)
        seconds = parse_duration(older) if older is not None else None
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    if seconds is None and keep is None:
        raise click.UsageError("give --older, --keep, or both")

    async def main() -> None:
        async with endpoint.client(protocol=1) as c:
            count = await c.clean(topic, older=seconds, keep=keep)
        if as_json:
            emit_json({"topic": topic, "cleaned": count})
        else:
            click.echo(f"cleaned {count}")

    run(main(), endpoint)
