"""Netcat sessions in the docs, as data: found in the markdown, then checked against a broker.

The convention (also stated in protocol.md, "Netcat sessions in these docs"):

- A fenced block that runs ``nc`` is a session. Just before its fence comes a marker:
  ``<!-- nc-session [option=value ...] -->`` (run it) or ``<!-- nc-fragment: why -->``
  (not runnable on its own; the test reports it as skipped). An unmarked block fails.
- ``$ nc HOST PORT`` opens a connection; below it, a line starting ``> `` is typed (sent),
  any other line is what the broker sends. ``$ printf '...' | nc HOST PORT`` sends the
  printf text, half-closes, and every line below it is the broker's output. Other ``$``
  commands in the block (the CLI) are not netcat and are not run here.
- Host and port are the test broker's, whatever the block says.
- In broker lines, a message id (``msg_<digits>_<8 hex>``) stands for the id the broker
  gives: the same id in the block must be the same id on the wire, and an id typed in a
  ``>`` line is replaced by the one it stands for. A 10-digit epoch timestamp stands for
  any timestamp, and ``...`` for any text.
- Marker options: ``serve="--max-retries 0"`` adds ``linemq serve`` options;
  ``user="TOKEN PUBLISH SUBSCRIBE"`` starts the broker with an ``--auth-file`` holding a
  user with that token and those patterns (comma-separated); ``id=NAME`` names a block and
  ``after=NAME`` runs the named block first on the same broker.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final

FENCE: Final = re.compile(r"^(`{3,})(.*)$")
MARKER: Final = re.compile(r"^<!--\s*nc-(session|fragment)\b:?(.*?)-->\s*$")
RUNS_NC: Final = re.compile(r"(^\$ |\|\s*)nc\s+\S+\s+\d+")
MSG_ID: Final = re.compile(r"msg_\d+_[0-9a-f]{8}")
TIMESTAMP: Final = re.compile(r"\b\d{10}\.\d+\b")
ELISION: Final = "..."
READ_TIMEOUT: Final = 5.0


class SessionMismatch(AssertionError):
    """The broker answered something other than what the docs show."""


@dataclass(frozen=True, slots=True)
class Step:
    """One ``$`` command of a block: an interactive or a piped netcat run."""

    piped: bytes | None
    """What a ``printf … | nc`` sends; None for an interactive ``nc``."""
    lines: tuple[tuple[str, str], ...]
    """(">", sent) and ("<", received) lines, in the order the docs show them."""


@dataclass(frozen=True, slots=True)
class Block:
    path: Path
    line: int
    kind: str
    """'session', 'fragment' or 'unmarked'."""
    options: dict[str, str] = field(default_factory=dict)
    steps: tuple[Step, ...] = ()
    note: str = ""

    @property
    def name(self) -> str:
        return f"{self.path.name}:{self.line}"


def extract(path: Path) -> list[Block]:
    """Every fenced block of ``path`` that runs nc, with its marker."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if not opened:
            i += 1
            continue
        end = next(
            (j for j in range(i + 1, len(lines)) if lines[j].startswith(opened.group(1))),
            len(lines),
        )
        body = lines[i + 1 : end]
        if any(RUNS_NC.search(line) for line in body):
            blocks.append(_block(path, i + 1, _marker_before(lines, i), body))
        i = end + 1
    return blocks


def _marker_before(lines: list[str], fence: int) -> re.Match[str] | None:
    j = fence - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    return MARKER.match(lines[j].strip()) if j >= 0 else None


def _block(path: Path, line: int, marker: re.Match[str] | None, body: list[str]) -> Block:
    if marker is None:
        return Block(path, line, "unmarked")
    if marker.group(1) == "fragment":
        return Block(path, line, "fragment", note=marker.group(2).strip())
    options = dict(word.split("=", 1) for word in shlex.split(marker.group(2)))
    return Block(path, line, "session", options, _steps(body))


def _steps(body: list[str]) -> tuple[Step, ...]:
    steps: list[Step] = []
    current: list[tuple[str, str]] | None = None
    piped: bytes | None = None
    for line in body:
        if line.startswith("$ "):
            if current is not None:
                steps.append(Step(piped, tuple(current)))
            command = line[2:].split("  #")[0].strip()
            current, piped = _command(command)
        elif current is not None:
            if line.startswith("> ") and piped is None:
                current.append((">", line[2:]))
            else:
                current.append(("<", line))
    if current is not None:
        steps.append(Step(piped, tuple(current)))
    return tuple(steps)


def _command(command: str) -> tuple[list[tuple[str, str]] | None, bytes | None]:
    """(lines to collect, piped input) for a netcat command; (None, None) for anything else."""
    words = shlex.split(command)
    if words[:1] == ["nc"]:
        return [], None
    if words[:1] == ["printf"] and words[2:4] == ["|", "nc"]:
        return [], words[1].replace("\\n", "\n").encode()
    return None, None


class Matcher:
    """Compares broker lines with the docs' lines, binding the docs' ids to real ones."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}

    def sent(self, line: str) -> str:
        return MSG_ID.sub(lambda m: self.ids.get(m.group(0), m.group(0)), line)

    def check(self, expected: str, actual: str) -> None:
        pattern, names = self._pattern(expected)
        found = re.fullmatch(pattern, actual)
        if found is None:
            raise SessionMismatch(f"docs show {expected!r}, broker sent {actual!r}")
        for name, doc_id in names.items():
            real = found.group(name)
            bound = self.ids.setdefault(doc_id, real)
            if bound != real or list(self.ids.values()).count(real) > 1:
                raise SessionMismatch(f"{doc_id} in the docs is {bound}, broker sent {real}")

    def _pattern(self, expected: str) -> tuple[str, dict[str, str]]:
        names: dict[str, str] = {}
        out = []
        for i, part in enumerate(re.split(f"({MSG_ID.pattern}|{TIMESTAMP.pattern})", expected)):
            if i % 2 == 0:
                out.append(".*".join(re.escape(p) for p in part.split(ELISION)))
            elif MSG_ID.fullmatch(part):
                if part in self.ids:
                    out.append(re.escape(self.ids[part]))
                else:
                    name = f"id{len(names)}"
                    names[name] = part
                    out.append(f"(?P<{name}>{MSG_ID.pattern})")
            else:
                out.append(r"\d+(?:\.\d+)?")
        return "".join(out), names


def run(block: Block, port: int) -> None:
    """Play every step of a session against the broker on ``port``; raise on a difference."""
    matcher = Matcher()
    for step in block.steps:
        with socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT) as sock:
            stream = sock.makefile("rb")
            if step.piped is not None:
                sock.sendall(step.piped)
                sock.shutdown(socket.SHUT_WR)
                _expect_lines(stream, matcher, [text for _, text in step.lines])
                _expect_end(stream)
                continue
            expected: list[str] = []
            for direction, text in step.lines:
                if direction == "<":
                    expected.append(text)
                    continue
                _expect_lines(stream, matcher, expected)
                expected = []
                sock.sendall(matcher.sent(text).encode() + b"\n")
            _expect_lines(stream, matcher, expected)
            typed = [text for direction, text in step.lines if direction == ">"]
            if typed[-1:] == ["QUIT"]:
                _expect_end(stream)


def _expect_lines(stream: BinaryIO, matcher: Matcher, expected: list[str]) -> None:
    for line in expected:
        raw = stream.readline()
        if not raw.endswith(b"\n"):
            raise SessionMismatch(f"docs show {line!r}, broker closed the connection ({raw!r})")
        matcher.check(line, raw[:-1].decode())


def _expect_end(stream: BinaryIO) -> None:
    rest = stream.read()
    if rest:
        raise SessionMismatch(f"broker sent more than the docs show: {rest!r}")


def auth_file(directory: Path, spec: str) -> Path:
    """A users file with one user, from a marker's ``user="TOKEN PUBLISH SUBSCRIBE"``."""
    token, publish, subscribe = spec.split()
    path = directory / "users.toml"
    path.write_text(
        "[[users]]\n"
        'name = "docs"\n'
        f'token_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n'
        f"publish = {publish.split(',')!r}\n".replace("'", '"')
        + f"subscribe = {subscribe.split(',')!r}\n".replace("'", '"')
    )
    return path
