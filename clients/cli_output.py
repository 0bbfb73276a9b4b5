"""How every ``linemq`` command prints: JSON lines, or rich tables in one style.

A terminal gets rich's colours and a table fitted to its width. Anything else (a
pipe, a file, CliRunner) gets plain text with no control codes, as wide as the
content needs: nothing is cut at 80 columns, and lines carry no trailing padding,
so ``awk``/``grep``/``cut`` see the cells as they are.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import click
import orjson
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

F = TypeVar("F", bound=Callable[..., Any])

_ESCAPES: Final = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
UNSAFE_ON_TERMINAL: Final = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
"""Control characters (C0 but tab, DEL, C1) and bidi overrides: from a message body they
could move the cursor, recolour or retitle a terminal, or reorder what it shows."""

# Wide enough for any row; rich sizes a table to its content, not to this.
PIPE_WIDTH: Final = 1_000_000


def json_option(f: F) -> F:
    """The one ``--json`` flag: the data as JSON, one object per line."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print JSON instead, one object per line (lists: one object per item).",
    )(f)


def emit_json(value: Mapping[str, Any] | list[Any]) -> None:
    """One JSON document on one line, flushed at once (a stream is read line by line)."""
    click.echo(orjson.dumps(value).decode())


def is_terminal() -> bool:
    """Whether stdout is a terminal, where text from messages is shown escaped."""
    return sys.stdout.isatty()


def terminal_safe(text: str) -> str:
    """``text`` with each control character shown as an escape (``\\x1b``, ``\\u202e``)."""
    return UNSAFE_ON_TERMINAL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"


def terminal_console() -> Console:
    """A console on the real terminal (for ``Live``); markup off: names are data."""
    return Console(markup=False, emoji=False, highlight=False)


def show(renderable: RenderableType) -> None:
    """Print a table or text: fitted and coloured on a terminal, full-width plain text else."""
    if is_terminal():
        terminal_console().print(renderable)
        return
    click.echo(plain(renderable), nl=False)


def plain(renderable: RenderableType) -> str:
    """What ``show`` writes when stdout is not a terminal: no codes, no cut, no padding."""
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=PIPE_WIDTH,
        color_system=None,
        force_terminal=False,
        force_interactive=False,
        markup=False,
        emoji=False,
        highlight=False,
    )
    console.print(renderable)
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())


def table(*columns: str, title: str | None = None, right: tuple[str, ...] = ()) -> Table:
    """The one table style: upper-case headers, no box, two spaces between columns.

    Columns named in ``right`` are right-aligned (numbers). Cells given as ``str``
    are added as plain text by ``add_row`` below, never parsed as rich markup.
    """
    t = Table(
        box=None,
        pad_edge=False,
        show_edge=False,
        header_style="bold",
        title=title,
        title_justify="left",
        title_style="bold",
        expand=False,
    )
    for name in columns:
        t.add_column(name, justify="right" if name in right else "left")
    return t


def add_row(t: Table, *cells: str | Text) -> None:
    """Add cells as literal text: a message like ``[red]x`` must show as typed, and
    control characters from message bodies show escaped, never reach the terminal."""
    t.add_row(*(Text(terminal_safe(c)) if isinstance(c, str) else c for c in cells))


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
