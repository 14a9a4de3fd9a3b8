"""Real headless Chromium for tests that drive a local web page (the dashboard tests build on this).

Debian's `/usr/bin/chromium` is driven through Playwright; Playwright's own browser downloads are never
used. Without chromium or playwright a test is skipped loudly on a workstation and fails under CI=true,
so CI can never pass without running the browser. Accessibility checks run the axe-core copy bundled in
`axe-playwright-python`, so they work offline.

tests/conftest.py registers this module as a plugin, so every test can ask for the `browser` fixture;
importing the fixture by name instead trips ruff's F401/F811.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from conftest import IN_CI

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Error, Page, Response

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SERIOUS_IMPACTS = ("serious", "critical")


def browser_unavailable_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not CHROMIUM.exists():
        return f"no {CHROMIUM}; install it with `apt-get update && apt-get install -y chromium`"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is not executable"
    # importing (not just finding) the sync API catches a half-installed package or a missing greenlet
    try:
        importlib.import_module("playwright.sync_api")
    except ImportError as exc:
        return f"playwright does not import ({exc}); install it with `.venv/bin/pip install playwright`"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Debian Chromium for the whole session; each test opens its own context via new_page."""
    reason = browser_unavailable_reason()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI=true: {reason}; the browser tests were NOT run", pytrace=False)
        pytest.skip(f"SKIPPED LOUDLY, the browser tests were NOT run: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


class PageWatch:
    """Records what a page got wrong: console errors, uncaught exceptions and 5xx responses.

    Chromium logs every failed load as a console error too, so a 5xx shows up twice. A page without
    `<link rel="icon">` makes Chromium fetch /favicon.ico on its own schedule, so a 404 there appears
    in some runs and not others: pages under test should declare an icon.
    """

    def __init__(self, page: Page) -> None:
        self.page = page
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.server_errors: list[tuple[str, int]] = []
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)
        page.on("response", self._on_response)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            where = message.location
            self.console_errors.append(f"{message.text} ({where['url']}:{where['lineNumber']})")

    def _on_page_error(self, error: Error) -> None:
        self.page_errors.append(f"{error.name}: {error.message}" if error.name else error.message)

    def _on_response(self, response: Response) -> None:
        if response.status >= 500:
            self.server_errors.append((response.url, response.status))

    def problems(self) -> list[str]:
        return (
            [f"console error: {text}" for text in self.console_errors]
            + [f"page error: {text}" for text in self.page_errors]
            + [f"HTTP {status}: {url}" for url, status in self.server_errors]
        )

    def assert_clean(self) -> None:
        """Raise AssertionError listing every recorded problem."""
        if not self.page.is_closed():
            # events the browser sent before this round trip's reply are dispatched before it returns
            self.page.evaluate("0")
        problems = self.problems()
        if problems:
            raise AssertionError(f"{len(problems)} problems on the page:\n  " + "\n  ".join(problems))


def new_page(
    browser: Browser, base_url: str, width: int = 1280, height: int = 800, locale: str = "en-US"
) -> tuple[Page, PageWatch]:
    """A page in a fresh context (no shared cookies or storage); close it with `page.context.close()`."""
    context = browser.new_context(
        viewport={"width": width, "height": height}, locale=locale, base_url=base_url
    )
    page = context.new_page()
    return page, PageWatch(page)


def serious_a11y_violations(page: Page) -> list[str]:
    """Run axe-core on the page as it is now; one line per serious or critical violation."""
    # imported here so a module that never checks accessibility does not need the package
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{violation['id']}: {violation['help']} ({len(violation['nodes'])} nodes)"
        for violation in results.response["violations"]
        if violation["impact"] in SERIOUS_IMPACTS
    ]


def screenshot(page: Page, path: Path, full_page: bool = True) -> Path:
    """Save a PNG of the page at path, creating its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=full_page)
    return path
