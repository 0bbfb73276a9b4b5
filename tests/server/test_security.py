"""Authentication with per-topic permissions, and TLS (certificates made on the fly)."""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path

import pytest
import trustme

from linemq.broker.auth import hash_token
from linemq.broker.protocol.names import topic_matches
from linemq.clients import BrokerError, Client
from tests.conftest import BrokerFactory
from tests.wire import Wire

ORDERS_TOKEN = "orders-secret-token"
ADMIN_TOKEN = "admin-secret-token"


def auth_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.toml"
    path.write_text(
        f"""
[[users]]
name = "orders"
token_sha256 = "{hash_token(ORDERS_TOKEN)}"
publish = ["orders", "orders.*"]
subscribe = ["orders.>"]

[[users]]
name = "admin"
token_sha256 = "{hash_token(ADMIN_TOKEN)}"
publish = [">"]
subscribe = [">"]
"""
    )
    return path


@pytest.mark.parametrize(
    ("pattern", "topic", "match"),
    [
        ("orders", "orders", True),
        ("orders.*", "orders.eu", True),
        ("orders.*", "orders", False),
        ("orders.*", "orders.eu.x", False),
        ("orders.>", "orders.eu.x", True),
        ("orders.>", "orders", False),
        (">", "anything.at.all", True),
        ("*.dlq", "orders.dlq", True),
    ],
)
def test_topic_patterns(pattern: str, topic: str, match: bool) -> None:
    assert topic_matches(pattern, topic) is match


async def test_everything_but_ping_auth_quit_needs_auth(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    broker = await brokers.start(auth_file=auth_file(tmp_path))
    w = await Wire.open(broker.port)
    assert await w.cmd("PING") == "OK pong"
    for line in ("PUB orders x", "SUB orders", "HISTORY orders 1", "GROUPS orders", "ACK x"):
        assert await w.cmd(line) == "ERR auth required"
    assert await w.cmd(f"AUTH {ORDERS_TOKEN}") == "OK authenticated"
    assert await w.cmd("PUB orders x") == "OK published"
    assert await w.cmd("QUIT") == "OK bye"


async def test_permissions_follow_the_users_patterns(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    broker = await brokers.start(auth_file=auth_file(tmp_path))
    w = await Wire.open(broker.port)
    assert await w.cmd(f"AUTH {ORDERS_TOKEN}") == "OK authenticated"
    assert await w.cmd("PUB orders.eu x") == "OK published"
    assert await w.cmd("PUB payments x") == "ERR permission denied"
    assert await w.cmd("SUB orders.eu") == "OK subscribed orders.eu"
    assert await w.cmd("SUB payments") == "ERR permission denied"
    assert await w.cmd("SUB orders.eu workers") == "OK subscribed orders.eu in group workers"
    assert await w.cmd("HISTORY payments 5") == "ERR permission denied"
    assert await w.cmd("REPLAY payments ALL") == "ERR permission denied"
    assert broker.store.get("payments") is None


async def test_failed_auth_is_slowed_down(brokers: BrokerFactory, tmp_path: Path) -> None:
    broker = await brokers.start(auth_file=auth_file(tmp_path))
    w = await Wire.open(broker.port)
    started = time.monotonic()
    for _ in range(3):
        assert await w.cmd("AUTH wrong") == "ERR auth failed"
    assert time.monotonic() - started >= 0.1 + 0.2 + 0.4 - 0.05
    assert await w.cmd(f"AUTH {ADMIN_TOKEN}") == "OK authenticated"


async def test_unauthenticated_connections_time_out(brokers: BrokerFactory, tmp_path: Path) -> None:
    broker = await brokers.start(auth_file=auth_file(tmp_path), auth_timeout=0.2)
    idle = await Wire.open(broker.port)
    authed = await Wire.open(broker.port)
    assert await authed.cmd(f"AUTH {ADMIN_TOKEN}") == "OK authenticated"
    assert await idle.line(timeout=2) == "ERR auth timeout"
    assert await idle.raw_line() == b""
    await asyncio.sleep(0.3)
    assert await authed.cmd("PING") == "OK pong"


async def test_without_auth_file_nothing_changes(broker: object) -> None:
    w = await Wire.open(broker.port)  # type: ignore[attr-defined]
    assert await w.cmd("PUB any x") == "OK published"
    assert await w.cmd("AUTH whatever") == "OK authenticated"


async def test_client_library_sends_its_token(brokers: BrokerFactory, tmp_path: Path) -> None:
    broker = await brokers.start(auth_file=auth_file(tmp_path))
    async with Client("127.0.0.1", broker.port, token=ORDERS_TOKEN) as c:
        await c.publish("orders", "via client")
        with pytest.raises(BrokerError, match="permission denied"):
            await c.publish("payments", "nope")
    with pytest.raises(BrokerError, match="auth failed"):
        async with Client("127.0.0.1", broker.port, token="bad"):
            pass


def test_auth_file_refuses_plain_tokens(tmp_path: Path) -> None:
    from linemq.broker.auth import AuthError, load_users

    path = tmp_path / "bad.toml"
    path.write_text('[[users]]\nname = "x"\ntoken = "plain"\ntoken_sha256 = "' + "0" * 64 + '"\n')
    with pytest.raises(AuthError, match="never the token itself"):
        load_users(path)


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


async def test_tls_and_mutual_tls(brokers: BrokerFactory, tmp_path: Path, ca: trustme.CA) -> None:
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    cert = tmp_path / "server.pem"
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(cert))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    broker = await brokers.start(tls_cert=cert, tls_key=cert, tls_client_ca=ca_file)

    client_ctx = ssl.create_default_context(cafile=str(ca_file))
    client_cert = ca.issue_cert("client@example")
    client_pem = tmp_path / "client.pem"
    client_cert.private_key_and_cert_chain_pem.write_to_path(str(client_pem))
    client_ctx.load_cert_chain(str(client_pem))
    async with Client("127.0.0.1", broker.port, ssl=client_ctx) as c:
        await c.publish("secure", "over tls")
        assert [m.text for m in await c.history("secure", 1)] == ["over tls"]

    # Without a client certificate the handshake is refused.
    no_cert = ssl.create_default_context(cafile=str(ca_file))
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        async with Client("127.0.0.1", broker.port, ssl=no_cert) as c:
            await c.ping()
    # Plain TCP to a TLS port gets no banner.
    with pytest.raises((ConnectionError, OSError, asyncio.TimeoutError)):
        async with Client("127.0.0.1", broker.port, timeout=1):
            pass


async def test_cli_takes_a_token_from_the_environment(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    import os
    import sys

    broker = await brokers.start(auth_file=auth_file(tmp_path))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from broker.cli import main; main()",
        "pub",
        "orders",
        "from the cli",
        "--port",
        str(broker.port),
        env={**os.environ, "LINEMQ_TOKEN": ORDERS_TOKEN},
    )
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from broker.cli import main; main()",
        "pub",
        "orders",
        "no token",
        "--port",
        str(broker.port),
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1 and b"auth required" in err


async def test_broker_warns_loudly_without_auth_on_a_public_address(
    broker_process: object,
) -> None:
    proc = broker_process("--host", "0.0.0.0")  # type: ignore[operator]
    assert any("AUTHENTICATION IS OFF" in e.get("event", "") for e in proc.events())


async def test_wildcard_subscriptions_must_stay_inside_the_users_patterns(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    broker = await brokers.start(auth_file=auth_file(tmp_path))
    w = await Wire.open(broker.port)
    assert await w.cmd(f"AUTH {ORDERS_TOKEN}") == "OK authenticated"
    assert await w.cmd("SUB orders.eu.*") == "OK subscribed orders.eu.*"
    assert await w.cmd("SUB orders.>") == "OK subscribed orders.>"
    assert await w.cmd("SUB *.eu") == "ERR permission denied"
    assert await w.cmd("SUB >") == "ERR permission denied"
