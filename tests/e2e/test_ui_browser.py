"""The web UI in Debian's chromium against a real ``reactor serve``: what an operator does.

Tasks wait on gate files the test creates, so each state is held as long as the test
looks at it; the page changes are waited for in the browser (``expect`` with a timeout),
never with sleeps. Named screenshots (``shot``) are the ones docs/ui.md shows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Locator, Page, expect

from .browser import VIEWPORT, shot, wait_until
from .commands import Served

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

#: Long enough for a loaded CI machine; a passing test never waits for it.
LIVE = 30_000

TOUR = """
name: orders_daily
description: Load the day's orders, check them, publish a report.
params:
  day: {{type: date, default: "2026-11-25"}}
  region: {{type: string, default: eu, enum: [eu, us]}}
  limit: {{type: integer, default: 100, description: Rows to load at most}}
triggers:
  - on: event
    id: orders_landed
    type: orders.landed
    when: "event.data.region == 'eu'"
tasks:
  - id: extract
    shell: |
      echo extracting {{{{ params.region }}}} orders for {{{{ params.day }}}}
      while [ ! -e {gate}/extract ]; do sleep 0.02; done
      echo gate one passed
      while [ ! -e {gate}/extract2 ]; do sleep 0.02; done
      echo extracted {{{{ params.limit }}}} rows
  - id: check_rows
    needs: [extract]
    shell: "echo rows look fine"
  - id: enrich
    needs: [extract]
    shell: "echo enriched"
  - id: publish
    needs: [check_rows, enrich]
    shell: "echo published"
"""

FLAKY = """
name: flaky_report
triggers:
  - on: event
    id: report_due
    type: report.due
tasks:
  - id: fetch
    shell: "echo fetched"
  - id: render
    needs: [fetch]
    shell: |
      if [ ! -e {gate}/fixed ]; then echo template missing >&2; exit 2; fi
      echo rendered
  - id: send
    needs: [render]
    shell: "echo sent"
"""

SLOW = """
name: slow_export
tasks:
  - id: export
    shell: "echo exporting; while [ ! -e {gate}/never ]; do sleep 0.02; done"
"""

WATCHER = """
name: inbox_watch
triggers:
  - on: file
    id: inbox
    path: {inbox}
    pattern: "*.csv"
tasks:
  - id: load
    shell: "echo loaded"
"""


@dataclass
class Site:
    """The served pipelines: where the service answers and where its tasks' gates are."""

    url: str
    gate: Path


@pytest.fixture
def served(folder: Callable[..., Path], serve: Callable[..., Served], tmp_path: Path) -> Site:
    gate = tmp_path / "gates"
    gate.mkdir()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    files = {
        "orders.yaml": TOUR.format(gate=gate),
        "flaky.yaml": FLAKY.format(gate=gate),
        "slow.yaml": SLOW.format(gate=gate),
        "watch.yaml": WATCHER.format(inbox=inbox),
    }
    path = folder("pipelines", files)
    service = serve(path, "--store", f"sqlite:///{path.parent / 'state.db'}")
    wait_until(service.healthy, timeout=30, message="reactor serve to be healthy")
    return Site(service.url, gate)


def _api(served: Site, method: str, path: str, body: object | None = None) -> Any:
    response = httpx.request(method, f"{served.url}{path}", json=body, timeout=10)
    response.raise_for_status()
    return response.json()


def _node(page: Page, task: str) -> Locator:
    return page.locator(f'svg.graph g.node[data-task="{task}"]')


def test_start_a_run_from_the_form_and_watch_it_turn_green(served: Site, page: Page) -> None:
    page.goto(f"{served.url}/")
    row = page.locator('tr[data-pipeline="orders_daily"]')
    expect(row).to_contain_text("orders_landed: event")
    shot(page, "ui-pipelines")

    row.get_by_role("link", name="orders_daily").click()
    expect(page.get_by_role("heading", name="orders_daily", level=1)).to_be_visible()
    form = page.locator("#run form")
    form.get_by_label("region").select_option("us")
    form.get_by_label("limit").fill("42")
    shot(page, "ui-pipeline")
    form.get_by_role("button", name="Start run").click()

    # The form sends the browser to the new run's page; the graph follows the run live.
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f]+$"))
    expect(_node(page, "extract")).to_have_attribute("data-status", "running", timeout=LIVE)
    expect(_node(page, "publish")).to_have_attribute("data-status", "pending")
    expect(page.locator('tr[data-task="extract"] .badge')).to_have_text("running")
    run_id = page.url.rsplit("/", 1)[1]
    run = _api(served, "GET", f"/api/runs/{run_id}")
    assert run["params"] == {"day": "2026-11-25", "region": "us", "limit": 42}
    shot(page, "ui-run-running")

    (served.gate / "extract").touch()
    (served.gate / "extract2").touch()
    for task in ("extract", "check_rows", "enrich", "publish"):
        expect(_node(page, task)).to_have_attribute("data-status", "succeeded", timeout=LIVE)
    expect(page.locator("#run-header")).to_have_attribute(
        "data-run-status", "succeeded", timeout=LIVE
    )
    expect(page.locator("#run-header .badge").first).to_have_text("succeeded")
    expect(page.locator("#timeline .tl-row")).to_have_count(4, timeout=LIVE)
    shot(page, "ui-run-succeeded")


def test_a_running_tasks_logs_are_tailed_live(served: Site, page: Page) -> None:
    run = _api(served, "POST", "/api/pipelines/orders_daily/runs", {"params": {"limit": 7}})
    page.goto(f"{served.url}/runs/{run['id']}")
    expect(_node(page, "extract")).to_have_attribute("data-status", "running", timeout=LIVE)

    _node(page, "extract").click()
    panel = page.locator("#panel")
    expect(panel).to_be_visible()
    log = panel.locator("pre.log")
    expect(log).to_contain_text("extracting eu orders for 2026-11-25", timeout=LIVE)
    expect(page).to_have_url(re.compile(r"\?task=extract$"))

    # Lines written after the panel opened arrive without a reload.
    (served.gate / "extract").touch()
    expect(log).to_contain_text("gate one passed", timeout=LIVE)
    shot(page, "ui-task-logs")
    (served.gate / "extract2").touch()
    expect(log).to_contain_text("extracted 7 rows", timeout=LIVE)
    expect(panel.locator(".panel-head .badge")).to_have_text("succeeded", timeout=LIVE)

    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()


def test_cancel_a_run_from_its_page(served: Site, page: Page) -> None:
    run = _api(served, "POST", "/api/pipelines/slow_export/runs", {})
    page.goto(f"{served.url}/runs/{run['id']}")
    expect(_node(page, "export")).to_have_attribute("data-status", "running", timeout=LIVE)

    asked: list[str] = []

    def confirm(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.on("dialog", confirm)
    page.get_by_role("button", name="Cancel run").click()
    expect(page.locator("#run-header")).to_have_attribute(
        "data-run-status", "cancelled", timeout=LIVE
    )
    expect(_node(page, "export")).to_have_attribute("data-status", "cancelled", timeout=LIVE)
    assert asked == [f"Cancel run {run['id']}?"]
    reason = _api(served, "GET", f"/api/runs/{run['id']}")["reason"]
    assert "ui:127.0.0.1" in reason
    shot(page, "ui-run-cancelled")


def test_repair_a_failed_run(served: Site, page: Page) -> None:
    _api(served, "POST", "/api/events", {"type": "report.due", "source": "cron", "id": "r-1"})
    runs = _api(served, "GET", "/api/runs?pipeline=flaky_report")
    run_id = runs[0]["id"]
    page.goto(f"{served.url}/runs/{run_id}")
    expect(page.locator("#run-header")).to_have_attribute("data-run-status", "failed", timeout=LIVE)
    expect(_node(page, "render")).to_have_attribute("data-status", "failed")
    expect(_node(page, "send")).to_have_attribute("data-status", "upstream_failed")
    page.locator('tr[data-task="render"]').get_by_role("link", name="render").click()
    expect(page.locator("#panel pre.log")).to_contain_text("template missing")
    expect(page.locator("#panel")).to_contain_text("exit code 2")
    shot(page, "ui-run-failed")

    (served.gate / "fixed").touch()
    page.get_by_role("button", name="Repair run").click()
    expect(page.locator("#run-header")).to_have_attribute(
        "data-run-status", "succeeded", timeout=LIVE
    )
    expect(_node(page, "send")).to_have_attribute("data-status", "succeeded", timeout=LIVE)
    expect(page.locator("#run-header .reason")).to_contain_text("repair 1 by ui:127.0.0.1")


def test_events_stream_live_and_explain_why(served: Site, page: Page) -> None:
    page.goto(f"{served.url}/events")
    expect(page.locator("[data-empty]")).to_be_visible()
    # Published after the page opened: the row arrives over the stream.
    _api(
        served,
        "POST",
        "/api/events",
        {"type": "orders.landed", "source": "shop", "id": "evt-us-1", "data": {"region": "us"}},
    )
    row = page.locator("#events-body tr", has_text="evt-us-1")
    expect(row).to_be_visible(timeout=LIVE)
    expect(row).to_contain_text("not fired")
    shot(page, "ui-events")

    row.get_by_role("link", name="evt-us-1").click()
    expect(page.get_by_role("heading", name="Why it started no run")).to_be_visible()
    trigger = page.locator('tr[data-trigger="orders_daily/orders_landed"]')
    expect(trigger).to_contain_text("when")
    expect(trigger.locator(".badge")).not_to_have_text("fired")
    expect(page.locator("pre.json")).to_contain_text(json.dumps("us"))
    shot(page, "ui-event-explained")


def test_filters_keep_other_events_off_the_stream(served: Site, page: Page) -> None:
    page.goto(f"{served.url}/events?type=report.*")
    _api(served, "POST", "/api/events", {"type": "orders.landed", "source": "s", "id": "o-1"})
    _api(served, "POST", "/api/events", {"type": "report.due", "source": "s", "id": "rep-1"})
    expect(page.locator("#events-body tr", has_text="rep-1")).to_be_visible(timeout=LIVE)
    expect(page.locator("#events-body tr", has_text="o-1")).to_have_count(0)


def test_pause_resume_and_backfill_from_the_pipeline_page(served: Site, page: Page) -> None:
    page.goto(f"{served.url}/pipelines/flaky_report")
    page.get_by_role("button", name="Pause pipeline").click()
    expect(page.get_by_role("heading", name=re.compile("flaky_report"))).to_contain_text(
        "paused", timeout=LIVE
    )
    page.get_by_label("Events received while paused").select_option("drop")
    page.get_by_role("button", name="Resume pipeline").click()
    expect(page.get_by_role("button", name="Pause pipeline")).to_be_visible(timeout=LIVE)

    backfill = page.locator("#backfills form")
    backfill.get_by_label("From (UTC)").fill("2026-11-01T00:00:00")
    backfill.get_by_label("To (UTC)").fill("2026-11-01T00:00:00")
    backfill.get_by_label("Step").fill("1d")
    backfill.get_by_role("button", name="Start backfill").click()
    expect(backfill.locator(".result [role=alert]")).to_contain_text("to", timeout=LIVE)

    backfill.get_by_label("To (UTC)").fill("2026-11-04T00:00:00")
    backfill.get_by_role("button", name="Start backfill").click()
    expect(page.locator("#backfills table")).to_contain_text("2026-11-01 00:00:00", timeout=LIVE)
    found = _api(served, "GET", "/api/backfills")
    assert [b["total"] for b in found] == [3]


def test_sensors_page_shows_a_watching_sensor(served: Site, page: Page) -> None:
    page.goto(f"{served.url}/sensors")
    row = page.locator('tr[data-sensor="inbox_watch/inbox"]')
    expect(row).to_contain_text("file")
    expect(row.locator(".badge")).to_have_text(re.compile("watching|ok|healthy"), timeout=LIVE)
    shot(page, "ui-sensors")


def test_keyboard_navigation(served: Site, page: Page) -> None:
    page.goto(f"{served.url}/")
    page.keyboard.press("g")
    page.keyboard.press("r")
    expect(page).to_have_url(f"{served.url}/runs")
    page.keyboard.press("?")
    expect(page.locator("dialog#keys")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("dialog#keys")).to_be_hidden()
    page.keyboard.press("g")
    page.keyboard.press("e")
    expect(page).to_have_url(f"{served.url}/events")
    page.keyboard.press("/")
    expect(page.locator("input[name=type]")).to_be_focused()


def test_dark_theme_follows_the_browser(served: Site, browser: Browser) -> None:
    (served.gate / "extract").touch()
    (served.gate / "extract2").touch()
    run = _api(served, "POST", "/api/pipelines/orders_daily/runs", {})
    context = browser.new_context(viewport=VIEWPORT, color_scheme="dark")
    try:
        page = context.new_page()
        page.goto(f"{served.url}/runs/{run['id']}")
        expect(page.locator("#run-header")).to_have_attribute(
            "data-run-status", "succeeded", timeout=LIVE
        )
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(13, 17, 23)"
        shot(page, "ui-run-dark")
    finally:
        context.close()
