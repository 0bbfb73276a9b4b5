"""What one client can make the broker hold: unauthenticated connections, streamed replies."""

from __future__ import annotations

from pathlib import Path

from broker.server.app import Broker
from broker.server.auth import hash_token
from tests.conftest import BrokerFactory, eventually
from tests.wire import Wire

TOKEN = "bounds-secret-token"


def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.toml"
    path.write_text(
        f"""
[[users]]
name = "app"
token_sha256 = "{hash_token(TOKEN)}"
publish = [">"]
subscribe = [">"]
"""
    )
    return path


async def test_unauthenticated_connections_beyond_the_limit_are_refused(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    broker = await brokers.start(auth_file=users_file(tmp_path), max_unauthenticated=3)
    waiting = [await Wire.open(broker.port) for _ in range(3)]
    refused = await Wire.open(broker.port, banner=False)
    assert await refused.line() == "ERR too many unauthenticated connections"
    assert await refused.closed()
    assert await waiting[0].cmd(f"AUTH {TOKEN}") == "OK authenticated"
    admitted = await Wire.open(broker.port)  # an authenticated one no longer counts
    assert await admitted.cmd("PING") == "OK pong"
    await waiting[1].close()
    await eventually(lambda: len(broker.unauthenticated) == 2)
    again = await Wire.open(broker.port)
    assert await again.cmd(f"AUTH {TOKEN}") == "OK authenticated"
    assert await waiting[0].cmd("PUB t still-here") == "OK published"


async def test_before_auth_lines_are_short(brokers: BrokerFactory, tmp_path: Path) -> None:
    broker = await brokers.start(auth_file=users_file(tmp_path))
    w = await Wire.open(broker.port)
    await w.send(b"PUB t " + b"x" * 5000 + b"\n")
    assert await w.line() == "ERR line too long"
    await w.send(b"AUTH " + b"y" * 20_000)  # never finished: dropped, not buffered
    assert await w.line() == "ERR line too long"
    await w.send(b"\nPING\n")
    assert await w.line() == "OK pong"
    big = "z" * 100_000
    await w.send(f"AUTH {TOKEN}\nPUB t {big}\n")
    assert await w.lines(2) == ["OK authenticated", "OK published"]
    await w.send("HISTORY t 1\n")
    history = await w.until("OK history end")
    assert len(history) == 2 and history[0].endswith(big)


async def test_without_auth_file_no_unauthenticated_limit_applies(brokers: BrokerFactory) -> None:
    broker: Broker = await brokers.start(max_unauthenticated=1)
    conns = [await Wire.open(broker.port) for _ in range(5)]
    big = "z" * 100_000
    assert await conns[-1].cmd(f"PUB t {big}") == "OK published"
    assert not broker.unauthenticated
