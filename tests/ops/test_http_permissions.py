"""The HTTP side: every endpoint against a user with each single permission, dead letters as
their topic, failed tokens slowed down as on the port, and the Host check on every form of
request target."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from linemq.broker.server.app import Broker
from tests.conftest import BrokerFactory
from tests.ops.http import Http, dead_letter
from tests.server.users import ADMIN, TEAM, TOKENS, start

# (method, path, JSON body, permission it needs on orders or None)
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, str | None]] = [
    ("GET", "/healthz", None, None),
    ("GET", "/readyz", None, None),
    ("GET", "/", None, None),
    ("GET", "/api/stats", None, None),
    ("GET", "/metrics", None, None),
    ("GET", "/api/stats?topic=orders", None, "subscribe"),
    ("GET", "/api/stats?topic=orders.dlq", None, "subscribe"),
    ("GET", "/api/dlq?topic=orders", None, "subscribe"),
    ("POST", "/api/groups/pause", {"topic": "orders", "group": "workers"}, "manage"),
    ("POST", "/api/groups/resume", {"topic": "orders", "group": "workers"}, "manage"),
    ("POST", "/api/dlq/replay", {"topic": "orders", "all": True}, "manage"),
    ("POST", "/api/dlq/purge", {"topic": "orders"}, "manage"),
    ("POST", "/api/groups/delete", {"topic": "orders", "group": "workers"}, "manage"),
]


async def request(broker: Broker, token: str, method: str, path: str, body: Any) -> int:
    assert broker.http is not None
    headers = {"Authorization": f"Bearer {token}"}
    url = f"http://127.0.0.1:{broker.http.port}{path}"
    async with aiohttp.ClientSession(headers=headers) as s, s.request(method, url, json=body) as r:
        return r.status


async def with_a_dead_letter(brokers: BrokerFactory, tmp_path: Path) -> Broker:
    broker = await start(brokers, tmp_path, http_port=0)
    consumer = await dead_letter(broker, "orders", "workers", "card 4111", token=ADMIN)
    await consumer.close()
    return broker


@pytest.mark.parametrize("user", list(TOKENS))
async def test_every_endpoint_against_a_user_with_one_permission(
    brokers: BrokerFactory, tmp_path: Path, user: str
) -> None:
    broker = await with_a_dead_letter(brokers, tmp_path)
    for method, path, body, needs in ENDPOINTS:
        status = await request(broker, TOKENS[user], method, path, body)
        if needs is None or needs == user:
            assert status == 200, f"{user}: {method} {path} got {status}"
        else:
            assert status == 403, f"{user}: {method} {path} got {status}"


async def test_dead_letters_are_read_with_the_permission_on_their_topic(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    broker = await with_a_dead_letter(brokers, tmp_path)
    team = Http(broker, TEAM)  # orders.> matches the name orders.dlq, not the topic orders
    await team.get_json("/api/dlq?topic=orders", 403)
    await team.get_json("/api/stats?topic=orders.dlq", 403)
    assert set((await team.get_json("/api/stats"))["topics"]) == set()
    _, metrics = await team.get("/metrics")
    assert 'topic="orders.dlq"' not in metrics
    reader = Http(broker, TOKENS["subscribe"])
    (letter,) = (await reader.get_json("/api/dlq?topic=orders"))["letters"]
    assert letter["msg"] == "card 4111"
    assert set((await reader.get_json("/api/stats"))["topics"]) == {"orders", "orders.dlq"}


async def test_wrong_tokens_are_answered_after_a_doubling_delay(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    broker = await start(brokers, tmp_path, http_port=0)
    wrong = Http(broker, "a-guess")
    started = time.monotonic()
    for _ in range(3):
        assert (await wrong.get("/api/stats"))[0] == 401
    assert time.monotonic() - started >= 0.1 + 0.2 + 0.4 - 0.05
    # The right token is not slowed down, and it starts the address over.
    started = time.monotonic()
    assert (await Http(broker, ADMIN).get("/api/stats"))[0] == 200
    assert (await wrong.get("/api/stats"))[0] == 401
    assert time.monotonic() - started < 0.3
    # No token at all (a page not logged in yet) is not a guess.
    started = time.monotonic()
    for _ in range(3):
        assert (await Http(broker).get("/api/stats"))[0] == 401
    assert time.monotonic() - started < 0.3


async def raw_http(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return response


@pytest.mark.parametrize(
    ("target", "host", "status"),
    [
        (b"/api/stats", b"localhost", 200),
        (b"/api/stats", b"evil.example", 403),
        (b"http://localhost/api/stats", b"evil.example", 403),  # absolute form: both count
        (b"http://evil.example/api/stats", b"localhost", 403),
        (b"http://127.0.0.1/api/stats", b"127.0.0.1", 200),
        (b"/api/stats", b"127.0.0.1:9090@evil.example", 403),
        (b"/api/stats", b"[::1]:9090", 200),
    ],
)
async def test_the_host_check_covers_absolute_form_targets(
    brokers: BrokerFactory, target: bytes, host: bytes, status: int
) -> None:
    broker = await brokers.start(http_port=0)
    assert broker.http is not None
    response = await raw_http(
        broker.http.port,
        b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n",
    )
    assert response.startswith(f"HTTP/1.1 {status} ".encode()), response[:200]
