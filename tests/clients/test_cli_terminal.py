"""The CLI on a terminal shows control characters from message bodies escaped, so a message
cannot drive the terminal it is read on; piped output stays byte for byte."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import sys

import pytest

from linemq.broker.server.app import Broker
from linemq.clients.cli import display_line
from linemq.clients.cli_output import terminal_safe
from linemq.clients.subscription import Message
from tests.conftest import BrokerFactory
from tests.wire import Wire

HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred \u202eevil\u202c \x9b31m tab\there"
SHOWN = "\\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mred \\u202eevil\\u202c \\u009b31m tab\\there"


def linemq(port: int, *args: str, stdout: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "from broker.cli import main; main()", *args, "--port", str(port)],
        stdout=stdout,
        stderr=subprocess.PIPE,
    )


def read_terminal(port: int, *args: str) -> str:
    """What ``linemq <args>`` writes when its stdout is a terminal."""
    leader, follower = pty.openpty()
    proc = linemq(port, *args, stdout=follower)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else b""
    return out.decode()


async def publish_hostile(broker: Broker) -> None:
    w = await Wire.open(broker.port)
    assert await w.cmd(f"PUB chat {HOSTILE}") == "OK published"
    await w.close()


async def test_history_on_a_terminal_escapes_escape_sequences(brokers: BrokerFactory) -> None:
    broker = await brokers.start()
    await publish_hostile(broker)
    shown = await asyncio.to_thread(read_terminal, broker.port, "history", "chat")
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown
    assert shown.rstrip("\r\n").endswith(" " + SHOWN)


async def test_history_into_a_pipe_is_byte_for_byte(brokers: BrokerFactory) -> None:
    broker = await brokers.start()
    await publish_hostile(broker)

    def piped() -> bytes:
        proc = linemq(broker.port, "history", "chat", stdout=subprocess.PIPE)
        out, _ = proc.communicate(timeout=30)
        return out

    out = await asyncio.to_thread(piped)
    assert out.decode().endswith(" " + HOSTILE + "\n")


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        ("plain text", "plain text"),
        (HOSTILE, SHOWN),
        ("back\\slash \x1b", "back\\\\slash \\x1b"),
    ],
)
def test_display_line_escapes_only_on_a_terminal(body: str, shown: str) -> None:
    m = Message("chat", "msg_1", 1, 1.0, body, raw=f"MSG chat msg_1 1 1.0 {body}")
    assert display_line(m) == f"MSG chat msg_1 1 1.0 {body}"
    assert display_line(m, terminal=True) == f"MSG chat msg_1 1 1.0 {shown}"


def test_terminal_safe_keeps_tabs_and_text() -> None:
    assert terminal_safe("a\tb ü 日本") == "a\tb ü 日本"
    assert terminal_safe("\x1b[31m\x7f\x85") == "\\x1b[31m\\x7f\\u0085"
