"""A real browser for the server-rendered pages: Playwright driving Debian's Chromium.

The machines cannot download Playwright's own browsers, so ``make test`` installs ``/usr/bin/chromium``
from apt and the tests launch that. One browser serves every test in this package; each test gets a
fresh context (no shared cookies) pointed at pytest-django's ``live_server``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Response, expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
# Headless as root in a closed network: no sandbox, no GPU, and none of the background calls to
# Google's hosts that the network refuses (they slow every start down).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000

expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    # Playwright's sync API keeps an asyncio loop marked as running on this thread for as long as it
    # is started (the loop only runs inside Playwright's own greenlet), and Django refuses ORM calls
    # while a loop runs. The tests and pytest-django's database setup and flush do use the ORM here,
    # between browser steps, so allow it for exactly the loop's lifetime. Package scope, not session,
    # so the rest of the suite runs after Playwright has stopped, with Django's check intact. The
    # live server answers the browser from its own thread, where neither matters.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class ServerErrors:
    """Every response of 500 or above the browser received, so a test can insist there were none."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def record(self, response: Response) -> None:
        if response.status >= 500:
            self.seen.append(f"{response.status} {response.request.method} {response.url}")


@pytest.fixture
def server_errors() -> ServerErrors:
    return ServerErrors()


@pytest.fixture
def page(browser: Browser, live_server: Any, server_errors: ServerErrors) -> Iterator[Page]:
    context = browser.new_context(base_url=live_server.url, locale="en-GB", timezone_id="UTC")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.on("response", server_errors.record)
    try:
        yield page
    finally:
        context.close()
    assert server_errors.seen == [], "the server answered the browser with an error"
