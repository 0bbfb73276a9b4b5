"""What every client command shares: the connection options, old option spellings,
and how a command runs.

``run`` turns a command's coroutine into an exit status the same way everywhere:
0 when it did what was asked (Ctrl-C ending ``sub`` or ``stats --watch`` included),
1 for an error (an ``ERR`` reply, printed as the server's own line on stderr, a
lost or refused connection, a dead letter not found), 2 for a usage error (click's
own, or a bad argument found before connecting).
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl as ssl_
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import click

from linemq.clients.aio import DEFAULT_HOST, DEFAULT_PORT, BrokerError, Client
from linemq.clients.options import to_seconds
from linemq.clients.protocol import ProtocolError
from linemq.clients.servers import Address, describe, parse_servers

F = TypeVar("F", bound=Callable[..., Any])


class Seconds(click.ParamType[float]):
    """A duration option: ``5`` (seconds), ``2.5``, ``500ms``, ``1m``, as the broker reads
    them; at least ``minimum`` seconds, never negative, NaN or infinite."""

    name = "DURATION"

    def __init__(self, minimum: float = 0.0) -> None:
        self.minimum = minimum

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            return to_seconds(value, min_seconds=self.minimum)
        except ValueError as e:
            self.fail(str(e), param, ctx)


class ServerList(click.ParamType[tuple[Address, ...]]):
    """``host1:8888,host2:8888`` (``[::1]:8888`` for IPv6; a missing port is 8888)."""

    name = "HOST:PORT,..."

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[Address, ...]:
        if isinstance(value, tuple):
            return value
        try:
            return parse_servers(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to connect: collected from the shared connection options."""

    servers: tuple[Address, ...]
    token: str | None = None
    ssl: ssl_.SSLContext | None = None

    def client(self, **kwargs: Any) -> Client:
        return Client(servers=self.servers, token=self.token, ssl=self.ssl, **kwargs)

    def __str__(self) -> str:
        return describe(self.servers)


def choose_servers(
    ctx: click.Context, host: str, port: int, servers: tuple[Address, ...] | None
) -> tuple[Address, ...]:
    """The command line beats the environment; ``--servers`` and ``--host``/``--port`` on one
    command line are a usage error; ``LINEMQ_SERVERS`` beats ``LINEMQ_HOST``/``LINEMQ_PORT``."""
    typed = {
        name
        for name in ("host", "port", "servers")
        if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
    }
    if "servers" in typed and typed & {"host", "port"}:
        raise click.UsageError("give --servers or --host/--port, not both")
    if servers is not None and (not typed or "servers" in typed):
        return servers
    return (Address(host, port),)


def connection_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add --servers/--host/--port/--token/--tls* and hand the command one ``endpoint``."""

    @functools.wraps(f)
    def wrapper(
        *args: Any,
        servers: tuple[Address, ...] | None,
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
        chosen = choose_servers(click.get_current_context(), host, port, servers)
        return f(*args, endpoint=Endpoint(chosen, token or None, context), **kwargs)

    options = [
        click.option(
            "--servers",
            envvar="LINEMQ_SERVERS",
            default=None,
            type=ServerList(),
            help="Brokers to use, failing over between them: host1:8888,host2:8888 "
            "(env LINEMQ_SERVERS; instead of --host/--port).",
        ),
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


def run(main: Coroutine[Any, Any, int | None], endpoint: Endpoint) -> None:
    """Run one command's coroutine and turn failures into a message and an exit code.

    The coroutine may return an exit status of its own (1 after it printed errors).
    """
    try:
        status = asyncio.run(main)
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
        click.echo(f"error: {endpoint}: {exc or type(exc).__name__}", err=True)
        sys.exit(1)
    else:
        if status:
            sys.exit(status)


def old_spelling(name: str, *decls: str, **attrs: Any) -> Callable[[F], F]:
    """A hidden option that sets option ``name`` under its old spelling (``-c`` for ``--count``).

    Scripts written for the old name keep working while ``--help`` shows one name
    per meaning. Giving both spellings with different values is a usage error.
    """
    alias = f"{name}_old_spelling"

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            old = kwargs.pop(alias)
            if old is not None:
                ctx = click.get_current_context()
                given = ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
                if given and kwargs[name] != old:
                    raise click.UsageError(
                        f"{decls[0]} is the old spelling of --{name.replace('_', '-')}: give one"
                    )
                kwargs[name] = old
            return f(*args, **kwargs)

        return cast(F, click.option(*decls, alias, hidden=True, default=None, **attrs)(wrapper))

    return decorate
