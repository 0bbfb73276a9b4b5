"""The dashboard in a real headless Chromium: groups with their policy and filter, and the
repeatable jobs.

Needs Debian's ``chromium`` and ``chromium-driver`` (CI installs them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from linemq.broker.config import parse_topic_policy
from tests.conftest import BrokerFactory
from tests.ops.browser import needs_chromium, wait_for
from tests.ops.http import wire
from tests.ops.test_api_policies import schedule

pytestmark = needs_chromium
DASH = "\u2013"  # what the page shows for "none", and between backoff times


def row_cells(table: str, first: str) -> Callable[[WebDriver], list[str] | bool]:
    """The cells' texts of the row of ``table`` whose second cell is ``first``, once shown."""

    def find(driver: WebDriver) -> list[str] | bool:
        for row in driver.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr"):
            cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
            if len(cells) > 1 and cells[1] == first:
                return cells
        return False

    return find


async def test_groups_show_policy_and_filter_and_jobs_are_listed(
    brokers: BrokerFactory, browser: WebDriver
) -> None:
    broker = await brokers.start(
        http_port=0,
        ack_timeout=30.0,
        topic_policy=(parse_topic_policy("jobs=max_retries:5,backoff:exponential:2s:5m"),),
    )
    w = await wire(broker)
    assert await w.cmd("SUB jobs workers") == "OK subscribed jobs in group workers"
    assert await w.cmd("SUB jobs mail filter=h.channel=sms filter=!h.test") == (
        "OK subscribed jobs in group mail"
    )
    assert await w.cmd("POLICY jobs workers rate=10/1s ordering=fifo") == (
        "OK policy set jobs workers"
    )
    publisher = await wire(broker)
    assert await publisher.cmd("PUB jobs plain") == "OK published"  # mail's filter passes it
    assert (
        await schedule(publisher, "jobs", "nightly", "<b>x</b>", 'cron="0 2 * * *"', "key=n")
    ).startswith("OK scheduled")
    assert broker.http is not None
    await asyncio.to_thread(browser.get, f"http://127.0.0.1:{broker.http.port}/")

    workers = await wait_for(browser, row_cells("groups", "workers"))
    assert isinstance(workers, list)
    filtered, filter_text, policy = workers[12:15]
    assert (filtered, filter_text) == (DASH, DASH)
    assert policy == (f"5 retries · backoff 2s{DASH}5m · ack 30s · 5 in flight · FIFO · rate 10/1s")
    own = browser.find_elements(By.CSS_SELECTOR, "#groups .policy b")
    assert sorted(b.get_attribute("data-key") for b in own) == ["ordering", "rate"]

    def mail_filtered(driver: WebDriver) -> list[str] | bool:
        cells = row_cells("groups", "mail")(driver)
        return cells if isinstance(cells, list) and cells[12] == "1" else False

    mail = await wait_for(browser, mail_filtered)
    assert isinstance(mail, list)
    assert mail[13] == "!h.test and h.channel=sms"
    assert mail[14] == f"5 retries · backoff 2s{DASH}5m · ack 30s · 5 in flight · key order"

    job = await wait_for(browser, row_cells("schedules", "nightly"))
    assert isinstance(job, list)
    assert job[0] == "jobs" and job[2] == "cron 0 2 * * * (UTC)"
    assert job[4:] == ["never", "0", "8 B", "key=n"]
    assert job[3]  # the next due time
