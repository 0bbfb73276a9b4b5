"""The dashboard's charts in a real headless Chromium: message rates and group lag over time.

``LINEMQ_DASHBOARD_SCREENSHOT=docs/dashboard.png pytest tests/ops/test_dashboard_charts.py``
also runs the README picture's scene (about 20 s of varied traffic) and saves it there.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from linemq.broker.server.app import Broker
from tests.conftest import BrokerFactory
from tests.ops.browser import needs_chromium, wait_for
from tests.ops.http import wire
from tests.ops.test_dashboard_browser import scene
from tests.server.groupwire import member, next_msg
from tests.wire import Wire

pytestmark = needs_chromium

SCREENSHOT = os.environ.get("LINEMQ_DASHBOARD_SCREENSHOT")


def legend(driver: WebDriver, chart: str) -> list[str]:
    """The legend's entries, read in one go: each poll redraws the chart."""
    texts: list[str] = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map((e) => e.textContent)",
        f"#{chart} .legend li",
    )
    return texts


def lines(driver: WebDriver, chart: str) -> dict[str, list[tuple[float, float]]]:
    """Each drawn line's points (SVG coordinates: y grows downwards), by series name."""
    paths: list[list[str]] = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])]"
        ".map((p) => [p.dataset.series, p.getAttribute('d')])",
        f"#{chart} path.line",
    )
    out = {}
    for name, d in paths:
        pairs = [p.split(",") for p in d[1:].replace("M", "L").split("L")]
        out[name] = [(float(x), float(y)) for x, y in pairs]
    return out


async def test_charts_show_message_rates_and_group_lag(
    brokers: BrokerFactory, browser: WebDriver
) -> None:
    broker = await brokers.start(
        http_port=0, sample_interval=0.05, max_inflight=1, ack_timeout=30.0
    )
    consumer = await member(broker.port, "orders", "billing")
    publisher = await wire(broker)
    assert broker.http is not None
    await asyncio.to_thread(browser.get, f"http://127.0.0.1:{broker.http.port}/")
    await wait_for(browser, lambda d: d.find_element(By.ID, "window").text == "9 s")

    for i in range(10):
        assert await publisher.cmd(f"PUB orders order {i}") == "OK published"
    delivery = await next_msg(consumer)
    assert await consumer.cmd(f"ACK {delivery.id}") == "OK ack_received"

    # 10 published, one acked: 9 the group has not finished.
    await wait_for(browser, lambda d: "orders / billing 9" in legend(d, "lag-chart"))
    await wait_for(browser, lambda d: len(lines(d, "rates-chart").get("published", [])) >= 3)
    names = [text.split(" ")[0] for text in legend(browser, "rates-chart")]
    assert names == ["published", "delivered", "acked", "dead-lettered"]
    assert len(lines(browser, "lag-chart")["orders\nbilling"]) >= 3
    axis = browser.execute_script(
        "return [...document.querySelectorAll('#rates-chart text.axis')].map((e) => e.textContent)"
    )
    assert "now" in axis and "-9 s" in axis
    # The burst lifted the published line off the zero line (y = 176) at some sample.
    assert min(y for _, y in lines(browser, "rates-chart")["published"]) < 100


async def test_charts_wait_for_samples_with_a_slow_interval(
    brokers: BrokerFactory, browser: WebDriver
) -> None:
    broker = await brokers.start(http_port=0, sample_interval=60.0)
    assert broker.http is not None
    await asyncio.to_thread(browser.get, f"http://127.0.0.1:{broker.http.port}/")
    await wait_for(browser, lambda d: d.find_element(By.ID, "window").text == "3 h")
    text = browser.find_element(By.CSS_SELECTOR, "#rates-chart svg").text
    assert "collecting samples (one every 1 min)" in text
    assert "no consumer groups" in browser.find_element(By.CSS_SELECTOR, "#lag-chart svg").text


# -- the README's picture -----------------------------------------------------------


async def consume(w: Wire, verb: str, pause: float = 0.0) -> None:
    """ACK or NACK every delivery, ``pause`` seconds apart; replies are read and ignored."""
    while True:
        line = await w.line(timeout=60)
        if line.startswith("MSG "):
            await w.send(f"{verb} {line.split(' ')[2]}\n")
            if pause:
                await asyncio.sleep(pause)


@contextlib.asynccontextmanager
async def traffic(broker: Broker) -> AsyncIterator[None]:
    """Orders at a rate that swings, shipping keeping up, a ledger falling behind, fraud
    checks failing into the DLQ, and a trickle of mail to a paused group."""
    workers = [
        consume(await member(broker.port, "orders", "shipping"), "ACK"),
        consume(await member(broker.port, "payments", "ledger"), "ACK", 0.02),
        consume(await member(broker.port, "payments", "fraud-check"), "NACK", 0.1),
    ]
    publisher = await wire(broker)

    async def publish() -> None:
        tick = 0
        while True:
            n = int(8 + 6 * math.sin(tick / 120))
            lines = [f"PUB orders order {tick}-{i}\n" for i in range(n)]
            lines += [f"PUB payments payment {tick}-{i}\n" for i in range(n // 4)]
            lines += [f"PUB emails mail {tick}\n"] if tick % 25 == 0 else []
            await publisher.send("".join(lines))
            await publisher.lines(len(lines))
            tick += 1
            await asyncio.sleep(0.02)

    tasks = [asyncio.create_task(c) for c in [*workers, publish()]]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.skipif(not SCREENSHOT, reason="set LINEMQ_DASHBOARD_SCREENSHOT to a .png path")
async def test_screenshot_of_a_busy_dashboard(brokers: BrokerFactory, browser: WebDriver) -> None:
    broker = await brokers.start(
        http_port=0, sample_interval=0.1, ack_timeout=0.5, max_retries=0, heartbeat_timeout=60.0
    )
    await scene(broker)
    ops = await wire(broker)
    for job in (
        'orders nightly-report 6 cron="0 2 * * *" tz="Europe/Paris"',
        "emails digest 6 every=5s key=digest",
    ):
        await ops.send(f"SCHEDULE {job}\nreport\n")
        assert (await ops.line()).startswith("OK scheduled")
    async with traffic(broker):
        assert await ops.cmd("POLICY payments ledger rate=40/1s backoff=fixed:2s") == (
            "OK policy set payments ledger"
        )
        assert broker.http is not None
        await asyncio.to_thread(browser.get, f"http://127.0.0.1:{broker.http.port}/")
        await asyncio.sleep(0.1 * 180 + 1)  # a full window of samples
        await wait_for(browser, lambda d: d.find_element(By.ID, "status").text.startswith("live"))
        await asyncio.sleep(2.5)  # the last poll has drawn the full window
        shot = await asyncio.to_thread(
            browser.execute_cdp_cmd,
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True},
        )
        assert SCREENSHOT is not None
        Path(SCREENSHOT).write_bytes(base64.b64decode(shot["data"]))
