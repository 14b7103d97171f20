"""The web UI in a real browser: Playwright's sync API driving Debian's chromium.

``make test`` installs chromium with apt (never ``playwright install``, which downloads a
browser build of its own). Browser tests are sync tests marked ``browser``: Playwright's sync
API marks its own event loop as running between calls, so an anyio test cannot run in the same
thread while the session's browser is open; tests/e2e/conftest.py therefore runs every test
that uses the browser after all the others.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

__all__ = ["SCREENSHOTS", "VIEWPORT", "launch", "screenshot_path", "shot", "wait_until"]

#: Where screenshots go (git ignores tests/artifacts/); the docs reuse the named ones.
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-\[\]]+")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


@contextmanager
def launch() -> Iterator[Browser]:
    """Headless Debian chromium under Playwright; fails the test if chromium is missing."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail(
            "chromium is not installed (no `chromium` on PATH): run `make test`, which "
            "installs Debian's chromium with apt-get. Do not run `playwright install`.",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox"], headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


def screenshot_path(test_name: str) -> Path:
    """Where the automatic screenshot of the test named ``test_name`` goes."""
    return SCREENSHOTS / f"{_UNSAFE.sub('_', test_name)}.png"


def shot(page: Page, name: str) -> Path:
    """Save a full-page screenshot of ``page`` as ``<name>.png`` in SCREENSHOTS."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"screenshot name {name!r} must start with a letter or digit and hold only "
            "letters, digits, '_', '-' and '.' (it becomes a file name, without '.png')"
        )
    path = SCREENSHOTS / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=path, full_page=True)
    return path


def wait_until(condition: Callable[[], bool], *, timeout: float, message: str) -> None:
    """Poll ``condition`` (about another process) until it holds; fail after ``timeout`` s.

    Sync tests cannot use tests/helpers.py's async ``wait_for`` once Playwright has started.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(0.02)
