"""Browser fixtures: Debian's Chromium driven by Playwright against the live server.

Needs /usr/bin/chromium (``apt-get install chromium``). Without it the tests are skipped,
except under CI (``CI`` set), where a missing browser is a failure.
"""

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
TIMEOUT_MS = 20_000


# Module scope: Playwright's sync API keeps an event loop running while it is open, which
# would break asyncio.run() in tests collected after the browser tests.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        reason = f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _polling_wait_for_function(page: Page):
    """Playwright's ``wait_for_function`` builds its predicate with eval() inside the page,
    which the site's Content-Security-Policy (``script-src 'self'``, no 'unsafe-eval') blocks,
    as it should; ``page.evaluate`` goes through DevTools instead, so poll with that."""

    def wait_for_function(expression: str, *, arg=None, timeout: float | None = None,
                          polling: float | str | None = None):
        deadline = time.monotonic() + (timeout or TIMEOUT_MS) / 1000
        while True:
            try:
                if value := page.evaluate(expression, arg):
                    return value
            except PlaywrightError as error:  # a navigation in between: try again
                if "context was destroyed" not in str(error):
                    raise
            if time.monotonic() > deadline:
                raise PlaywrightTimeoutError(f"{expression!r} did not hold in {timeout} ms")
            page.wait_for_timeout(polling if isinstance(polling, int | float) else 50)

    return wait_for_function


@pytest.fixture
def console_errors() -> list[str]:
    return []


@pytest.fixture
def page(browser, live_server, console_errors) -> Iterator[Page]:
    context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.wait_for_function = _polling_wait_for_function(page)
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: console_errors.append(f"uncaught: {error}"))
    yield page
    context.close()
