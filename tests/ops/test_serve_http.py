"""``linemq serve --http-port`` builds the HTTP side and hands it to the broker it runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from linemq.broker.config import Config
from linemq.broker.server.app import Broker
from tests.conftest import BrokerProcess
from tests.wire import Wire


async def test_serve_with_http_port_answers_probes_stats_and_metrics(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    proc = broker_process("--http-port", "0")
    (http,) = [e for e in proc.events() if e.get("event") == "http_listening"]
    client = await Wire.open(proc.port)
    assert await client.cmd("PUB jobs hello") == "OK published"
    base = f"http://127.0.0.1:{http['port']}"
    async with aiohttp.ClientSession() as session:
        async with session.get(base + "/readyz") as r:
            assert r.status == 200 and await r.text() == "ready\n"
        async with session.get(base + "/api/stats") as r:
            assert (await r.json())["topics"]["jobs"]["published"] == 1
        async with session.get(base + "/metrics") as r:
            assert "linemq_published_total 1.0" in await r.text()
        async with session.post(base + "/api/dlq/purge", json={"topic": "jobs"}) as r:
            assert (r.status, await r.json()) == (200, {"purged": 0})


async def test_serve_without_http_port_has_no_http_side(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    proc = broker_process()
    assert not [e for e in proc.events() if e.get("event") == "http_listening"]


def test_a_broker_asked_for_http_without_an_http_side_is_refused(tmp_path: Path) -> None:
    """``server`` cannot import ``ops``: whoever builds the broker must hand it over."""
    with pytest.raises(ValueError, match="no HTTP side"):
        Broker(Config(port=0, http_port=0, data_dir=tmp_path))
