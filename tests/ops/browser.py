"""A headless Chromium for dashboard tests, driven from a thread so the broker keeps running.

Needs Debian's ``chromium`` and ``chromium-driver`` (CI installs them); tests that use
the ``browser`` fixture are skipped without them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium")
WAIT = 15.0

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None or not os.access(CHROMEDRIVER, os.X_OK),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)

T = TypeVar("T")


def start_chromium(profile: Path) -> WebDriver:
    options = webdriver.ChromeOptions()
    assert CHROMIUM is not None
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1500,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[WebDriver]:
    driver = await asyncio.to_thread(start_chromium, tmp_path / "chromium-profile")
    try:
        yield driver
    finally:
        await asyncio.to_thread(driver.quit)


async def wait_for(driver: WebDriver, found: Callable[[WebDriver], T]) -> T:
    """Poll the page from a thread, so the broker keeps running on this loop meanwhile."""

    def until() -> T:
        result: T = WebDriverWait(driver, WAIT, poll_frequency=0.1).until(found)
        return result

    return await asyncio.to_thread(until)
