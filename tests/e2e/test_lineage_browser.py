"""Lineage with ``reactor serve`` and Debian's chromium: a write starts its reader through
``on: asset``, and the asset graph and an asset's history lead to the runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from .browser import shot, wait_until
from .commands import Served

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

LIVE = 30_000

FILES = {
    "orders.yaml": """
        name: load_orders
        tasks:
          - id: load
            shell: "echo loaded"
            inputs: [postgresql://Warehouse/Raw.Orders]
            outputs: [postgres://warehouse/public.orders]
        """,
    "report.yaml": """
        name: orders_report
        triggers:
          - on: asset
        tasks:
          - id: summarise
            shell: 'echo "{\\"outputs\\": [\\"s3://reports/orders.pdf\\"]}" > "$REACTOR_LINEAGE"'
            inputs: [postgres://warehouse/public.orders]
        """,
}


def _get(url: str) -> Any:
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    return response.json()


def test_a_write_starts_its_reader_and_the_asset_pages_show_it(
    folder: Callable[..., Path], serve: Callable[..., Served], page: Page
) -> None:
    path = folder("pipelines", FILES)
    service = serve(path, "--store", f"sqlite:///{path.parent / 'state.db'}")
    wait_until(service.healthy, timeout=30, message="reactor serve to be healthy")
    started = httpx.post(f"{service.url}/api/pipelines/load_orders/runs", json={}, timeout=10)
    assert started.status_code == 201, started.text

    def report_done() -> bool:
        runs = _get(f"{service.url}/api/runs?pipeline=orders_report")
        return len(runs) == 1 and runs[0]["status"] == "succeeded"

    wait_until(report_done, timeout=30, message="orders_report to run after the write")
    [report_run] = _get(f"{service.url}/api/runs?pipeline=orders_report")

    page.goto(f"{service.url}/assets")
    graph = page.locator("svg.graph")
    for node in (
        "postgres://warehouse/raw.orders",
        "load_orders · load",
        "postgres://warehouse/public.orders",
        "orders_report · summarise",
        "s3://reports/orders.pdf",
    ):
        expect(graph.locator(f'g.node[data-task="{node}"]')).to_be_visible(timeout=LIVE)
    expect(page.locator('tr[data-asset="s3://reports/orders.pdf"]')).to_contain_text(
        "orders_report · summarise"
    )
    shot(page, "ui-assets")

    graph.locator('g.node[data-task="postgres://warehouse/public.orders"]').click()
    expect(page.locator("h1")).to_have_text("postgres://warehouse/public.orders", timeout=LIVE)
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator('tr[data-direction="write"]')).to_contain_text("load_orders")
    reader = page.locator('tr[data-direction="read"]')
    expect(reader).to_contain_text("orders_report")
    reader.locator("a.mono").click()
    expect(page.locator("#run-header")).to_have_attribute(
        "data-run-status", "succeeded", timeout=LIVE
    )
    assert report_run["id"] in page.url
