"""On SIGTERM a client waiting for a reply gets it, or ``ERR server shutting down``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from linemq.broker.auth import hash_token
from tests.conftest import BrokerFactory, BrokerProcess
from tests.wire import Wire


async def test_a_reply_still_waiting_at_sigterm_becomes_the_shutdown_error(
    broker_process: Callable[..., BrokerProcess], tmp_path: Path
) -> None:
    users = tmp_path / "users.toml"
    users.write_text(f'[[users]]\nname = "u"\ntoken_sha256 = "{hash_token("right")}"\n')
    proc = broker_process("--auth-file", str(users))
    w = await Wire.open(proc.port)
    # Failed attempts are answered after 0.1, 0.2, 0.4, 0.8 s: the later ones are still
    # waiting when the broker is told to stop.
    await w.send("AUTH wrong\n" * 4)
    assert await w.line() == "ERR auth failed"
    await asyncio.to_thread(proc.terminate)
    rest = (await w.reader.read()).decode().splitlines()
    assert rest and rest[-1] == "ERR server shutting down", rest
    assert set(rest[:-1]) <= {"ERR auth failed"}


async def test_a_read_under_way_at_stop_is_answered_first(brokers: BrokerFactory) -> None:
    broker = await brokers.start()
    w = await Wire.open(broker.port)
    await w.send("".join(f"PUB log line-{i}\n" for i in range(2000)))
    assert await w.lines(2000) == ["OK published"] * 2000
    # The command arrives in the same loop iteration as the stop: its read from disk (in
    # a thread) is certainly under way when the broker starts stopping.
    (conn,) = broker.connections
    conn.data_received(b"HISTORY log 2000\n")
    assert broker.holding
    await brokers.stop(broker)
    lines = (await w.reader.read()).decode().splitlines()
    assert lines[-2:] == ["OK history end", "ERR server shutting down"]
    assert len(lines) == 2002
