"""E2E fixtures: the ``reactor`` command run as a user runs it, and ``reactor serve`` sessions."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import textwrap
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from .browser import VIEWPORT, launch, screenshot_path
from .commands import ENV, REACTOR, Served, free_port

StartServe = Callable[..., Served]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[StartServe]:
    """``serve(folder, *args)``: start ``reactor serve``; every session is killed at the end."""
    started: list[Served] = []

    def start(folder: Path, *args: str, http: bool = True) -> Served:
        n = len(started)
        port = free_port()
        command = [REACTOR, "serve", str(folder), *args]
        if http:
            command += ["--http", f"127.0.0.1:{port}"]
        stdout = tmp_path / f"serve-{n}.out"
        stderr = tmp_path / f"serve-{n}.err"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                command,
                cwd=tmp_path,
                env=ENV,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        served = Served(process, f"http://127.0.0.1:{port}", stdout, stderr)
        started.append(served)
        return served

    try:
        yield start
    finally:
        for served in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(served.process.pid, signal.SIGKILL)
            served.process.wait()


@pytest.fixture
def folder(tmp_path: Path) -> Callable[..., Path]:
    """``folder(name, {"file.yaml": text, ...})``: a pipelines folder with those files."""

    def make(name: str, files: dict[str, str]) -> Path:
        path = tmp_path / name
        path.mkdir()
        for filename, text in files.items():
            target = path / filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return make


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the browser are marked ``browser`` and run after all the others.

    Playwright's sync API leaves its loop marked as running in this thread while the session's
    browser is open (see tests/e2e/browser.py), which no anyio test can run beside.
    """
    uses_browser = [item for item in items if "browser" in getattr(item, "fixturenames", ())]
    for item in uses_browser:
        item.add_marker(pytest.mark.browser)
    chosen = set(uses_browser)
    items[:] = [item for item in items if item not in chosen] + uses_browser


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed browser test's report says where the screenshot of its page is."""
    report = yield
    if report.when == "call" and report.failed and "page" in getattr(item, "fixturenames", ()):
        report.sections.append(("screenshot", str(screenshot_path(item.name))))
    return report


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Debian chromium for the whole session (``make test`` installs it)."""
    with launch() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page in a new context (1280x800); its full-page screenshot is saved at the end."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        opened = context.new_page()
        yield opened
        path = screenshot_path(request.node.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        opened.screenshot(path=path, full_page=True)
    finally:
        context.close()
