"""A headless Debian chromium driven by playwright, shared by the browser tests.

``playwright install`` cannot download browsers offline, so the tests drive the system
chromium (``apt-get install chromium``; scripts/setup does it with MODELDEPLOY_SETUP_APT=1).
Every request a page makes is checked to stay on the server under test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = os.environ.get("MODELDEPLOY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@contextmanager
def launched_browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def open_homepage(browser: Browser, url: str) -> tuple[Page, list[str]]:
    """A fresh page on the homepage; the list collects requests that tried to leave the server."""
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    outside: list[str] = []

    def only_local(route):
        if route.request.url.startswith(url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(url + "/")
    return page, outside
