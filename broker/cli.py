"""The ``linemq`` command: ``serve`` builds a Config and runs the broker; client commands attach."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import ssl
import sys
from collections.abc import Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from linemq.broker.config import (
    Config,
    parse_age,
    parse_size,
    parse_topic_policy,
    parse_topic_retention,
)
from linemq.broker.logsetup import configure_logging
from linemq.broker.protocol.durations import parse_duration
from linemq.broker.storage.log_store import Store
from linemq.broker.storage.records import StorageError
from linemq.broker.storage.state_store import StateStore

F = TypeVar("F", bound=Callable[..., Any])


def _opt(name: str, **kwargs: Any) -> Callable[[F], F]:
    """A serve option also read from ``LINEMQ_<NAME>``, with its default shown in --help."""
    env = "LINEMQ_" + name.lstrip("-").replace("-", "_").upper()
    return click.option(name, envvar=env, show_envvar=True, show_default=True, **kwargs)


DEFAULTS = Config()


class _Parsed(click.ParamType[Any]):
    """A click type from one of config's parse_* functions, so errors read well."""

    def __init__(self, parse: Callable[[str], Any], name: str) -> None:
        self.parse = parse
        self.name = name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


def _duration(minimum: float) -> _Parsed:
    """A duration flag: ``30`` (seconds), ``30s``, ``500ms``, ``2m``; at least ``minimum``
    seconds, never negative, NaN or infinite (which a float flag let through)."""
    return _Parsed(partial(parse_duration, min_seconds=minimum), "DURATION")


class _LazyGroup(click.Group):
    """Loads the client, tool and verify commands only when one of them runs.

    ``linemq serve`` then imports neither the client nor bench and torture.
    """

    # command name -> module that defines it (as a click command of that name)
    LAZY: dict[str, str] = {
        **dict.fromkeys(
            [
                "pub", "sub", "history", "seek", "ping", "topics",
                "groups", "pause", "resume", "dlq", "stats", "status", "clean", "work", "policy",
            ],
            "linemq.clients.cli",
        ),
        "schedule": "linemq.clients.cli",
        "bench": "linemq.tools.bench.cli",
        "torture": "linemq.tools.torture",
        "verify": "linemq.broker.verify_command",
    }  # fmt: skip

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in self.LAZY:
            return command
        import importlib

        module = importlib.import_module(self.LAZY[cmd_name])
        found = getattr(module, cmd_name, None)
        return found if isinstance(found, click.Command) else None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="linemq")
def main() -> None:
    """linemq: a durable message broker you can drive with netcat."""


@main.command()
@_opt("--host", default=DEFAULTS.host, help="Address to listen on.")
@_opt("--port", type=int, default=DEFAULTS.port, help="TCP port (0 picks a free one).")
@_opt(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULTS.data_dir,
    help="Where topic logs and group state live.",
)
@_opt(
    "--fsync",
    type=click.Choice(["always", "interval", "never"]),
    default=DEFAULTS.fsync,
    help="always: fsync before each OK (group commit); interval: every --fsync-interval-ms."
    " With --store the default is always: each OK waits for the database's commit.",
)
@_opt(
    "--fsync-interval-ms",
    type=click.IntRange(min=1),
    default=DEFAULTS.fsync_interval_ms,
    help="With --fsync interval: how often dirty files are fsynced.",
)
@_opt(
    "--segment-bytes",
    type=click.IntRange(min=4096),
    default=DEFAULTS.segment_bytes,
    help="Roll a topic's log segment at this size.",
)
@_opt(
    "--max-line-bytes",
    type=click.IntRange(min=64),
    default=DEFAULTS.max_line_bytes,
    help="Longest command line accepted.",
)
@_opt(
    "--max-pending-bytes",
    type=click.IntRange(min=1024),
    default=DEFAULTS.max_pending_bytes,
    help="Output a subscriber may fall behind by before it is disconnected.",
)
@_opt(
    "--write-timeout",
    type=_duration(0.001),
    default=DEFAULTS.write_timeout,
    help="Seconds a client may read nothing of a HISTORY, DLQ or catch-up reply before "
    "it is disconnected.",
)
@_opt(
    "--max-message-bytes",
    type=click.IntRange(min=1),
    default=DEFAULTS.max_message_bytes,
    help="Largest message text a PUB may carry.",
)
@_opt(
    "--max-connections",
    type=click.IntRange(min=1),
    default=DEFAULTS.max_connections,
    help="Connections beyond this get ERR too many connections.",
)
@_opt(
    "--max-topics",
    type=click.IntRange(min=1),
    default=DEFAULTS.max_topics,
    help="Topics a client may create (dead-letter topics are always allowed).",
)
@_opt(
    "--max-subscriptions",
    type=click.IntRange(min=1),
    default=DEFAULTS.max_subscriptions,
    help="Subscriptions and group memberships per connection.",
)
@_opt(
    "--max-inflight",
    type=click.IntRange(min=1),
    default=DEFAULTS.max_inflight,
    help="Unacked messages per consumer-group member.",
)
@_opt(
    "--ack-timeout",
    type=_duration(0.001),
    default=DEFAULTS.ack_timeout,
    help="Seconds a member has to ACK before the message is retried.",
)
@_opt(
    "--heartbeat-timeout",
    type=_duration(0.001),
    default=DEFAULTS.heartbeat_timeout,
    help="Seconds of silence after which a group member is declared dead.",
)
@_opt(
    "--shutdown-grace",
    type=_Parsed(parse_age, "DURATION"),
    default="5s",
    help="On SIGTERM, how long to wait for messages in flight to be acked before stopping "
    "(no new deliveries meanwhile; 0: stop at once).",
)
@_opt(
    "--retry-backoff-base",
    type=_duration(0),
    default=DEFAULTS.retry_backoff_base,
    help="Seconds before the first retry; each further retry waits twice as long.",
)
@_opt(
    "--retry-backoff-max",
    type=_duration(0),
    default=DEFAULTS.retry_backoff_max,
    help="Longest wait between retries, in seconds.",
)
@_opt(
    "--max-retries",
    type=click.IntRange(min=0),
    default=DEFAULTS.max_retries,
    help="Failed retries before a message goes to <topic>.dlq.",
)
@_opt(
    "--topic-policy",
    type=_Parsed(
        parse_topic_policy,
        "PATTERN=max_retries:N,backoff:...,ack_timeout:D,max_inflight:N,ordering:O,rate:N/D,"
        "nack_backoff:on|off",
    ),
    multiple=True,
    help="Per-topic delivery policy, e.g. 'orders.*=max_retries:10,backoff:exponential:2s:5m,"
    "ack_timeout:30s,max_inflight:50' (backoff:fixed:5s too; ordering:none|key|fifo for new "
    "groups; rate:100/1s per group; nack_backoff:off makes a bare NACK redeliver at once; "
    "repeat; the most specific pattern wins; settings left out are the flags above).",
)
@_opt(
    "--dead-letter-expired/--drop-expired",
    default=DEFAULTS.dead_letter_expired,
    help="Send messages whose TTL passed to <topic>.dlq (reason expired) instead of dropping.",
)
@_opt(
    "--dedup-window",
    type=_Parsed(parse_age, "DURATION"),
    default="2m",
    help="How long a publisher-supplied message id (PUT ... id=) is remembered.",
)
@_opt(
    "--max-schedules",
    type=click.IntRange(min=0),
    default=DEFAULTS.max_schedules,
    help="Repeatable jobs (SCHEDULE) the broker keeps; more get ERR too many schedules.",
)
@_opt(
    "--schedule-min-every",
    type=_Parsed(parse_age, "DURATION"),
    default="1s",
    help="The shortest SCHEDULE ... every= accepted (cron jobs fire at most once a second).",
)
@_opt(
    "--retention-bytes",
    type=_Parsed(parse_size, "SIZE"),
    default="0",
    help="Delete a topic's oldest segments past this size (64MiB, 10GB; 0: keep all).",
)
@_opt(
    "--retention-age",
    type=_Parsed(parse_age, "DURATION"),
    default="0",
    help="Delete segments whose newest message is older than this (12h, 7d; 0: keep all).",
)
@_opt(
    "--topic-retention",
    type=_Parsed(parse_topic_retention, "PATTERN=bytes:SIZE,age:DURATION"),
    multiple=True,
    help="Per-topic override, e.g. 'orders.*=bytes:1GiB,age:7d' (repeat; first match wins).",
)
@_opt(
    "--dlq-max-letters",
    type=click.IntRange(min=0),
    default=DEFAULTS.dlq_max_letters,
    help="Keep the newest N dead letters of each topic; older ones are no longer listed "
    "or replayed, and their segments are deleted (0: keep all).",
)
@_opt(
    "--retention-check-ms",
    type=click.IntRange(min=1),
    default=DEFAULTS.retention_check_ms,
    help="How often retention runs.",
)
@_opt(
    "--http-port",
    type=click.IntRange(min=0, max=65535),
    default=None,
    help="Serve /metrics, /healthz, /readyz and the dashboard on this port (off if unset).",
)
@_opt("--http-host", default=DEFAULTS.http_host, help="Address for --http-port.")
@_opt(
    "--sample-interval",
    type=_duration(0.01),
    default=DEFAULTS.sample_interval,
    help="Seconds between the dashboard charts' samples (180 kept: 15 min at 5 s).",
)
@_opt(
    "--max-failure-rate",
    type=click.FloatRange(min=0, max=1),
    default=None,
    help="/readyz answers 503 while a group's failed deliveries over its outcomes in "
    "--failure-rate-window pass this (0.5: half). Off if unset.",
)
@_opt(
    "--failure-rate-window",
    type=_Parsed(parse_age, "DURATION"),
    default="5m",
    help="The window of --max-failure-rate (and of /readyz?max_failure_rate=).",
)
@_opt(
    "--auth-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="TOML file of users (token hashes, publish/subscribe patterns). Off if unset.",
)
@_opt(
    "--auth-timeout",
    type=_duration(0.001),
    default=DEFAULTS.auth_timeout,
    help="Seconds a connection may stay unauthenticated (with --auth-file).",
)
@_opt(
    "--max-unauthenticated",
    type=click.IntRange(min=1),
    default=DEFAULTS.max_unauthenticated,
    help="Connections that have not yet authenticated (with --auth-file); beyond it, new "
    "ones get ERR too many unauthenticated connections.",
)
@_opt(
    "--tls-cert",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Serve TLS with this certificate (PEM; with its key unless --tls-key).",
)
@_opt(
    "--tls-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Private key of --tls-cert, if not in the same file.",
)
@_opt(
    "--tls-client-ca",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Require client certificates signed by this CA (mutual TLS).",
)
@_opt(
    "--store",
    metavar="URI",
    default=None,
    help="Keep topic logs in PostgreSQL (preview, one node per database): a libpq URI, "
    "postgresql://user@host/db (several hosts with target_session_attrs=read-write). "
    "Groups and other state stay in --data-dir. Unset: files in --data-dir.",
)
@_opt(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=DEFAULTS.log_level,
    help="Least severe log events written (to stderr).",
)
@_opt(
    "--log-format",
    type=click.Choice(["console", "json"]),
    default=DEFAULTS.log_format,
    help="console: for people; json: one JSON object per line, for log collectors.",
)
def serve(**options: Any) -> None:
    """Run the broker (Ctrl-C or SIGTERM: wait --shutdown-grace for acks of messages in
    flight, then flush, fsync, say goodbye, exit 0; a second signal stops at once)."""
    options["topic_retention"] = tuple(options["topic_retention"])
    options["topic_policy"] = tuple(options["topic_policy"])
    store = options.pop("store")
    if store:
        _check_store(store)
        if click.get_current_context().get_parameter_source("fsync") is ParameterSource.DEFAULT:
            # A state write is only queued until the database commits it: an OK sent
            # before that could be lost with the node, so replies wait for the commit.
            options["fsync"] = "always"
    config = Config(**options)
    configure_logging(config.log_level, config.log_format)
    run(config, store or None)


STORE_SCHEMES = ("postgresql", "postgres")


def _check_store(uri: str) -> None:
    """A usage error (exit 2) for a URI no store takes, or a driver not installed."""
    scheme, sep, _ = uri.partition("://")
    if not sep or scheme.lower() not in STORE_SCHEMES:
        given = f"{scheme}://" if sep else "something else"
        raise click.BadParameter(
            f"takes a postgresql:// (or postgres://) URI, not {given}; without --store,"
            " topics are files in --data-dir",
            param_hint="--store",
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        click.echo(
            "linemq: --store postgresql:// needs psycopg: pip install 'linemq[postgresql]'",
            err=True,
        )
        sys.exit(2)


def _open_store(uri: str) -> Store:
    """The PostgreSQL store, open and holding its node lock; warnings about what the
    server's replication settings leave unpromised are logged."""
    import structlog
    from psycopg.conninfo import conninfo_to_dict

    from linemq.broker.storage.postgres import PostgresStore

    store = PostgresStore(uri, exclusive=True)
    store.open()
    log = structlog.get_logger(__name__)
    where = conninfo_to_dict(uri)  # never the password: only where it is
    log.info(
        "store_opened",
        store="postgresql",
        host=where.get("host", ""),
        port=where.get("port", ""),
        dbname=where.get("dbname", ""),
        topics=len(store.topics()),
    )
    for warning in store.warnings:
        log.warning("postgres_replication", warning=warning)
    return store


def _open_state(uri: str) -> StateStore:
    """Group, pattern, replay and schedule logs and dedup markers in the same database
    (connected and migrated now, so a failure is reported like the log store's)."""
    from linemq.broker.storage.postgres_state import PostgresStateStore

    state = PostgresStateStore(uri)
    state.connect()
    return state


def run(config: Config, store_uri: str | None = None) -> None:
    from linemq.broker.auth import AuthError
    from linemq.broker.server.app import Broker
    from linemq.broker.server.face import StartHttp
    from linemq.broker.server.tls import TLSConfigError

    http: StartHttp | None = None
    if config.http_port is not None:  # the HTTP side (and aiohttp) loads only when asked for
        from linemq.broker.ops.http import start_http

        http = start_http

    async def serve_forever() -> None:
        store: Store | None = None
        state: StateStore | None = None
        if store_uri is not None:
            try:
                store = _open_store(store_uri)
                state = _open_state(store_uri)
            except StorageError as e:
                if store is not None:
                    store.close()
                click.echo(f"linemq: cannot use the PostgreSQL store: {e}", err=True)
                sys.exit(1)
        try:
            broker = Broker(config, http=http, store=store, state=state)
        except (AuthError, TLSConfigError, ssl.SSLError, OSError) as e:
            if store is not None:
                store.close()
            if state is not None:
                state.close()
            click.echo(f"linemq: {e}", err=True)
            sys.exit(1)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, broker.request_stop)
            except NotImplementedError:  # Windows: no loop signal handlers
                signal.signal(sig, lambda *_: loop.call_soon_threadsafe(broker.request_stop))
        try:
            await broker.start()
        except OSError as e:
            click.echo(f"linemq: cannot listen on {config.host}:{config.port}: {e}", err=True)
            sys.exit(1)
        _calm_gc()
        await broker.serve_until_stopped()
        await broker.stop()

    run_loop(serve_forever())


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """uvloop where it is installed (not on Windows), asyncio's own loop elsewhere."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def _calm_gc() -> None:
    """Make the cyclic collector's full passes short and rare: they stall the loop.

    A full pass walked every object, about 45,000 once the broker is up (modules,
    classes, recovered state), for 7-15 ms; and since published records outlive two
    young passes in the tail cache, one came about every second at 10,000 msg/s.
    That was most of publish->deliver p99. What is alive at start-up stays alive, so
    it is frozen out of every pass, and full passes wait for 100 middle ones instead
    of 10. Cycles (closed connections) are still collected, later.
    """
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 100)


@main.group()
def auth() -> None:
    """Make tokens for --auth-file."""


@auth.command("new-user")
@click.argument("name")
@click.option("--publish", "-p", multiple=True, help="Topic pattern the user may publish to.")
@click.option("--subscribe", "-s", multiple=True, help="Topic pattern the user may read.")
@click.option(
    "--manage",
    "-m",
    multiple=True,
    help="Topic pattern whose groups and dead letters the user may manage "
    "(SEEK, PAUSE, RESUME, REPLAY, PURGE).",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the token to this new file (mode 0600) instead of stderr.",
)
def new_user(
    name: str,
    publish: tuple[str, ...],
    subscribe: tuple[str, ...],
    manage: tuple[str, ...],
    token_file: Path | None,
) -> None:
    """Print the [[users]] entry for the auth file (stdout) and a fresh token (stderr).

    Only the token's hash goes in the entry, so `linemq auth new-user NAME ... >>
    users.toml` never stores the token; give it to the user (it is shown once).
    """
    import tomli_w

    from linemq.broker.auth import hash_token, new_token
    from linemq.broker.protocol.names import is_valid_pattern

    for pattern in (*publish, *subscribe, *manage):
        if not is_valid_pattern(pattern):
            raise click.BadParameter(
                f"{pattern!r} is not a topic or pattern (orders.*, orders.>)",
                param_hint="--publish/--subscribe/--manage",
            )
    token = new_token()
    entry = {
        "name": name,
        "token_sha256": hash_token(token),
        "publish": list(publish),
        "subscribe": list(subscribe),
        "manage": list(manage),
    }
    if token_file is not None:
        try:
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as e:
            raise click.ClickException(f"cannot create {token_file}: {e.strerror}") from None
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        click.echo(f"linemq: token for {name} written to {token_file}", err=True)
    else:
        click.echo(
            f"linemq: token for {name} (shown once; the entry holds only its hash):", err=True
        )
        click.echo(token, err=True)
    # TOML is UTF-8 whatever the locale: a name like "team-🚀" is written as itself.
    sys.stdout.buffer.write(tomli_w.dumps({"users": [entry]}).encode())
    sys.stdout.flush()
