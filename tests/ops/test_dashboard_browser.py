"""The dashboard in a real headless Chromium: see a dead letter, replay it, see it delivered.

Needs Debian's ``chromium`` and ``chromium-driver`` (CI installs them).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from linemq.broker.auth import hash_token
from linemq.broker.server.app import Broker
from tests.conftest import BrokerFactory
from tests.ops.browser import WAIT, needs_chromium, wait_for
from tests.ops.http import Http, dead_letter, wire
from tests.server.groupwire import member, next_msg
from tests.wire import Wire

TOKEN = "ops-secret-token"
FAILED_TEXT = '<b>card declined</b> & <script>alert("x")</script> order 1042'

pytestmark = needs_chromium


def letter_row(text: str) -> Callable[[WebDriver], WebElement | bool]:
    def find(driver: WebDriver) -> WebElement | bool:
        for row in driver.find_elements(By.CSS_SELECTOR, "#letters tbody tr"):
            if row.find_element(By.CSS_SELECTOR, "td.msg").get_attribute("title") == text:
                return row
        return False

    return find


async def scene(broker: Broker) -> Wire:
    """Topics with traffic, a working group, a paused one, and one dead letter.

    Returns the connection of the member that let the letter die, still in its group.
    """
    billing = await member(broker.port, "orders", "billing")
    publisher = await wire(broker)
    for i in range(3):
        assert await publisher.cmd(f"PUB orders order {1039 + i}") == "OK published"
        delivery = await next_msg(billing)
        assert await billing.cmd(f"ACK {delivery.id}") == "OK ack_received"
    await member(broker.port, "emails", "senders")
    http = Http(broker)
    await http.post("/api/groups/pause", {"topic": "emails", "group": "senders"})
    for i in range(4):
        assert await publisher.cmd(f"PUB emails welcome mail {i}") == "OK published"
    await billing.close()
    return await dead_letter(broker, "orders", "billing", FAILED_TEXT)


async def test_replay_a_dead_letter_from_the_dashboard(
    brokers: BrokerFactory, browser: WebDriver, tmp_path: Path
) -> None:
    broker = await brokers.start(
        http_port=0, ack_timeout=0.05, max_retries=0, heartbeat_timeout=60.0
    )
    consumer = await scene(broker)
    assert broker.http is not None
    await asyncio.to_thread(browser.get, f"http://127.0.0.1:{broker.http.port}/")

    row = await wait_for(browser, letter_row(FAILED_TEXT))
    cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
    assert "billing" in cells and "ack_timeout" in cells
    # The text is shown as text: no element was made from it.
    assert not browser.find_elements(By.CSS_SELECTOR, "#letters b, #letters script")
    await wait_for(browser, lambda d: "orders" in d.find_element(By.ID, "topics").text)
    await wait_for(browser, lambda d: "paused" in d.find_element(By.ID, "groups").text)
    await wait_for(browser, lambda d: d.find_element(By.ID, "status").text.startswith("live"))

    await asyncio.to_thread(row.find_element(By.CSS_SELECTOR, "button.replay").click)
    delivered = await next_msg(consumer, timeout=WAIT)
    assert delivered.topic == "orders"
    assert delivered.text == FAILED_TEXT
    assert await consumer.cmd(f"ACK {delivered.id}") == "OK ack_received"

    row = await wait_for(browser, letter_row(FAILED_TEXT))
    await wait_for(browser, lambda d: f"offset {delivered.offset}" in row.text)
    assert "replayed 1" in browser.find_element(By.ID, "flash").text


async def test_dashboard_asks_for_a_token_when_auth_is_on(
    brokers: BrokerFactory, browser: WebDriver, tmp_path: Path
) -> None:
    users = tmp_path / "users.toml"
    users.write_text(
        f'[[users]]\nname = "ops"\ntoken_sha256 = "{hash_token(TOKEN)}"\n'
        'publish = [">"]\nsubscribe = [">"]\n'
    )
    broker = await brokers.start(http_port=0, auth_file=users)
    publisher = await wire(broker, TOKEN)
    assert await publisher.cmd("PUB secrets hidden") == "OK published"
    assert broker.http is not None
    await asyncio.to_thread(browser.get, f"http://127.0.0.1:{broker.http.port}/")

    await wait_for(browser, lambda d: d.find_element(By.ID, "token").is_displayed())
    await asyncio.to_thread(browser.find_element(By.ID, "token").send_keys, "wrong-token\n")
    await wait_for(browser, lambda d: "refused" in d.find_element(By.ID, "login-error").text)

    await asyncio.to_thread(browser.find_element(By.ID, "token").send_keys, TOKEN + "\n")
    await wait_for(browser, lambda d: "secrets" in d.find_element(By.ID, "topics").text)
    assert "signed in as ops" in browser.find_element(By.ID, "user").text


async def test_look_a_message_up_and_see_its_progress(
    brokers: BrokerFactory, browser: WebDriver
) -> None:
    broker = await brokers.start(http_port=0, ack_timeout=30.0)
    worker = await member(broker.port, "jobs", "workers")
    publisher = await wire(broker)
    assert await publisher.cmd("PUB jobs resize image 7") == "OK published"
    held = await next_msg(worker)
    assert await worker.cmd(f"TOUCH {held.id} progress=40 <b>resizing</b>") == "OK touched"
    assert broker.http is not None
    await asyncio.to_thread(browser.get, f"http://127.0.0.1:{broker.http.port}/")

    def fill(driver: WebDriver) -> None:
        driver.find_element(By.ID, "lookup-topic").send_keys("jobs")
        driver.find_element(By.ID, "lookup-message").send_keys(held.id)
        driver.find_element(By.CSS_SELECTOR, "#lookup button").click()

    await asyncio.to_thread(fill, browser)
    table = await wait_for(
        browser,
        lambda d: (
            d.find_element(By.ID, "lookup-groups").is_displayed()
            and d.find_element(By.ID, "lookup-groups")
        ),
    )
    assert isinstance(table, WebElement)
    cells = [c.text for c in table.find_elements(By.CSS_SELECTOR, "tbody td")]
    assert cells[:3] == ["workers", "inflight", "1"]
    assert cells[4] == "40% <b>resizing</b>"  # shown as text
    assert re.search(r"\bdelivered_ts=\d\d:\d\d:\d\d\b", cells[5])  # times of day, not epochs
    assert held.id in browser.find_element(By.ID, "lookup-summary").text


async def test_groups_show_failures_terms_and_the_failure_rate(
    brokers: BrokerFactory, browser: WebDriver
) -> None:
    broker = await brokers.start(http_port=0, ack_timeout=30.0, max_inflight=20)
    worker = await member(broker.port, "jobs", "workers")
    publisher = await wire(broker)
    for i in range(12):
        assert await publisher.cmd(f"PUB jobs job {i}") == "OK published"
    ids = [(await next_msg(worker)).id for _ in range(12)]
    lines = [f"NACK {id} 60" for id in ids[:9]] + [f"TERM {ids[9]} broken"]
    lines += [f"ACK {id}" for id in ids[10:]]
    await worker.send("".join(f"{line}\n" for line in lines))
    assert [await worker.line() for _ in lines][-1] == "OK ack_received"
    assert broker.http is not None
    await asyncio.to_thread(browser.get, f"http://127.0.0.1:{broker.http.port}/")

    def group_cells(driver: WebDriver) -> list[str] | bool:
        rows = driver.find_elements(By.CSS_SELECTOR, "#groups tbody tr")
        return bool(rows) and [c.text for c in rows[0].find_elements(By.TAG_NAME, "td")]

    cells = await wait_for(browser, group_cells)
    assert isinstance(cells, list)
    # Acked, dead, failures, terms and the failure rate of the window (10 of 12 failed).
    assert cells[7:12] == ["2", "1", "10", "1", "83.3%"]
    head = browser.find_element(By.ID, "failure-rate-head").get_attribute("textContent")
    assert head == "Failure rate (5 min)"  # (the table heads are shown in capitals)
