"""The web UI over a large store: server time of its pages and their load time in Chromium.

A SQLite store is seeded with ``runs`` finished runs over a few pipelines (each with
its task runs, attempts and end event, as the service leaves them), ``events``
published events that started some of them, and one finished run of a
``layers`` x ``width`` task pipeline (each task needing two of the layer
before). A real ``reactor serve`` process serves it: the pages are timed with
``httpx`` (keep-alive) and loaded in Debian's chromium through Playwright.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bench.measure import Figure, percentile
from bench.memory import _stop, _wait_for_port, start_serve
from bench.workspace import Workspace
from reactor.events import Event, new_id
from reactor.pipelines import load_pipeline
from reactor.specs import run_event_source
from reactor.store import SqliteStore
from reactor.store.records import AttemptRecord, RunRecord, TaskRecord
from reactor.store.rows import RUN_FIELDS, attempt_values, event_values, run_values, task_values

__all__ = ["GRAPH_PIPELINE", "graph_yaml", "seed_store", "ui_pages"]

Report = Callable[[str], None]

#: Pipelines the seeded runs are spread over (round robin), each a chain of three tasks.
SMALL_PIPELINES = ("ui_orders", "ui_billing", "ui_reports", "ui_exports")
GRAPH_PIPELINE = "ui_graph"
#: Target of every figure: server time (p95) and Chromium load time (median).
TARGET_MS = 300.0
#: Every how many runs one was started by a published event (the others on demand).
EVENT_EVERY = 10
#: Warm-up requests and page loads before the measured ones.
WARMUP = 2

SMALL_YAML = """\
name: {name}
params:
  region: {{type: string, default: eu}}
  day: {{type: string, default: "2026-11-26"}}
triggers:
  - on: event
    id: published
    type: "bench.{name}.*"
{schedule}tasks:
  - {{id: extract, python: "{{module}}:noop"}}
  - {{id: transform, needs: [extract], shell: "echo transform"}}
  - {{id: load, needs: [transform], python: "{{module}}:noop"}}
"""

# Never fires while the benchmark runs (first minute of the year, and no catch-up), but
# gives the pipelines page a next fire time to compute.
SCHEDULE = """\
  - on: schedule
    id: yearly
    cron: "0 0 1 1 *"
    catchup: none
"""


def _quiet(_line: str) -> None:
    return None


def graph_yaml(name: str, layers: int, width: int) -> str:
    """``layers`` layers of ``width`` tasks, each needing two tasks of the layer before;
    python and shell tasks alternate by layer."""
    lines = [f"name: {name}", "tasks:"]
    for layer in range(layers):
        for i in range(width):
            task = f"l{layer:02d}_step_{i:03d}"
            needs = ""
            if layer:
                a, b = i, (i + 1) % width
                pair = dict.fromkeys(
                    [f"l{layer - 1:02d}_step_{a:03d}", f"l{layer - 1:02d}_step_{b:03d}"]
                )
                needs = f", needs: [{', '.join(pair)}]"
            run = "python: '{module}:noop'" if layer % 2 == 0 else "shell: 'echo step'"
            lines.append(f"  - {{id: {task}{needs}, {run}}}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Seeded:
    """What :func:`seed_store` wrote: runs (the big one included) and published events."""

    graph_run: str
    runs: int
    events: int
    tasks: int
    seconds: float


def _at(base: datetime, seconds: float) -> datetime:
    return base + timedelta(seconds=seconds)


def _end_event(run: RunRecord) -> Event:
    """The end event the service stores for a finished run (it dedupes on the run's id)."""
    return Event(
        type=f"reactor.run.{run.status}",
        source=run_event_source(run.pipeline),
        id=run.id,
        time=run.ended_at or run.created_at,
        subject=run.pipeline,
        data={"pipeline": run.pipeline, "run_id": run.id, "status": run.status, "params": {}},
    )


class _Rows:
    """Rows of every table, built with the store's own row functions, in insert order."""

    def __init__(self) -> None:
        self.runs: list[tuple[Any, ...]] = []
        self.tasks: list[tuple[Any, ...]] = []
        self.attempts: list[tuple[Any, ...]] = []
        self.events: list[tuple[Any, ...]] = []
        self.logs: list[tuple[Any, ...]] = []

    def event(self, event: Event, at: datetime, outcome: list[dict[str, Any]]) -> None:
        # Decided already: the service evaluates nothing on start.
        self.events.append((*event_values(event, at), at.isoformat(), json.dumps(outcome)))

    def task(self, run: RunRecord, task_id: str, start: datetime, end: datetime, ok: bool) -> None:
        status = "succeeded" if ok else "failed"
        error = None if ok else "exit status 3: something went wrong"
        self.tasks.append(
            task_values(TaskRecord(run.id, task_id, status, 1, start, end, {"rows": 42}, error))
        )
        self.attempts.append(
            attempt_values(
                AttemptRecord(
                    run.id, task_id, 1, status, "bench", start, end, end, error, "bench", 1
                )
            )
        )


async def seed_store(ws: Workspace, runs: int, events: int, layers: int, width: int) -> Seeded:
    """Write the pipelines into ``ws`` and fill its store; says what it wrote, the big
    run's id included."""
    before = time.perf_counter()
    versions: dict[str, tuple[str, str, str]] = {}
    for number, name in enumerate(SMALL_PIPELINES):
        ws.write(name, SMALL_YAML.format(name=name, schedule=SCHEDULE if number == 0 else ""))
    ws.write(GRAPH_PIPELINE, graph_yaml(GRAPH_PIPELINE, layers, width))
    for name in (*SMALL_PIPELINES, GRAPH_PIPELINE):
        path = ws.pipelines / f"{name}.yaml"
        pipeline = load_pipeline(path)
        versions[name] = (pipeline.version, str(path), path.read_text(encoding="utf-8"))

    store = SqliteStore(ws.database)
    await store.open()  # creates the schema
    try:
        now = datetime.now(UTC)
        for name, (version, where, text) in versions.items():
            await store.save_pipeline_version(name, version, where, text, now)
    finally:
        await store.close()

    rows = _Rows()
    # One run every 30 s up to an hour ago, each a few seconds long.
    base = now - timedelta(seconds=30 * runs + 3600)
    for i in range(runs):
        name = SMALL_PIPELINES[i % len(SMALL_PIPELINES)]
        created = _at(base, 30 * i)
        ok = i % 20 != 7
        event_ids: list[str] = []
        trigger = None
        key = f"{name}/manual@{new_id()}{i:06d}"
        run_id = f"{new_id()[:12]}{i:020x}"
        if i % EVENT_EVERY == 0 and i // EVENT_EVERY < events:
            trigger = f"{name}/published"
            event = Event(
                type=f"bench.{name}.arrived",
                source="bench/ui",
                id=f"ev-{i:07d}",
                time=created,
                data={"order": i, "region": "eu"},
            )
            event_ids = [event.id]
            key = f"{trigger}@{event.id}"
            decision = {
                "trigger": trigger,
                "pipeline": name,
                "fired": True,
                "outcome": "fired",
                "reason": "type matched",
                "params": {},
                "run_id": run_id,
            }
            rows.event(event, created, [decision])
        run = RunRecord(
            id=run_id,
            run_key=key,
            pipeline=name,
            version=versions[name][0],
            status="succeeded" if ok else "failed",
            params={"region": "eu", "day": created.date().isoformat()},
            trigger=trigger,
            event_ids=event_ids,
            created_at=created,
            started_at=_at(created, 0.05),
            ended_at=_at(created, 3.5),
            reason=None if ok else "task load failed",
        )
        rows.runs.append(run_values(run))
        for n, task_id in enumerate(("extract", "transform", "load")):
            last = n == 2
            rows.task(run, task_id, _at(created, 0.1 + n), _at(created, 1.0 + n), ok or not last)
        rows.event(_end_event(run), run.ended_at or created, [])
    # Published events that started no run, up to ``events`` in all.
    started_by_events = min(events, (runs + EVENT_EVERY - 1) // EVENT_EVERY)
    for j in range(events - started_by_events):
        event = Event(
            type="bench.ui.ignored", source="bench/ui", id=f"ev-x{j:07d}", time=_at(base, j)
        )
        rows.event(event, _at(base, j), [])

    # The big run, the newest: every task ran once, layer after layer.
    created = now - timedelta(minutes=30)
    graph = RunRecord(
        id=new_id(),
        run_key=f"{GRAPH_PIPELINE}/manual@{new_id()}",
        pipeline=GRAPH_PIPELINE,
        version=versions[GRAPH_PIPELINE][0],
        status="succeeded",
        params={},
        trigger=None,
        event_ids=[],
        created_at=created,
        started_at=created,
        ended_at=_at(created, layers * 2.0),
    )
    rows.runs.append(run_values(graph))
    for layer in range(layers):
        for i in range(width):
            task_id = f"l{layer:02d}_step_{i:03d}"
            start = _at(created, layer * 2.0 + i * 0.01)
            rows.task(graph, task_id, start, _at(start, 1.5), True)
            rows.logs.append(
                (graph.id, task_id, 1, "stdout", start.isoformat(), f"step {task_id} done")
            )
    rows.event(_end_event(graph), graph.ended_at or created, [])

    def write() -> None:
        conn = sqlite3.connect(ws.database)
        try:
            with conn:
                conn.executemany(
                    f"INSERT INTO runs ({RUN_FIELDS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    rows.runs,
                )
                conn.executemany("INSERT INTO task_runs VALUES (?,?,?,?,?,?,?,?)", rows.tasks)
                conn.executemany(
                    "INSERT INTO task_attempts VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows.attempts
                )
                conn.executemany(
                    "INSERT INTO events (id, source, type, subject, time, received_at, body,"
                    " evaluated_at, outcome) VALUES (?,?,?,?,?,?,?,?,?)",
                    rows.events,
                )
                conn.executemany(
                    "INSERT INTO logs (run_id, task_id, attempt, stream, time, line)"
                    " VALUES (?,?,?,?,?,?)",
                    rows.logs,
                )
        finally:
            conn.close()

    await asyncio.to_thread(write)
    published = sum(1 for row in rows.events if not str(row[2]).startswith("reactor."))
    return Seeded(graph.id, len(rows.runs), published, layers * width, time.perf_counter() - before)


# Set before any script of the page runs: resolves with the time (ms since the navigation
# started) of the first frame after the DOM is ready, once it was painted: the page's own
# script has laid the graph out by then (it runs on DOMContentLoaded, before this frame).
_DRAWN_SCRIPT = """
window.__benchDrawn = new Promise((resolve) => {
  document.addEventListener("DOMContentLoaded", () => {
    requestAnimationFrame(() => setTimeout(() => resolve(performance.now()), 0));
  });
});
"""

_TIMING_SCRIPT = """
async () => {
  const nav = performance.getEntriesByType("navigation")[0];
  while (!nav.loadEventEnd) await new Promise((r) => setTimeout(r, 0));
  const at = (t) => t - nav.startTime;
  return {
    load: at(nav.loadEventEnd),
    first_byte: at(nav.responseStart),
    response_end: at(nav.responseEnd),
    dom_interactive: at(nav.domInteractive),
    dom_content_loaded: at(nav.domContentLoadedEventEnd),
    drawn: await window.__benchDrawn,
    body_bytes: nav.decodedBodySize,
    nodes: document.querySelectorAll("svg.graph g.node").length,
    rows: document.querySelectorAll("main table tbody tr").length,
  };
}
"""


@dataclass(frozen=True)
class Page:
    label: str
    path: str
    #: What the page must hold, checked on every answer: (substring, at least how many).
    expect: tuple[str, int]


async def _server_times(
    client: httpx.AsyncClient, page: Page, requests: int
) -> tuple[list[float], int]:
    """Wall time (ms) of ``requests`` sequential GETs of ``page`` (after a warm-up), and
    the size of its answer."""
    times: list[float] = []
    size = 0
    for i in range(WARMUP + requests):
        before = time.perf_counter()
        response = await client.get(page.path)
        elapsed = (time.perf_counter() - before) * 1000
        needle, least = page.expect
        found = response.text.count(needle)
        if response.status_code != 200 or found < least:
            raise RuntimeError(
                f"GET {page.path}: status {response.status_code}, {found} x {needle!r}"
                f" (expected at least {least}): {response.text[:300]!r}"
            )
        size = len(response.content)
        if i >= WARMUP:
            times.append(elapsed)
    return times, size


def _median_of(samples: list[dict[str, float]], key: str) -> float:
    return statistics.median(s[key] for s in samples)


def _chromium() -> str:
    executable = shutil.which("chromium")
    if executable is None:
        raise RuntimeError(
            "chromium is not installed (no `chromium` on PATH): `make test` installs Debian's"
            " chromium with apt-get. Do not run `playwright install`."
        )
    return executable


async def _browser_loads(
    base_url: str, pages: list[Page], loads: int, report: Report
) -> dict[str, list[dict[str, float]]]:
    """Navigation timings of ``loads`` loads of each page in headless chromium (warm cache,
    after ``WARMUP`` unmeasured loads)."""
    from playwright.async_api import async_playwright

    executable = _chromium()
    found: dict[str, list[dict[str, float]]] = {}
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox"], headless=True
        )
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 800})
            await context.add_init_script(_DRAWN_SCRIPT)
            tab = await context.new_page()
            for page in pages:
                samples = []
                for i in range(WARMUP + loads):
                    # From a blank page, so no load pays for tearing down the one before.
                    await tab.goto("about:blank")
                    response = await tab.goto(base_url + page.path, wait_until="load")
                    if response is None:
                        raise RuntimeError(f"chromium loaded no document for {page.path}")
                    timing: dict[str, float] = await tab.evaluate(_TIMING_SCRIPT)
                    if i >= WARMUP:
                        samples.append(timing)
                found[page.label] = samples
                report(
                    f"  chromium {page.label}: load {_median_of(samples, 'load'):.0f} ms,"
                    f" drawn {_median_of(samples, 'drawn'):.0f} ms (median of {loads})"
                )
        finally:
            await browser.close()
    return found


async def ui_pages(
    runs: int = 100_000,
    events: int = 10_000,
    layers: int = 20,
    width: int = 50,
    requests: int = 50,
    loads: int = 7,
    report: Report = _quiet,
) -> list[Figure]:
    """Server time of the UI's pages over ``runs`` runs and a run of ``layers`` x ``width``
    tasks, and their load time in chromium, each beside a baseline of the same server."""
    _chromium()  # before the seeding, so a machine without it fails at once
    with Workspace(prefix="reactor-bench-ui-") as ws:
        seeded = await seed_store(ws, runs, events, layers, width)
        report(
            f"  seeded {seeded.runs:,} runs, {seeded.events:,} published events and a run of"
            f" {seeded.tasks:,} tasks in {seeded.seconds:.1f} s (not a figure)"
        )
        run_page = f"/runs/{seeded.graph_run}"
        health = Page("/healthz", "/healthz", ('"status"', 1))
        pages = [
            Page("/ (pipelines)", "/", ("<tr data-pipeline=", len(SMALL_PIPELINES) + 1)),
            Page(f"/runs ({runs:,} runs)", "/runs", ("<tr data-run=", 50)),
            Page(
                f"/runs/ID ({seeded.tasks:,} tasks)",
                run_page,
                ('<g class="node" data-task=', seeded.tasks),
            ),
            Page("/events", "/events", ('<tr id="ev-', min(events, 100))),
        ]
        # A page of the same layout, script and style with almost nothing in it.
        baseline = Page("404 page", "/runs/no-such-run", ("not found", 1))
        process, log = start_serve(ws)
        try:
            port = await _wait_for_port(log, process, 120.0)
            base_url = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=base_url, timeout=60.0) as client:
                floor, _ = await _server_times(client, health, requests)
                server: dict[str, tuple[list[float], int]] = {}
                for page in pages:
                    server[page.label] = await _server_times(client, page, requests)
                    times = server[page.label][0]
                    report(
                        f"  GET {page.label}: p50 {percentile(times, 50):.1f} ms,"
                        f" p95 {percentile(times, 95):.1f} ms"
                    )
            loaded = await _browser_loads(base_url, [baseline, pages[1], pages[2]], loads, report)
        except BaseException:
            _stop(process)
            tail = log.read_text(errors="replace")[-2000:]
            sys.stderr.write(f"reactor serve output (tail):\n{tail}\n")
            raise
        _stop(process)

    benchmark = f"web UI, {runs:,} runs"
    figures: list[Figure] = []
    floor50, floor95 = percentile(floor, 50), percentile(floor, 95)
    for page in pages:
        times, size = server[page.label]
        figures += [
            Figure(benchmark, f"GET {page.label} p50", percentile(times, 50), "ms", floor50),
            Figure(
                benchmark,
                f"GET {page.label} p95",
                percentile(times, 95),
                "ms",
                floor95,
                TARGET_MS,
                note=f"{requests} sequential requests, keep-alive; floor: GET /healthz",
                extra={"body_bytes": size, "max_ms": max(times)},
            ),
        ]
    base = loaded[baseline.label]
    for page in (pages[1], pages[2]):
        samples = loaded[page.label]
        keys = ("first_byte", "response_end", "dom_interactive", "dom_content_loaded", "drawn")
        figures.append(
            Figure(
                benchmark,
                f"chromium load {page.label}",
                _median_of(samples, "load"),
                "ms",
                _median_of(base, "load"),
                TARGET_MS,
                note=f"median of {loads} loads, navigation start -> load event end;"
                " floor: the 404 page",
                extra={
                    **{f"{k}_ms": _median_of(samples, k) for k in keys},
                    "body_bytes": samples[0]["body_bytes"],
                    "rows": samples[0]["rows"],
                    "nodes": samples[0]["nodes"],
                },
            )
        )
    samples = loaded[pages[2].label]
    if samples[0]["nodes"] != seeded.tasks:
        raise RuntimeError(f"the run page drew {samples[0]['nodes']} of {seeded.tasks} tasks")
    figures.append(
        Figure(
            benchmark,
            f"chromium run page ({seeded.tasks:,} tasks): graph drawn",
            _median_of(samples, "drawn"),
            "ms",
            _median_of(base, "drawn"),
            TARGET_MS,
            note="median: navigation start -> first frame painted after DOMContentLoaded",
        )
    )
    return figures
