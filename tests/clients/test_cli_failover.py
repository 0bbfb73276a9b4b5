"""Every client command takes ``--servers`` / ``LINEMQ_SERVERS`` and fails over between nodes.

The commands run as real subprocesses against real in-process brokers, each node with
its own data directory.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import click
import pytest

from linemq.broker.server.app import Broker
from linemq.clients import Client
from linemq.clients.cli import client_commands
from tests.clients.test_failover import free_port, published, servers
from tests.conftest import BrokerFactory


async def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 20
) -> tuple[int, str, str]:
    proc = await start_cli(*args, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def start_cli(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LINEMQ_")}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "linemq",
        *args,
        env={**clean, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def node(brokers: BrokerFactory, tmp_path: Path, name: str, port: int = 0) -> Broker:
    return await brokers.start(data_dir=tmp_path / name, port=port)


async def texts(port: int, topic: str) -> list[str]:
    async with Client(port=port, reconnect=None) as c:
        return [m.text for m in await c.history(topic, 100)]


def every_command() -> list[click.Command]:
    found: list[click.Command] = []
    for command in client_commands:
        if isinstance(command, click.Group):
            found.extend(command.commands.values())
        else:
            found.append(command)
    return found


@pytest.mark.parametrize("command", every_command(), ids=lambda c: c.name)
def test_every_client_command_takes_servers(command: click.Command) -> None:
    option = next(p for p in command.params if p.name == "servers")
    assert isinstance(option, click.Option) and option.envvar == "LINEMQ_SERVERS"


async def test_pub_uses_the_node_that_answers(brokers: BrokerFactory, tmp_path: Path) -> None:
    live = await node(brokers, tmp_path, "live")
    listed = servers(free_port(), live.port)
    for i in range(3):  # whichever node the random start picks
        status, _, err = await cli("pub", "chat", f"hi {i}", "--servers", listed)
        assert status == 0, err
    assert await texts(live.port, "chat") == ["hi 0", "hi 1", "hi 2"]


async def test_linemq_servers_is_honoured_and_the_command_line_beats_it(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    a = await node(brokers, tmp_path, "a")
    b = await node(brokers, tmp_path, "b")
    env = {"LINEMQ_SERVERS": servers(free_port(), a.port), "LINEMQ_PORT": str(b.port)}
    status, _, err = await cli("pub", "chat", "from env", env=env)
    assert status == 0, err
    status, _, err = await cli("pub", "chat", "from --port", "--port", str(b.port), env=env)
    assert status == 0, err
    assert await texts(a.port, "chat") == ["from env"]  # LINEMQ_SERVERS over LINEMQ_PORT
    assert await texts(b.port, "chat") == ["from --port"]  # the command line over both
    status, out, err = await cli("ping", "--count", "1", env=env)
    assert (status, err) == (0, "")
    assert out.startswith(f"pong from 127.0.0.1:{a.port} ")


@pytest.mark.parametrize(
    ("args", "env", "error"),
    [
        (["--servers", "a:1,,b:2"], {}, "empty server address"),
        (["--servers", "a:70000"], {}, "port must be 1-65535"),
        (["--servers", "::1:8888"], {}, "IPv6 address in brackets"),
        ([], {"LINEMQ_SERVERS": "a:1,a:1"}, "server a:1 is listed twice"),
        (["--servers", "a:1", "--host", "b"], {}, "give --servers or --host/--port, not both"),
        (["--servers", "a:1", "--port", "2"], {}, "give --servers or --host/--port, not both"),
    ],
)
async def test_a_bad_server_list_is_a_usage_error(
    args: list[str], env: dict[str, str], error: str
) -> None:
    status, out, err = await cli("ping", "--count", "1", *args, env=env)
    assert (status, out) == (2, "")
    assert error in err


async def test_no_node_answering_names_each_and_exits_1() -> None:
    down = [free_port(), free_port()]
    status, _, err = await cli("ping", "--count", "1", "--servers", servers(*down))
    assert status == 1
    assert "no server took the connection" in err
    assert all(f"127.0.0.1:{port}" in err for port in down)


async def test_sub_moves_to_the_next_node_and_resumes_after_what_it_printed(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    a = await node(brokers, tmp_path, "shared")
    later = free_port()
    await published(a.port, "news", "seed")
    sub = await start_cli(
        "sub", "news", "--servers", servers(a.port, later), "--count", "3", "--from", "earliest"
    )
    assert sub.stdout is not None
    first = await asyncio.wait_for(sub.stdout.readline(), 20)
    assert first.decode().rstrip("\n").endswith(" seed")

    await brokers.stop(a)
    b = await node(brokers, tmp_path, "shared", port=later)
    await published(b.port, "news", "while away", "after")
    out, err = await asyncio.wait_for(sub.communicate(), 20)
    lines = out.decode().splitlines()
    assert sub.returncode == 0, err
    assert len(lines) == 2, lines
    assert lines[0].endswith(" while away") and lines[1].endswith(" after"), lines
