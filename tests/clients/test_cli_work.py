"""``linemq work``: a shell command per message, run as a process against a real broker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from linemq.clients.cli_work import failure_reason
from linemq.clients.sync import SyncClient
from tests.conftest import BrokerFactory, BrokerProcess

SCRIPT = """\
payload=$(cat)
echo "$LINEMQ_TOPIC $LINEMQ_GROUP $LINEMQ_ATTEMPT $LINEMQ_HEADER_TRACE_ID $payload" >> "$OUT"
case "$payload" in
  fail*) echo "connecting to db..." >&2; echo "db refused the connection" >&2; exit 3;;
  poison*) echo "not a resize job" >&2; exit 100;;
esac
"""


def test_a_failure_reason_is_the_status_and_the_end_of_stderr() -> None:
    assert failure_reason(3, b"line one\nline two\n") == "exit status 3: line one line two"
    assert failure_reason(1, b"") == "exit status 1"
    assert failure_reason(-9, b"") == "killed by signal SIGKILL"


class WorkProcess:
    def __init__(self, port: int, out: Path, *args: str) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "linemq",
                "work",
                *args[:-1],
                "--port",
                str(port),
                "--",
                args[-1],
            ],
            env={**os.environ, "OUT": str(out)},
            stderr=subprocess.PIPE,
            text=True,
            cwd=out.parent,
        )

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines() if self.out.exists() else []

    def wait_for(self, n: int, timeout: float = 10) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.lines()) < n:
            assert self.proc.poll() is None, self.proc.communicate()[1]
            assert time.monotonic() < deadline, self.lines()
            time.sleep(0.02)
        return self.lines()

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=10)
        return self.proc.returncode, err


@pytest.fixture
def started() -> Iterator[list[WorkProcess]]:
    procs: list[WorkProcess] = []
    yield procs
    for p in procs:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


async def test_exit_status_acks_nacks_or_dead_letters_with_the_stderr_tail(
    brokers: BrokerFactory, tmp_path: Path, started: list[WorkProcess]
) -> None:
    broker = await brokers.start(max_retries=0, ack_timeout=10)
    (tmp_path / "job.sh").write_text(SCRIPT)
    args = ("jobs", "--group", "resizers", "-c", "3", "--term-exit", "100", "sh job.sh")
    w = WorkProcess(broker.port, tmp_path / "out.txt", *args)
    started.append(w)

    def scenario() -> tuple[list[str], int, str, dict[str, tuple[str, str | None]], int]:
        with SyncClient(port=broker.port) as c:
            while not c.groups("jobs"):
                time.sleep(0.02)
            c.put("jobs", "resize 7.png", headers={"trace-id": "t1"})
            c.publish("jobs", "fail me")
            c.publish("jobs", "poison")
            lines = w.wait_for(3)
            while len(c.dlq("jobs")) < 2:
                time.sleep(0.02)
            status, err = w.stop()
            letters = {d.text: (d.reason, d.error) for d in c.dlq("jobs")}
            return sorted(lines), status, err, letters, c.groups("jobs")[0].acked

    lines, status, err, letters, acked = await asyncio.to_thread(scenario)
    assert lines == [
        "jobs resizers 1  fail me",
        "jobs resizers 1  poison",
        "jobs resizers 1 t1 resize 7.png",
    ]
    assert status == 0, err
    assert letters == {
        "fail me": ("nacked", "exit status 3: connecting to db... db refused the connection"),
        "poison": ("terminated", "exit status 100: not a resize job"),
    }
    assert acked == 1
    assert "db refused the connection" in err, "the command's stderr passes through"
    assert "stopped: 1 acked, 1 nacked, 1 terminated, 0 lost" in err


async def test_sigterm_lets_a_running_command_finish_and_be_acked(
    brokers: BrokerFactory, tmp_path: Path, started: list[WorkProcess]
) -> None:
    broker = await brokers.start(ack_timeout=10)
    command = 'cat >/dev/null; echo started >> "$OUT"; sleep 0.4; echo finished >> "$OUT"'
    w = WorkProcess(broker.port, tmp_path / "out.txt", "jobs", "-g", "w", "--grace", "5s", command)
    started.append(w)

    def scenario() -> tuple[int, str, list[str], tuple[int, int]]:
        with SyncClient(port=broker.port) as c:
            while not c.groups("jobs"):
                time.sleep(0.02)
            c.publish_many("jobs", ["one", "two"])
            w.wait_for(1)
            status, err = w.stop(signal.SIGINT)  # Ctrl-C: the command is not killed by it
            [info] = c.groups("jobs")
            return status, err, w.lines(), (info.acked, info.inflight)

    status, err, lines, (acked, inflight) = await asyncio.to_thread(scenario)
    assert status == 0, err
    assert lines == ["started", "finished"], "the second message was never started"
    assert (acked, inflight) == (1, 0)
    assert "waiting up to 5 s for 1 running" in err


async def test_a_command_past_its_timeout_is_killed_and_nacked(
    brokers: BrokerFactory, tmp_path: Path, started: list[WorkProcess]
) -> None:
    broker = await brokers.start(max_retries=0, ack_timeout=10)
    command = 'echo started >> "$OUT"; sleep 30 & wait'
    w = WorkProcess(
        broker.port, tmp_path / "out.txt", "jobs", "-g", "w", "--timeout", "0.2", command
    )
    started.append(w)

    def scenario() -> list[tuple[str, str | None]]:
        with SyncClient(port=broker.port) as c:
            while not c.groups("jobs"):
                time.sleep(0.02)
            c.publish("jobs", "stuck")
            w.wait_for(1)
            while not c.dlq("jobs"):
                time.sleep(0.02)
            w.stop()
            return [(d.reason, d.error) for d in c.dlq("jobs")]

    started_at = time.monotonic()
    letters = await asyncio.to_thread(scenario)
    assert letters == [("nacked", "HandlerTimeout: handler timed out after 0.2 s")]
    assert time.monotonic() - started_at < 8, "the sleep was killed with its shell"


async def test_a_broker_sigterm_waits_for_the_running_command_and_work_carries_on(
    broker_process: Callable[..., BrokerProcess], tmp_path: Path, started: list[WorkProcess]
) -> None:
    broker = broker_process("--shutdown-grace", "5s", "--ack-timeout", "30")
    command = (
        'read -r p; echo "start $p $LINEMQ_ATTEMPT" >> "$OUT"; sleep 0.4; echo "end $p" >> "$OUT"'
    )
    w = WorkProcess(broker.port, tmp_path / "out.txt", "jobs", "-g", "w", command)
    started.append(w)

    def scenario() -> list[str]:
        nonlocal broker
        with SyncClient(port=broker.port) as c:
            while not c.groups("jobs"):
                time.sleep(0.02)
            c.publish("jobs", "first")
        w.wait_for(1)
        assert broker.terminate() == 0  # waits in its grace for the command's ack
        broker = broker_process("--port", str(broker.port), data_dir=broker.data_dir)
        with SyncClient(port=broker.port) as c:
            c.publish("jobs", "second")
            lines = w.wait_for(4)
            # The command's last line is written before the worker's ACK reaches the broker.
            deadline = time.monotonic() + 5
            [info] = c.groups("jobs")
            while info.acked < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
                [info] = c.groups("jobs")
            assert (info.acked, info.inflight) == (2, 0)
        return lines

    lines = await asyncio.to_thread(scenario)
    assert lines == ["start first 1", "end first", "start second 1", "end second"]
