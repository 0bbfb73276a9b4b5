"""The client CLI commands, through click's CliRunner, against the fake broker in a thread."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.testing import CliRunner, Result

from linemq.clients.cli import cli, client_commands
from tests.clients.conftest import DEAD_LETTER

if TYPE_CHECKING:
    from conftest import FakeBroker

REPO_ROOT = Path(__file__).resolve().parents[2]


def run(fake_broker: FakeBroker, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, [*args, "--port", str(fake_broker.port)], input=stdin)


def test_commands_are_exported_for_the_server_cli() -> None:
    names = {c.name for c in client_commands}
    assert names == {
        "pub",
        "sub",
        "history",
        "seek",
        "ping",
        "topics",
        "groups",
        "pause",
        "resume",
        "status",
        "clean",
        "dlq",
        "stats",
        "work",
        "policy",
        "schedule",
    }
    main = click.Group("linemq")
    for command in client_commands:
        main.add_command(command)
    dlq = main.commands["dlq"]
    assert isinstance(dlq, click.Group)
    assert set(dlq.commands) == {"list", "replay", "purge"}


def test_pub_one_message_prints_nothing(threaded_fake_broker: FakeBroker) -> None:
    result = run(threaded_fake_broker, "pub", "chat", "hi there")
    assert (result.exit_code, result.output) == (0, "")
    assert threaded_fake_broker.received[0] == "PUB chat hi there"


def test_pub_stdin_publishes_one_message_per_nonempty_line(
    threaded_fake_broker: FakeBroker,
) -> None:
    result = run(threaded_fake_broker, "pub", "chat", "-v", stdin="a\n\nb c\r\nd")
    assert (result.exit_code, result.output) == (0, "published 3\n")
    assert [t for *_, t in threaded_fake_broker.topics["chat"]] == ["a", "b c", "d"]


def test_pub_err_goes_to_stderr_with_nonzero_exit(threaded_fake_broker: FakeBroker) -> None:
    result = run(threaded_fake_broker, "pub", "chat", "boom")
    assert result.exit_code == 1
    assert result.stderr == "ERR rejected boom\n"
    assert result.stdout == ""


def test_pub_invalid_topic_is_a_usage_error(threaded_fake_broker: FakeBroker) -> None:
    result = run(threaded_fake_broker, "pub", "bad topic!", "x")
    assert result.exit_code == 2
    assert "invalid topic name" in result.stderr


def test_connection_refused_is_reported_without_traceback(threaded_fake_broker: FakeBroker) -> None:
    result = CliRunner().invoke(cli, ["history", "chat", "--port", "1"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: 127.0.0.1:1:")


def test_host_and_port_come_from_env(threaded_fake_broker: FakeBroker) -> None:
    env = {"LINEMQ_HOST": "127.0.0.1", "LINEMQ_PORT": str(threaded_fake_broker.port)}
    result = CliRunner().invoke(cli, ["pub", "chat", "via env"], env=env)
    assert result.exit_code == 0, result.output
    assert "PUB chat via env" in threaded_fake_broker.received


def test_sub_prints_raw_msg_lines_until_count(threaded_fake_broker: FakeBroker) -> None:
    threaded_fake_broker.publish_when_subscribed(
        "SUB chat", "chat", ["one", "two  spaced", "three"]
    )
    result = run(threaded_fake_broker, "sub", "chat", "--count", "2")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("MSG chat msg_") and lines[0].endswith(" 1 1758865780.25 one")
    assert lines[1].endswith(" 2 1758865780.25 two  spaced")
    assert threaded_fake_broker.received[-1] == "QUIT"


def test_sub_group_acks_each_message(threaded_fake_broker: FakeBroker) -> None:
    threaded_fake_broker.publish_when_subscribed("SUB jobs w", "jobs", ["j1", "j2"])
    result = run(threaded_fake_broker, "sub", "jobs", "--group", "w", "-c", "2")
    assert result.exit_code == 0, result.output
    ids = [line.split()[2] for line in result.output.splitlines()]
    assert [f"ACK {i}" for i in ids] == [
        r for r in threaded_fake_broker.received if r.startswith("ACK")
    ]
    assert not threaded_fake_broker.pending


def test_sub_group_no_ack_leaves_messages_pending(threaded_fake_broker: FakeBroker) -> None:
    threaded_fake_broker.publish_when_subscribed("SUB jobs w", "jobs", ["j1"])
    result = run(threaded_fake_broker, "sub", "jobs", "-g", "w", "--no-ack", "-c", "1")
    assert result.exit_code == 0, result.output
    assert not any(r.startswith("ACK") for r in threaded_fake_broker.received)
    assert len(threaded_fake_broker.pending) == 1


def test_history_prints_server_lines(threaded_fake_broker: FakeBroker) -> None:
    run(threaded_fake_broker, "pub", "chat", stdin="a\nb b\nc\n")
    result = run(threaded_fake_broker, "history", "chat", "-n", "2")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split(" ", 5)[5] for line in lines] == ["b b", "c"]
    assert all(line.startswith("HISTORY chat msg_") for line in lines)


def test_groups_prints_a_table(threaded_fake_broker: FakeBroker) -> None:
    result = run(threaded_fake_broker, "groups", "jobs")
    assert result.exit_code == 0, result.output
    header, *rows = result.output.splitlines()
    assert header.split() == ["GROUP", "MEMBERS", "INFLIGHT", "WAITING", "LAG", "ACKED"]
    assert rows[0].split() == ["workers", "2", "1", "0", "3", "10"]
    assert rows[1].split() == ["audit", "1", "0", "0", "0", "13"]


def test_dlq_list_table_and_json(threaded_fake_broker: FakeBroker) -> None:
    table = run(threaded_fake_broker, "dlq", "list", "jobs", "-n", "5")
    assert table.exit_code == 0, table.output
    header, row = table.output.splitlines()
    assert header.split()[:5] == ["DLQ#", "ID", "GROUP", "ATTEMPTS", "REASON"]
    assert row.split()[:5] == ["1", "msg_1_dead0001", "workers", "5", "nacked"]
    assert " no " in row and row.endswith(DEAD_LETTER["msg"])  # piped: never cut
    assert "DLQ jobs 5" in threaded_fake_broker.received

    raw = run(threaded_fake_broker, "dlq", "list", "jobs", "--json")
    assert json.loads(raw.output)["reason"] == "nacked"


def test_dlq_replay(threaded_fake_broker: FakeBroker) -> None:
    assert run(threaded_fake_broker, "dlq", "replay", "jobs", "--all").output == "replayed 1\n"
    one = run(threaded_fake_broker, "dlq", "replay", "jobs", "--id", "msg_1_dead0001")
    assert one.output == "replayed 1\n"
    bad = run(
        threaded_fake_broker, "dlq", "replay", "jobs", "--id", "msg_1_dead0001", "--id", "nope"
    )
    assert bad.exit_code == 1
    assert bad.stdout == "replayed 1\n"
    assert bad.stderr.startswith("ERR message nope not found")
    only_bad = run(threaded_fake_broker, "dlq", "replay", "jobs", "--id", "nope")
    assert (only_bad.exit_code, only_bad.stdout) == (1, "")  # no "replayed 0" as if it worked
    assert only_bad.stderr == "ERR message nope not found in jobs.dlq\n"
    assert run(threaded_fake_broker, "dlq", "replay", "jobs").exit_code == 2


async def test_sub_exits_cleanly_on_ctrl_c(fake_broker: FakeBroker) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "linemq.clients.cli",
        "sub",
        "chat",
        "--port",
        str(fake_broker.port),
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    for _ in range(400):
        if "SUB chat" in fake_broker.received:
            break
        await asyncio.sleep(0.01)
    fake_broker._publish("chat", "hello")
    line = await asyncio.wait_for(proc.stdout.readline(), 5)  # type: ignore[union-attr]
    assert line.decode().endswith(" hello\n")
    proc.send_signal(signal.SIGINT)
    _, stderr = await asyncio.wait_for(proc.communicate(), 20)  # a bound, not a wait
    assert proc.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr
    assert fake_broker.received[-1] == "QUIT"
