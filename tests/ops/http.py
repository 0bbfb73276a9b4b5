"""An HTTP client for the ops endpoints of an in-process broker, and a dead-letter maker."""

from __future__ import annotations

from typing import Any

import aiohttp

from linemq.broker.server.app import Broker
from tests.conftest import eventually
from tests.server.groupwire import next_msg
from tests.wire import Wire


class Http:
    def __init__(self, broker: Broker, token: str | None = None) -> None:
        assert broker.http is not None
        self.base = f"http://127.0.0.1:{broker.http.port}"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def get(self, path: str) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession(headers=self.headers) as s,
            s.get(self.base + path) as r,
        ):
            return r.status, await r.text()

    async def get_json(self, path: str, status: int = 200) -> Any:
        async with aiohttp.ClientSession(headers=self.headers) as s, s.get(self.base + path) as r:
            assert r.status == status, await r.text()
            return await r.json()

    async def post(self, path: str, body: Any, status: int = 200) -> Any:
        async with (
            aiohttp.ClientSession(headers=self.headers) as s,
            s.post(self.base + path, json=body) as r,
        ):
            assert r.status == status, await r.text()
            return await r.json()


async def dead_letter(
    broker: Broker, topic: str, group: str, text: str, token: str | None = None
) -> Wire:
    """Publish ``text`` to a member that never acks until it is dead-lettered.

    Needs a broker with a short ack timeout and ``max_retries=0``. Returns the
    member's connection, still in the group and free to take the next delivery.
    """
    dlq = topic + ".dlq"
    before = broker.engine.published.get(dlq, 0)
    consumer = await wire(broker, token)
    assert await consumer.cmd(f"SUB {topic} {group}") == f"OK subscribed {topic} in group {group}"
    publisher = await wire(broker, token)
    assert await publisher.cmd(f"PUB {topic} {text}") == "OK published"
    await publisher.close()
    assert (await next_msg(consumer)).text == text
    published = broker.engine.published
    await eventually(lambda: published.get(dlq, 0) > before)  # written, not just queued
    return consumer


async def wire(broker: Broker, token: str | None = None) -> Wire:
    """A raw connection, authenticated when ``token`` is given."""
    w = await Wire.open(broker.port)
    if token is not None:
        assert await w.cmd(f"AUTH {token}") == "OK authenticated"
    return w
