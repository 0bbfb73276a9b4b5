"""``linemq work TOPIC --group G -- COMMAND``: a shell command per message, as a worker.

The message's payload goes to the command's stdin, and what it is shows in the
environment (``LINEMQ_TOPIC``, ``LINEMQ_MESSAGE_ID``, ``LINEMQ_ATTEMPT``…). Exit 0
acks the message; another status nacks it with the end of the command's stderr as
the reason (``--term-exit`` statuses dead-letter it now). Stdout and stderr pass
through. Commands run in a session of their own, so the Ctrl-C meant for the
worker does not kill them: the worker drains (``Worker``) and a command cut short
gets SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shlex
import signal
import sys
import time
from collections.abc import Mapping
from typing import Final

import click

from linemq.clients.backoff import ExponentialBackoff
from linemq.clients.cli_common import Endpoint, connection_options, run
from linemq.clients.options import to_seconds
from linemq.clients.subscription import Message
from linemq.clients.worker import DEFAULT_GRACE, RetryLater, Terminate, Worker

STDERR_TAIL: Final = 800
"""Bytes of a failed command's stderr kept as the NACK reason (the broker keeps 1,000)."""
KILL_AFTER: Final = 2.0
"""Seconds a command cut short has between SIGTERM and SIGKILL."""
_NOT_ENV: Final = re.compile(r"[^A-Z0-9_]")


def message_env(m: Message, group: str) -> dict[str, str]:
    """What a command learns of its message besides the payload on stdin."""
    env = {
        "LINEMQ_TOPIC": m.topic,
        "LINEMQ_GROUP": group,
        "LINEMQ_MESSAGE_ID": m.id,
        "LINEMQ_OFFSET": str(m.offset),
        "LINEMQ_TS": repr(m.ts),
        "LINEMQ_ATTEMPT": "" if m.attempt is None else str(m.attempt),
        "LINEMQ_KEY": m.key or "",
        "LINEMQ_PRIORITY": m.priority or "",
    }
    for name, value in m.headers.items():
        env["LINEMQ_HEADER_" + _NOT_ENV.sub("_", name.upper())] = value
    return env


def failure_reason(status: int, stderr_tail: bytes) -> str:
    """``exit status 3: <the end of stderr>``, or ``killed by signal SIGKILL``."""
    if status < 0:
        try:
            said = f"killed by signal {signal.Signals(-status).name}"
        except ValueError:
            said = f"killed by signal {-status}"
    else:
        said = f"exit status {status}"
    text = " ".join(stderr_tail.decode(errors="replace").split())
    return f"{said}: {text}" if text else said


class CommandRunner:
    """The worker's handler: one run of the command per message."""

    def __init__(
        self,
        script: str,
        group: str,
        term_exit: frozenset[int],
        backoff: ExponentialBackoff | None,
        verbose: bool,
        env: Mapping[str, str],
    ) -> None:
        self.script = script
        self.group = group
        self.term_exit = term_exit
        self.backoff = backoff
        self.verbose = verbose
        self.env = env

    async def __call__(self, m: Message) -> None:
        started = time.monotonic()
        proc = await asyncio.create_subprocess_shell(
            self.script,
            stdin=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**self.env, **message_env(m, self.group)},
            start_new_session=True,  # a Ctrl-C for the worker is not for them
        )
        try:
            feed = asyncio.create_task(_feed(proc, m.payload))
            assert proc.stderr is not None
            tail = await _pass_through(proc.stderr)
            status = await proc.wait()
            await feed
        except asyncio.CancelledError:  # a timeout, or the worker's grace is over
            await _end(proc)
            raise
        seconds = time.monotonic() - started
        if status == 0:
            if self.verbose:
                click.echo(f"linemq work: done {m.id} in {seconds:.3f} s", err=True)
            return
        reason = failure_reason(status, tail)
        if status in self.term_exit:
            raise Terminate(reason)
        delay = None if self.backoff is None else self.backoff.compute(m.attempt or 1)
        raise RetryLater(delay, reason)


async def _feed(proc: asyncio.subprocess.Process, payload: bytes) -> None:
    stdin = proc.stdin
    assert stdin is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # it read no stdin
        stdin.write(payload)
        await stdin.drain()
        stdin.close()


async def _pass_through(stream: asyncio.StreamReader) -> bytes:
    """Copy the command's stderr to ours; keep its last ``STDERR_TAIL`` bytes."""
    tail = b""
    while chunk := await stream.read(65536):
        sys.stderr.buffer.write(chunk)
        sys.stderr.buffer.flush()
        tail = (tail + chunk)[-STDERR_TAIL:]
    return tail


async def _end(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM to the command's process group, SIGKILL after ``KILL_AFTER``."""
    for sig, wait in ((signal.SIGTERM, KILL_AFTER), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), wait)
            return
        except TimeoutError:
            continue


@click.command()
@click.argument("topic")
@click.argument("command", nargs=-1, required=True)
@click.option("-g", "--group", required=True, help="The consumer group to work for.")
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Commands running at once (the broker's --max-inflight bounds one connection).",
)
@click.option("--timeout", metavar="DURATION", help="Kill a command running longer; nack it.")
@click.option(
    "--grace",
    metavar="DURATION",
    default=f"{DEFAULT_GRACE:g}s",
    show_default=True,
    help="On SIGTERM or Ctrl-C, how long running commands get to finish.",
)
@click.option(
    "--term-exit",
    type=click.IntRange(1, 255),
    multiple=True,
    metavar="STATUS",
    help="An exit status that dead-letters the message now (TERM); repeatable.",
)
@click.option(
    "--retry-backoff-base",
    metavar="DURATION",
    help="Nack a failure with this delay, doubled each attempt (default: the broker's policy).",
)
@click.option(
    "--retry-backoff-max",
    metavar="DURATION",
    default="5m",
    show_default=True,
    help="The longest of those delays.",
)
@click.option(
    "--start", metavar="POSITION", help="Where a group this creates starts (earliest, latest...)."
)
@click.option("-v", "--verbose", is_flag=True, help="Also say each command that succeeded.")
@connection_options
def work(
    topic: str,
    command: tuple[str, ...],
    group: str,
    concurrency: int,
    timeout: str | None,
    grace: str,
    term_exit: tuple[int, ...],
    retry_backoff_base: str | None,
    retry_backoff_max: str,
    start: str | None,
    verbose: bool,
    endpoint: Endpoint,
) -> None:
    """Run COMMAND for each message of TOPIC's consumer group GROUP.

    The payload is on the command's stdin; LINEMQ_TOPIC, LINEMQ_GROUP,
    LINEMQ_MESSAGE_ID, LINEMQ_OFFSET, LINEMQ_TS, LINEMQ_ATTEMPT, LINEMQ_KEY,
    LINEMQ_PRIORITY and LINEMQ_HEADER_<NAME> say the rest. Exit status 0 acks the
    message; any other nacks it (retried, then dead-lettered) with the end of the
    command's stderr as the reason. COMMAND runs in /bin/sh: give one argument for
    shell syntax (-- 'gunzip | ./load.sh'), or several to run a program as is.

    SIGTERM or Ctrl-C: start nothing new, let running commands finish for up to
    --grace (a second signal cuts it short), then exit 0.

        linemq work images --group resizers -c 4 --timeout 5m -- ./resize.sh
    """
    script = command[0] if len(command) == 1 else shlex.join(command)
    try:
        backoff = None
        if retry_backoff_base is not None:
            base, cap = to_seconds(retry_backoff_base), to_seconds(retry_backoff_max)
            backoff = ExponentialBackoff(base, max(base, cap), jitter=False)
        grace_s = to_seconds(grace)
        timeout_s = None if timeout is None else to_seconds(timeout)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    said = logging.StreamHandler()
    said.setFormatter(logging.Formatter("linemq work: %(message)s"))
    worker_log = logging.getLogger("linemq.worker")
    worker_log.addHandler(said)
    worker_log.setLevel(logging.INFO)
    worker_log.propagate = False
    runner = CommandRunner(script, group, frozenset(term_exit), backoff, verbose, os.environ)

    async def main() -> None:
        async with endpoint.client() as c:
            worker = Worker(
                c,
                topic,
                group,
                runner,
                concurrency=concurrency,
                timeout=timeout_s,
                grace=grace_s,
                start=start,
            )
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, worker.stop)
            await worker.run()
            s = worker.stats
            click.echo(
                f"linemq work: stopped: {s.acked} acked, {s.nacked} nacked, "
                f"{s.terminated} terminated, {s.lost} lost",
                err=True,
            )

    run(main(), endpoint)
