"""The web UI's pages on a real port, over both stores: what each page says, and 404s."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from helpers import wait_for

from reactor.service import Reactor
from reactor.store import Store

from .support import wait_run

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


class Page(HTMLParser):
    """An HTML page's elements (tag and attributes, in order) and its visible text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self._text: list[str] = []
        self._skip = 0
        self.feed(html)
        self.close()
        self.text = " ".join(" ".join(self._text).split())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._text.append(data)

    def find(self, tag: str, **attrs: str | None) -> list[dict[str, str]]:
        """Elements ``tag`` with these attributes (``_`` for ``-`` in names; ``None``: any
        value, as long as the attribute is there)."""
        wanted = {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()}
        return [
            found
            for name, found in self.elements
            if name == tag
            and all(k in found and (v is None or found[k] == v) for k, v in wanted.items())
        ]

    def values(self, tag: str, attribute: str, **attrs: str | None) -> list[str]:
        return [
            e[attribute] for e in self.find(tag, **{attribute.replace("-", "_"): None, **attrs})
        ]


def page_of(response: httpx.Response) -> Page:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    return Page(response.text)


@asynccontextmanager
async def ui_client(
    start_reactor: Any, **settings: Any
) -> AsyncIterator[tuple[Reactor, httpx.AsyncClient]]:
    """The service with its API and UI on a free port, and a client for it."""
    async with start_reactor(http=("127.0.0.1", 0), **settings) as reactor:
        assert reactor.http_port
        base = f"http://127.0.0.1:{reactor.http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            yield reactor, client


async def decided(store: Store, source: str, event_id: str) -> None:
    async def done() -> bool:
        stored = await store.get_event(source, event_id)
        return stored is not None and stored.evaluated_at is not None

    await wait_for(done, message=f"event {event_id} to be decided")


STEPS = """
def ok(n=0):
    return {"n": n}


def boom():
    raise RuntimeError("no luck")
"""

CHORES = """
name: chores
description: Does the work.
params:
  n: {{type: integer, default: 0}}
triggers:
  - id: work
    on: event
    type: "work.*"
    params: {{n: "{{{{ event.data.n }}}}"}}
  - id: nightly
    on: schedule
    cron: "0 3 1 1 *"
    timezone: UTC
tasks:
  - id: first
    python: {module}:ok
    args: {{n: "{{{{ params.n }}}}"}}
  - id: second
    needs: [first]
    shell: "echo second {{{{ tasks.first.output.n }}}}"
"""

BROKEN = """
name: broken
tasks:
  - id: fails
    python: {module}:boom
  - id: never
    needs: fails
    shell: echo never
"""

LOOP = """
name: loop
tasks:
  - id: each
    for_each: [red, green, blue]
    task:
      shell: "echo colour {{ item }}"
  - id: after
    needs: each
    shell: echo done
"""

QUICK = """
name: quick
tasks:
  - id: only
    python: {module}:ok
"""


@pytest.fixture
def ui(write_pipeline, write_module, start_reactor):
    """``async with ui() as (reactor, client)`` with the pipelines above loaded."""
    module = write_module(STEPS)
    write_pipeline("chores.yaml", CHORES.format(module=module))
    write_pipeline("broken.yaml", BROKEN.format(module=module))
    write_pipeline("loop.yaml", LOOP)
    write_pipeline("quick.yaml", QUICK.format(module=module))
    return lambda **settings: ui_client(start_reactor, **settings)


async def test_the_pipelines_page_lists_every_pipeline_with_its_last_runs(ui, store) -> None:
    async with ui() as (reactor, client):
        empty = page_of(await client.get("/"))
        good = (await reactor.run_now("chores", {"n": 2})).id
        bad = (await reactor.run_now("broken")).id
        await wait_run(store, good)
        await wait_run(store, bad)
        page = page_of(await client.get("/"))

    assert "no runs yet" in empty.text
    assert page.values("tr", "data-pipeline") == ["broken", "chores", "loop", "quick"]
    assert "Does the work." in page.text
    assert "work: event" in page.text and "nightly: schedule" in page.text
    squares = page.find("a", class_="sq")
    assert [(s["href"], s["data-status"]) for s in squares] == [
        (f"/runs/{bad}", "failed"),
        (f"/runs/{good}", "succeeded"),
    ]
    # The next fire time of the schedule: 03:00 UTC on a 1st of January.
    [fire] = [t["datetime"] for t in page.find("time")]
    assert re.fullmatch(r"\d{4}-01-01T03:00:00\+00:00", fire), fire
    assert "paused" not in page.text
    assert page.find("form", action="/ui/pipelines/quick/run")


async def test_a_pipeline_page_has_its_forms_triggers_schedule_and_runs(ui, store) -> None:
    async with ui() as (reactor, client):
        run_id = (await reactor.run_now("chores", {"n": 4})).id
        await wait_run(store, run_id)
        page = page_of(await client.get("/pipelines/chores"))

    assert "chores" in page.text and "Does the work." in page.text
    assert page.find("form", action="/ui/pipelines/chores/run")
    assert page.find("form", action="/ui/pipelines/chores/backfill")
    assert page.find("form", action="/ui/pipelines/chores/pause")
    # The field is in both the run-now and the backfill forms.
    fields = page.find("input", name="param.n")
    assert [(f["type"], f["value"], f["step"]) for f in fields] == [("number", "0", "1")] * 2
    assert "cron '0 3 1 1 *' in UTC" in page.text
    assert len([t for t in page.find("time") if t["datetime"].endswith("T03:00:00+00:00")]) >= 3
    assert f"/runs/{run_id}" in [a["href"] for a in page.find("a", href=None)]


async def test_a_run_page_shows_its_tasks_states_graph_and_the_event_that_started_it(
    ui, store
) -> None:
    async with ui() as (_reactor, client):
        accepted = await client.post(
            "/api/events",
            json={"type": "work.done", "id": "ev-42", "source": "tests", "data": {"n": 5}},
        )
        [run_id] = accepted.json()["run_ids"]
        await wait_run(store, run_id)
        page = page_of(await client.get(f"/runs/{run_id}"))
        opened = page_of(await client.get(f"/runs/{run_id}", params={"task": "second"}))
        header_response = await client.get(f"/runs/{run_id}/header")
        header = page_of(header_response)
        timeline = page_of(await client.get(f"/runs/{run_id}/timeline"))

    assert f"Run {run_id}" in page.text
    [head] = page.find("section", id="run-header")
    assert head["data-run-status"] == "succeeded"
    nodes = {n["data-task"]: n["data-status"] for n in page.find("g", class_="node")}
    assert nodes == {"first": "succeeded", "second": "succeeded"}
    rows = {r["data-task"]: r["data-status"] for r in page.find("tr", data_task=None)}
    assert rows == nodes
    # Every edge in one path, every arrowhead in another: first -> second.
    [edges] = [p for p in page.find("path", d=None) if "class" not in p]
    assert edges["d"].count("M") == 1
    [arrows] = page.find("path", class_="arrows")
    assert arrows["d"].count("M") == 1
    assert "trigger chores/work" in page.text
    assert page.find("a", href="/events/ev-42")
    assert '"n": 5' in page.text  # its params
    assert opened.find("div", class_="run-page", data_open_task="second")
    assert header.find("section", id="run-header", data_run_status="succeeded")
    assert "<html" not in header_response.text  # a fragment for htmx to swap in
    assert "attempt 1 succeeded" in timeline.text
    assert {"first", "second"} <= set(timeline.values("span", "title", class_="tl-name"))


async def test_a_task_page_and_panel_show_output_definition_attempts_and_logs(ui, store) -> None:
    async with ui() as (reactor, client):
        run_id = (await reactor.run_now("chores", {"n": 7})).id
        await wait_run(store, run_id)
        full = await client.get(f"/runs/{run_id}/tasks/second")
        panel = await client.get(f"/runs/{run_id}/tasks/second", headers={"HX-Request": "true"})
        first = page_of(await client.get(f"/runs/{run_id}/tasks/first"))

    assert full.status_code == panel.status_code == 200
    assert full.text.lstrip().startswith("<!doctype html>")
    assert not panel.text.lstrip().startswith("<!doctype")
    for response in (full, panel):
        page = Page(response.text)
        assert page.find("div", data_panel_task="second")
        assert "second 7" in page.text  # its log
        assert "echo second" in page.text  # its definition
        assert page.find("pre", class_="log")
        assert "Attempts" in page.text
    assert '"n": 7' in first.text  # its output
    # Only this task's log lines: the other task's are not in the panel.
    assert "second 7" not in first.text


async def test_a_failed_run_offers_a_repair_and_shows_the_error(ui, store) -> None:
    async with ui() as (reactor, client):
        run_id = (await reactor.run_now("broken")).id
        await wait_run(store, run_id)
        page = page_of(await client.get(f"/runs/{run_id}"))

    assert page.find("section", id="run-header", data_run_status="failed")
    nodes = {n["data-task"]: n["data-status"] for n in page.find("g", class_="node")}
    assert nodes == {"fails": "failed", "never": "upstream_failed"}
    assert "no luck" in page.text
    assert page.find("form", action=f"/ui/runs/{run_id}/repair")
    assert not page.find("form", action=f"/ui/runs/{run_id}/cancel")


async def test_a_loop_is_one_node_and_its_panel_lists_the_iterations(ui, store) -> None:
    async with ui() as (reactor, client):
        run_id = (await reactor.run_now("loop")).id
        assert (await wait_run(store, run_id)).status == "succeeded"
        page = page_of(await client.get(f"/runs/{run_id}"))
        panel = page_of(await client.get(f"/runs/{run_id}/tasks/each"))
        iteration = page_of(await client.get(f"/runs/{run_id}/tasks/each[1]"))

    nodes = {n["data-task"]: n["data-status"] for n in page.find("g", class_="node")}
    assert nodes == {"each": "succeeded", "after": "succeeded"}
    assert [r["data-task"] for r in page.find("tr", data_task=None)] == ["each", "after"]
    assert "3 iterations" in page.text
    assert not [n for n in page.values("g", "data-task") if "[" in n]
    assert "Iterations (3)" in panel.text
    assert panel.values("a", "data-task-link") == ["each[0]", "each[1]", "each[2]"]
    assert iteration.find("div", data_panel_task="each[1]")
    assert "colour green" in iteration.text


async def test_the_runs_page_pages_with_a_cursor(ui, store) -> None:
    async with ui() as (reactor, client):
        ids = [(await reactor.run_now("quick")).id for _ in range(53)]
        other = (await reactor.run_now("loop")).id
        for run_id in [*ids, other]:
            await wait_run(store, run_id)
        pages = [page_of(await client.get("/runs"))]
        while older := pages[-1].find("a", rel="next"):
            assert len(pages) < 5
            pages.append(page_of(await client.get(older[0]["href"])))
        only_quick = page_of(await client.get("/runs", params={"pipeline": "quick"}))
        bad = await client.get("/runs", params={"cursor": "0"})

    shown = [page.values("tr", "data-run") for page in pages]
    assert [len(rows) for rows in shown] == [50, 4]
    assert [r for rows in shown for r in rows] == [other, *reversed(ids)]
    assert "Newest" in pages[1].text and "Newest" not in pages[0].text
    assert only_quick.values("tr", "data-run")[:3] == list(reversed(ids))[:3]
    assert other not in only_quick.values("tr", "data-run")
    assert bad.status_code == 422


async def test_the_events_page_lists_events_and_filters_them(ui, store) -> None:
    async with ui() as (_reactor, client):
        for event in (
            {"type": "work.done", "id": "ev-1", "source": "tests", "data": {"n": 1}},
            {"type": "nobody.cares", "id": "ev-2", "source": "elsewhere"},
        ):
            assert (await client.post("/api/events", json=event)).status_code == 202
        await decided(store, "tests", "ev-1")
        await decided(store, "elsewhere", "ev-2")
        [run] = await store.list_runs(pipeline="chores", limit=5, before=None)
        await wait_run(store, run.id)
        every = page_of(await client.get("/events"))
        work = page_of(await client.get("/events", params={"type": "work.*"}))
        elsewhere = page_of(await client.get("/events", params={"source": "elsewhere"}))
        internal = page_of(await client.get("/events", params={"internal": "true"}))
        none = page_of(await client.get("/events", params={"type": "zzz.*"}))

    def ids(page: Page) -> list[str]:
        return [
            a["href"].split("?")[0].removeprefix("/events/")
            for a in page.find("a", class_="mono")
            if a["href"].startswith("/events/")
        ]

    assert ids(every) == ["ev-2", "ev-1"]  # newest first; the run's end event is internal
    assert "fired 1" in every.text and run.id in every.text
    assert "no trigger listens" in every.text
    assert ids(work) == ["ev-1"]
    assert ids(elsewhere) == ["ev-2"]
    # With Reactor's own events: the run's end and its tasks' ends.
    assert set(ids(internal)) == {"ev-1", "ev-2", run.id, f"{run.id}/first/1", f"{run.id}/second/1"}
    assert "reactor.run.succeeded" in internal.text
    assert "reactor.run.succeeded" not in every.text
    assert ids(none) == [] and "No events match these filters yet." in none.text
    [body] = every.find("tbody", id="events-body")
    assert body["data-stream"].startswith("/ui/stream/events?")


async def test_an_event_page_explains_it_per_trigger(ui, store) -> None:
    async with ui() as (_reactor, client):
        event = {"type": "work.done", "id": "ev-7", "source": "tests", "data": {"n": 3}}
        [run_id] = (await client.post("/api/events", json=event)).json()["run_ids"]
        await client.post(
            "/api/events", json={"type": "nobody.cares", "id": "ev-8", "source": "tests"}
        )
        await decided(store, "tests", "ev-7")
        await decided(store, "tests", "ev-8")
        fired = page_of(await client.get("/events/ev-7", params={"source": "tests"}))
        unsourced = page_of(await client.get("/events/ev-7"))
        ignored = page_of(await client.get("/events/ev-8"))

    assert "Event ev-7" in fired.text
    assert "Why it started a run" in fired.text
    [row] = fired.find("tr", data_trigger=None)
    assert row["data-trigger"] == "chores/work"
    assert fired.find("a", href=f"/runs/{run_id}")
    assert "work.done" in fired.text and '"n": 3' in fired.text
    assert unsourced.text == fired.text
    assert "Why it started no run" in ignored.text
    assert "No trigger listens to events of this type and source." in ignored.text


async def test_the_sensors_page_shows_each_sensor_and_its_health(ui) -> None:
    async with ui() as (reactor, client):

        def watching() -> bool:
            return any(
                s["trigger"] == "chores/nightly" and s["state"] == "watching"
                for s in reactor.sensors()
            )

        await wait_for(watching, message="the schedule sensor to watch")
        page = page_of(await client.get("/sensors"))
        fragment = await client.get("/sensors", headers={"HX-Request": "true"})

    assert page.values("tr", "data-sensor") == ["chores/nightly"]
    assert "chores/nightly" in page.text and "schedule" in page.text and "watching" in page.text
    assert fragment.status_code == 200
    assert not fragment.text.lstrip().startswith("<!doctype")
    assert Page(fragment.text).values("tr", "data-sensor") == ["chores/nightly"]


async def test_no_sensors_says_so(ui) -> None:
    async with ui(sensors=False) as (_reactor, client):
        page = page_of(await client.get("/sensors"))
    assert "No sensors are running" in page.text


async def test_static_files_are_served(ui) -> None:
    async with ui() as (_reactor, client):
        for path in (
            "/ui/static/app.css",
            "/ui/static/app.js",
            "/ui/static/vendor/htmx-2.0.11.min.js",
        ):
            response = await client.get(path)
            assert response.status_code == 200, path
            assert response.content


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/pipelines/nope", "There is no pipeline 'nope'."),
        ("/runs/nope", "There is no run 'nope'."),
        ("/runs/nope/timeline", "There is no run 'nope'."),
        ("/runs/nope/header", "There is no run 'nope'."),
        ("/runs/nope/tasks/first", "There is no run 'nope'."),
        ("/events/nope", "There is no event 'nope'."),
        ("/events/ev-1?source=elsewhere", "There is no event 'ev-1'."),
    ],
)
async def test_unknown_things_answer_404_with_a_message(ui, store, path, message) -> None:
    async with ui() as (_reactor, client):
        await client.post("/api/events", json={"type": "x.y", "id": "ev-1", "source": "tests"})
        await decided(store, "tests", "ev-1")
        response = await client.get(path)
    assert response.status_code == 404
    assert message in Page(response.text).text


async def test_an_unknown_task_of_a_known_run_answers_404(ui, store) -> None:
    async with ui() as (reactor, client):
        run_id = (await reactor.run_now("chores")).id
        await wait_run(store, run_id)
        response = await client.get(f"/runs/{run_id}/tasks/ghost")
        panel = await client.get(f"/runs/{run_id}/tasks/ghost", headers={"HX-Request": "true"})
    assert response.status_code == panel.status_code == 404
    assert f"There is no task 'ghost' in run {run_id}." in Page(response.text).text
