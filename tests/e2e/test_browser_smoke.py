"""A real browser opens a real ``reactor serve``: the browser-test setup works end to end."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from .browser import SCREENSHOTS, shot, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

HELLO = """
name: hello-browser
description: said in a browser test
triggers:
  - on: event
    type: hello.requested
tasks:
  - id: say
    shell: "echo hello"
"""


def test_the_browser_shows_a_served_pipeline(folder, serve, page: Page) -> None:
    path = folder("pipelines", {"hello-browser.yaml": HELLO})
    served = serve(path, "--store", f"sqlite:///{path.parent / 'state.db'}")
    wait_until(served.healthy, timeout=30, message="reactor serve to be healthy")

    response = page.goto(f"{served.url}/")
    assert response is not None
    assert response.status == 200
    expect(page).to_have_title(re.compile("Pipelines"))
    expect(page.get_by_role("heading", name="Pipelines", level=1)).to_be_visible()
    link = page.get_by_role("link", name="hello-browser", exact=True)
    expect(link).to_be_visible()
    expect(link).to_have_attribute("href", "/pipelines/hello-browser")
    expect(page.get_by_text("said in a browser test")).to_be_visible()
    saved = shot(page, "smoke-pipelines")
    assert saved == SCREENSHOTS / "smoke-pipelines.png"
    assert saved.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_a_bad_screenshot_name_is_refused(page: Page) -> None:
    page.set_content("<p>nothing</p>")
    with pytest.raises(ValueError, match=r"screenshot name '\.\./out' must start with"):
        shot(page, "../out")
