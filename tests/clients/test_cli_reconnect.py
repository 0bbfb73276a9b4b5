"""``linemq sub`` and ``linemq stats --watch`` keep going across a broker restart."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable

from linemq.clients import Client
from tests.conftest import BrokerProcess


async def cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from linemq.broker.cli import main; main()",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def line_of(proc: asyncio.subprocess.Process, timeout: float = 15) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), timeout)).decode().rstrip("\n")


async def restart(
    broker_process: Callable[..., BrokerProcess], old: BrokerProcess
) -> BrokerProcess:
    await asyncio.to_thread(old.terminate)
    return await asyncio.to_thread(broker_process, "--port", str(old.port), data_dir=old.data_dir)


async def publish(port: int, *texts: str) -> None:
    async with Client(port=port, reconnect=None) as c:
        for text in texts:
            await c.publish("news", text)


async def test_sub_prints_messages_published_after_a_restart(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    proc = broker_process()
    await publish(proc.port, "seed")  # the topic exists, so STATS can show the subscriber
    sub = await cli("sub", "news", "--port", str(proc.port), "--count", "2")
    async with Client(port=proc.port, reconnect=None) as c:
        while not any(s.fields.get("subscribers") for s in await c.stats("news")):
            await asyncio.sleep(0.02)
    await publish(proc.port, "before")
    assert (await line_of(sub)).endswith(" before")
    proc = await restart(broker_process, proc)
    await publish(proc.port, "after")
    assert (await line_of(sub)).endswith(" after")
    assert await asyncio.wait_for(sub.wait(), 10) == 0


async def test_stats_watch_keeps_printing_across_a_restart(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    proc = broker_process()
    watch = await cli("stats", "--watch", "0.1", "--json", "--port", str(proc.port))
    first = json.loads(await line_of(watch))
    assert "broker" in first
    proc = await restart(broker_process, proc)
    await publish(proc.port, "after")
    for _ in range(200):
        snap = json.loads(await line_of(watch))
        if snap.get("broker", {}).get("published") == 1:
            break
    else:
        raise AssertionError("stats --watch never showed the restarted broker")
    watch.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(watch.wait(), 10) == 0
