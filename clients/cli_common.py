"""What every client command shares: the connection options and how a command runs.

``run`` turns a command's coroutine into an exit status the same way everywhere:
an ``ERR`` reply is printed as the server's own line on stderr with status 1, a
bad argument is status 2, a lost connection status 1.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import ssl as ssl_
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final

import click

from clients.aio import DEFAULT_HOST, DEFAULT_PORT, BrokerError, Client
from clients.protocol import ProtocolError

UNSAFE_ON_TERMINAL: Final = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
"""Control characters (C0 but tab, DEL, C1) and bidi overrides: from a message body they
could move the cursor, recolour or retitle a terminal, or reorder what it shows."""


def is_terminal() -> bool:
    """Whether stdout is a terminal, where text from messages is shown escaped."""
    return sys.stdout.isatty()


def terminal_safe(text: str) -> str:
    """``text`` with each control character shown as an escape (``\\x1b``, ``\\u202e``)."""
    return UNSAFE_ON_TERMINAL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"


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


def run(main: Coroutine[Any, Any, None], endpoint: Endpoint) -> None:
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
