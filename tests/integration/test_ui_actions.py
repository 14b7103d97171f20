"""The web UI's forms on a real port, over both stores: run now, pause, resume, backfill,
cancel, repair; what each answers, what it does, and who is recorded as asking."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import httpx
import pytest
from helpers import processes_of, wait_for

from reactor.store import Store

from .support import wait_run
from .test_ui_pages import Page, ui_client

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

FORM = {"content-type": "application/x-www-form-urlencoded"}
EVIL = "http://evil.example"

TYPED = """
name: typed
params:
  n: {type: integer, default: 1}
  ratio: {type: number, default: 0.5}
  loud: {type: boolean, default: false}
  at: {type: datetime}
  tags: {type: list, default: []}
  size: {type: string, enum: [small, large], default: small}
triggers:
  - id: work
    on: event
    type: "work.*"
    params: {at: "2026-01-01T00:00:00Z"}
  - id: daily
    on: schedule
    cron: "0 3 * * *"
    timezone: UTC
    catchup: none
    params: {at: "{{ logical.time }}"}
tasks:
  - id: show
    shell: "echo {{ params.n }} {{ params.at }}"
"""

# The task waits for the test to open the fifo for writing: no polling, no sleep.
GATED = """
name: gated
tasks:
  - id: wait
    shell: "cat FIFO"
  - id: after
    needs: wait
    shell: echo after
  - id: aside
    shell: echo aside
"""

FLAKY = """
name: flaky
tasks:
  - id: check
    shell: "test -f MARKER"
  - id: then
    needs: check
    shell: echo then
"""


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "gate.fifo"
    os.mkfifo(path)
    return path


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "marker"


@pytest.fixture
def ui(write_pipeline, start_reactor, fifo: Path, marker: Path):
    write_pipeline("typed.yaml", TYPED)
    write_pipeline("gated.yaml", GATED.replace("FIFO", str(fifo)))
    write_pipeline("flaky.yaml", FLAKY.replace("MARKER", str(marker)))
    return lambda **settings: ui_client(start_reactor, **settings)


async def post(
    client: httpx.AsyncClient, path: str, data: object = (), **headers: str
) -> httpx.Response:
    """Post a form as a browser does, from the service's own page (its Origin)."""
    sent = {"origin": str(client.base_url).rstrip("/"), **FORM}
    sent |= {name.replace("_", "-"): value for name, value in headers.items()}
    return await client.post(path, content=str(httpx.QueryParams(data)), headers=sent)


def error_text(response: httpx.Response) -> str:
    return Page(response.text).text


async def task_running(store: Store, run_id: str, task_id: str) -> None:
    async def running() -> bool:
        tasks = {t.task_id: t.status for t in await store.task_runs(run_id)}
        return tasks.get(task_id) == "running" and bool(processes_of(run_id))

    await wait_for(running, message=f"task {task_id} of run {run_id} to run")


async def release(fifo: Path) -> None:
    """Let the gated task end: open the fifo for writing (its reader is waiting on it)."""

    def write() -> None:
        with fifo.open("w") as gate:
            gate.write("open\n")

    with anyio.fail_after(10):
        await anyio.to_thread.run_sync(write, abandon_on_cancel=True)


# Run now


async def test_run_now_starts_a_run_with_typed_params_and_redirects_to_it(ui, store) -> None:
    async with ui() as (_reactor, client):
        response = await post(
            client,
            "/ui/pipelines/typed/run",
            [
                ("param.n", "42"),
                ("param.ratio", "2.5"),
                ("param.loud", "false"),
                ("param.loud", "true"),
                ("param.at", "2026-03-04T05:06:07"),
                ("param.tags", '["a", "b"]'),
                ("param.size", "large"),
            ],
        )
        assert response.status_code == 303
        location = response.headers["location"]
        assert location.startswith("/runs/")
        run = await wait_run(store, location.removeprefix("/runs/"))
        page = await client.get(location)

    assert run.status == "succeeded"
    assert run.params == {
        "n": 42,
        "ratio": 2.5,
        "loud": True,
        "at": "2026-03-04T05:06:07+00:00",
        "tags": ["a", "b"],
        "size": "large",
    }
    assert page.status_code == 200


async def test_empty_fields_run_with_the_defaults(ui, store) -> None:
    async with ui() as (_reactor, client):
        response = await post(
            client,
            "/ui/pipelines/typed/run",
            {"param.n": "", "param.ratio": "", "param.at": "2026-01-01T00:00", "param.tags": ""},
        )
        assert response.status_code == 303
        run = await wait_run(store, response.headers["location"].removeprefix("/runs/"))
    assert run.params == {
        "n": 1,
        "ratio": 0.5,
        "loud": False,
        "at": "2026-01-01T00:00:00+00:00",
        "tags": [],
        "size": "small",
    }


async def test_with_htmx_the_answer_is_a_redirect_header(ui, store) -> None:
    async with ui() as (_reactor, client):
        response = await post(
            client, "/ui/pipelines/typed/run", {"param.at": "2026-01-01T00:00"}, hx_request="true"
        )
        assert response.status_code == 200
        location = response.headers["hx-redirect"]
        assert location.startswith("/runs/")
        assert (await wait_run(store, location.removeprefix("/runs/"))).status == "succeeded"


@pytest.mark.parametrize("htmx", [False, True])
async def test_a_bad_param_value_is_422_with_the_message_and_starts_nothing(
    ui, store, htmx: bool
) -> None:
    headers = {"hx_request": "true"} if htmx else {}
    async with ui() as (_reactor, client):
        bad_number = await post(
            client,
            "/ui/pipelines/typed/run",
            {"param.n": "many", "param.at": "2026-01-01T00:00", "param.tags": "[oops"},
            **headers,
        )
        missing = await post(client, "/ui/pipelines/typed/run", {}, **headers)
        not_a_choice = await post(
            client,
            "/ui/pipelines/typed/run",
            {"param.at": "2026-01-01T00:00", "param.size": "huge"},
            **headers,
        )
    assert bad_number.status_code == 422
    assert (
        "n: 'many' is not a whole number; tags: not JSON (Expecting value at line 1)"
        in error_text(bad_number)
    )
    # The service's own checks of the params give their message too.
    assert missing.status_code == 422
    assert "typed: param 'at' is required (datetime)" in error_text(missing)
    assert not_a_choice.status_code == 422
    assert "'huge' is not one of 'small', 'large'" in error_text(not_a_choice)
    if htmx:
        # A fragment for the form's result, not a page.
        assert bad_number.text.startswith('<span class="error-text" role="alert">')
    else:
        assert bad_number.text.lstrip().startswith("<!doctype html>")
    assert await store.list_runs(pipeline=None, limit=10, before=None) == []


async def test_an_unknown_pipeline_is_404(ui) -> None:
    async with ui() as (_reactor, client):
        response = await post(client, "/ui/pipelines/nope/run", {})
        paused = await post(client, "/ui/pipelines/nope/pause", {})
        resumed = await post(client, "/ui/pipelines/nope/resume", {"held": "drop"})
        backfill = await post(
            client,
            "/ui/pipelines/nope/backfill",
            {"from": "2026-01-01T00:00", "to": "2026-01-02T00:00"},
        )
    assert response.status_code == 404
    assert "no pipeline 'nope'" in error_text(response)
    assert paused.status_code == resumed.status_code == backfill.status_code == 404
    assert "unknown pipeline 'nope'" in error_text(paused)
    assert "unknown pipeline 'nope'" in error_text(resumed)
    assert "no pipeline 'nope'" in error_text(backfill)


# Pause and resume


async def test_pause_then_resume_dropping_the_held_events(ui, store) -> None:
    async with ui() as (reactor, client):
        paused = await post(client, "/ui/pipelines/typed/pause", {})
        again = await post(client, "/ui/pipelines/typed/pause", {})
        page = await client.get("/pipelines/typed")
        listed = await client.get("/")
        held = await client.post(
            "/api/events", json={"type": "work.x", "id": "held-1", "source": "tests"}
        )

        async def decided() -> bool:
            stored = await store.get_event("tests", "held-1")
            return stored is not None and stored.evaluated_at is not None

        await wait_for(decided, message="the held event to be decided")
        undecided = await post(client, "/ui/pipelines/typed/resume", {"held": ""})
        still = reactor.pause_of("typed")
        resumed = await post(client, "/ui/pipelines/typed/resume", {"held": "drop"})
        after = reactor.pause_of("typed")
        pauses = await store.pauses()
        runs = await store.list_runs(pipeline="typed", limit=10, before=None)

    assert paused.status_code == 303
    assert paused.headers["location"] == "/pipelines/typed"
    assert again.status_code == 409
    assert "pipeline typed is paused already (paused by ui:127.0.0.1 since" in error_text(again)
    assert "Paused by ui:127.0.0.1" in Page(page.text).text
    assert Page(listed.text).find("tr", data_pipeline="typed")
    assert "paused" in Page(listed.text).text
    assert held.json()["run_ids"] == []
    assert undecided.status_code == 409
    assert "1 event(s) were received while pipeline typed was paused" in error_text(undecided)
    assert still is not None and still.actor == "ui:127.0.0.1"
    assert resumed.status_code == 303
    assert after is None
    assert pauses == []
    assert runs == []  # dropped: nothing started


async def test_pausing_one_trigger_records_the_x_actor(ui, store) -> None:
    async with ui() as (reactor, client):
        paused = await post(
            client, "/ui/pipelines/typed/pause", {"trigger": "work"}, x_actor="alice"
        )
        unknown = await post(client, "/ui/pipelines/typed/pause", {"trigger": "ghost"})
        row = [p for p in await store.pauses() if p.key == "typed/work"]
        page = await client.get("/pipelines/typed")
        resumed = await post(
            client, "/ui/pipelines/typed/resume", {"trigger": "work", "held": "replay"}
        )
        left = reactor.pause_of("typed", "work")

    assert paused.status_code == 303
    assert [p.actor for p in row] == ["alice"]
    assert unknown.status_code == 409
    assert "pipeline typed has no trigger 'ghost' (its triggers: work, daily)" in error_text(
        unknown
    )
    # The trigger's row offers to resume it.
    assert Page(page.text).find("input", type="hidden", name="trigger", value="work")
    assert resumed.status_code == 303
    assert left is None


# Backfill


async def test_a_backfill_from_the_form_is_stored_with_its_actor(ui, store) -> None:
    async with ui() as (_reactor, client):
        response = await post(
            client,
            "/ui/pipelines/typed/backfill",
            {
                "from": "2026-01-01T00:00",
                "to": "2026-01-04T00:00",
                "step": "",
                "concurrency": "2",
                "param.n": "7",
                "param.at": "",
            },
        )
        [backfill] = await store.list_backfills(limit=10)

        async def done() -> bool:
            found = await store.get_backfill(backfill.id)
            return found is not None and found.status != "running"

        await wait_for(done, timeout=30, message="the backfill to end")
        runs = await store.list_runs(pipeline="typed", limit=10, before=None)
        page = Page((await client.get("/pipelines/typed")).text)

    assert response.status_code == 303
    assert response.headers["location"] == f"/pipelines/typed?backfill={backfill.id}#backfills"
    assert (backfill.pipeline, backfill.actor, backfill.concurrency) == ("typed", "ui:127.0.0.1", 2)
    assert backfill.start.isoformat() == "2026-01-01T00:00:00+00:00"
    assert backfill.end.isoformat() == "2026-01-04T00:00:00+00:00"
    assert backfill.step is None  # the daily schedule's ticks
    assert backfill.total == 3
    assert backfill.params == {"n": 7}
    assert sorted(r.status for r in runs) == ["succeeded"] * 3
    assert sorted((r.params["n"], r.params["at"]) for r in runs) == [
        (7, f"2026-01-0{day}T03:00:00+00:00") for day in (1, 2, 3)
    ]
    assert backfill.id in page.text


async def test_a_backfill_takes_dates_offsets_and_a_step(ui, store) -> None:
    # A browser without datetime-local inputs sends what was typed: a date, or an offset.
    async with ui() as (_reactor, client):
        response = await post(
            client,
            "/ui/pipelines/typed/backfill",
            {"from": "2026-01-01", "to": "2026-01-02T00:00:00-06:00", "step": "6h"},
            hx_request="true",
        )
        [backfill] = await store.list_backfills(limit=10)
    assert response.status_code == 200
    assert response.headers["hx-redirect"] == (f"/pipelines/typed?backfill={backfill.id}#backfills")
    assert backfill.start.isoformat() == "2026-01-01T00:00:00+00:00"
    assert backfill.end.isoformat() == "2026-01-02T00:00:00-06:00"
    assert (backfill.step, backfill.total) == (6 * 3600, 5)
    assert backfill.concurrency == 4  # the service's default, the field left out


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"from": "2026-01-04T00:00", "to": "2026-01-01T00:00"},
            "from (2026-01-04T00:00:00+00:00) must be before to (2026-01-01T00:00:00+00:00)",
        ),
        ({"from": "", "to": "2026-01-01T00:00"}, "from is required (a string)"),
        ({"from": "yesterday", "to": "2026-01-01T00:00"}, "from 'yesterday' is not a date or time"),
        (
            {"from": "2026-01-01T00:00", "to": "2026-01-02T00:00", "concurrency": "two"},
            "concurrency: 'two' is not a whole number",
        ),
        (
            {"from": "2026-01-01T00:00", "to": "2026-01-02T00:00", "concurrency": "0"},
            "concurrency must be between 1 and",
        ),
        (
            {"from": "2026-01-01T00:00", "to": "2026-01-02T00:00", "param.n": "x"},
            "n: 'x' is not a whole number",
        ),
    ],
)
async def test_a_bad_backfill_is_422_with_the_message(ui, store, fields, message) -> None:
    async with ui() as (_reactor, client):
        response = await post(client, "/ui/pipelines/typed/backfill", fields)
        backfills = await store.list_backfills(limit=10)
    assert response.status_code == 422
    assert message in error_text(response)
    assert backfills == []


# Cancel


async def test_cancelling_a_running_run(ui, store, fifo: Path) -> None:
    async with ui() as (reactor, client):
        run = await reactor.run_now("gated")
        await task_running(store, run.id, "wait")
        response = await post(client, f"/ui/runs/{run.id}/cancel")
        ended = await store.get_run(run.id)
        again = await post(client, f"/ui/runs/{run.id}/cancel")
        unknown = await post(client, "/ui/runs/nope/cancel")
        tasks = {t.task_id: t.status for t in await store.task_runs(run.id)}

    assert response.status_code == 303
    assert response.headers["location"] == f"/runs/{run.id}"
    assert ended is not None
    assert (ended.status, ended.reason) == ("cancelled", "cancelled by ui:127.0.0.1")
    assert tasks["wait"] == "cancelled"
    assert tasks["after"] == "cancelled"
    assert again.status_code == 409
    assert f"run {run.id} has ended already (cancelled)" in error_text(again)
    assert unknown.status_code == 404
    assert "no run 'nope'" in error_text(unknown)


async def test_cancelling_one_task_records_the_x_actor(ui, store, fifo: Path) -> None:
    async with ui() as (reactor, client):
        run = await reactor.run_now("gated")
        await task_running(store, run.id, "wait")
        page = Page((await client.get(f"/runs/{run.id}/tasks/wait")).text)
        response = await post(client, f"/ui/runs/{run.id}/tasks/wait/cancel", x_actor="bob")
        ended = await wait_run(store, run.id)
        tasks = {t.task_id: t for t in await store.task_runs(run.id)}
        over = await post(client, f"/ui/runs/{run.id}/tasks/wait/cancel")

    assert page.find("form", action=f"/ui/runs/{run.id}/tasks/wait/cancel")
    assert response.status_code == 303
    assert response.headers["location"] == f"/runs/{run.id}?task=wait"
    assert (tasks["wait"].status, tasks["wait"].error) == ("cancelled", "cancelled by bob")
    assert tasks["aside"].status == "succeeded"
    assert (ended.status, ended.reason) == ("cancelled", "task wait cancelled by bob")
    assert over.status_code == 409
    assert f"run {run.id} is not running here" in error_text(over)


async def test_a_released_gate_lets_the_run_succeed(ui, store, fifo: Path) -> None:
    # The gate the cancel tests hold shut does open: they cancel a task that is waiting.
    async with ui() as (reactor, client):
        run = await reactor.run_now("gated")
        await task_running(store, run.id, "wait")
        await release(fifo)
        ended = await wait_run(store, run.id)
        late = await post(client, f"/ui/runs/{run.id}/cancel")
    assert ended.status == "succeeded"
    assert late.status_code == 409


# Repair


async def test_repairing_a_failed_run(ui, store, marker: Path) -> None:
    async with ui() as (reactor, client):
        run = await reactor.run_now("flaky")
        failed = await wait_run(store, run.id)
        page = Page((await client.get(f"/runs/{run.id}")).text)
        marker.write_text("here")
        response = await post(client, f"/ui/runs/{run.id}/repair", x_actor="carol")

        async def repaired() -> bool:
            found = await store.get_run(run.id)
            return found is not None and found.status == "succeeded"

        await wait_for(repaired, message="the repaired run to succeed")
        ended = await store.get_run(run.id)
        again = await post(client, f"/ui/runs/{run.id}/repair")
        unknown = await post(client, "/ui/runs/nope/repair")

    assert failed.status == "failed"
    assert page.find("form", action=f"/ui/runs/{run.id}/repair")
    assert response.status_code == 303
    assert response.headers["location"] == f"/runs/{run.id}"
    assert ended is not None
    assert ended.reason == "repair 1 by carol: tasks check, then"
    assert again.status_code == 409
    assert f"run {run.id}: nothing to repair: every task succeeded or was skipped" in error_text(
        again
    )
    assert unknown.status_code == 404
    assert "no run 'nope'" in error_text(unknown)


async def test_repairing_named_tasks_with_the_latest_version(ui, store, marker: Path) -> None:
    async with ui() as (reactor, client):
        run = await reactor.run_now("flaky")
        await wait_run(store, run.id)
        unknown_task = await post(client, f"/ui/runs/{run.id}/repair", {"task": "ghost"})
        marker.write_text("here")
        response = await post(
            client,
            f"/ui/runs/{run.id}/repair",
            [("task", "check"), ("task", ""), ("latest", "true")],
            hx_request="true",
        )

        async def repaired() -> bool:
            found = await store.get_run(run.id)
            return found is not None and found.status == "succeeded"

        await wait_for(repaired, message="the repaired run to succeed")
        ended = await store.get_run(run.id)

    assert unknown_task.status_code == 409
    assert f"run {run.id}: no task 'ghost' in the pipeline (tasks: check, then)" in error_text(
        unknown_task
    )
    assert response.status_code == 200
    assert response.headers["hx-redirect"] == f"/runs/{run.id}"
    assert ended is not None and ended.reason == "repair 1 by ui:127.0.0.1: tasks check"


# Cross-site posts


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/ui/pipelines/typed/run", {"param.at": "2026-01-01T00:00"}),
        ("/ui/pipelines/typed/pause", {}),
        ("/ui/pipelines/typed/resume", {"held": "drop"}),
        ("/ui/pipelines/typed/backfill", {"from": "2026-01-01T00:00", "to": "2026-01-04T00:00"}),
        ("/ui/runs/RUN/cancel", {}),
        ("/ui/runs/RUN/tasks/wait/cancel", {}),
        ("/ui/runs/RUN/repair", {}),
    ],
)
async def test_a_post_from_another_site_is_refused(ui, store, fifo, path, fields) -> None:
    async with ui() as (reactor, client):
        run = await reactor.run_now("gated")
        await task_running(store, run.id, "wait")
        response = await post(client, path.replace("RUN", run.id), fields, origin=EVIL)
        still = await store.get_run(run.id)
        runs = await store.list_runs(pipeline=None, limit=10, before=None)
        backfills = await store.list_backfills(limit=10)
        paused = reactor.pause_of("typed")
        await release(fifo)
        ended = await wait_run(store, run.id)

    assert response.status_code == 403
    assert "refused: the form was posted from another site" in error_text(response)
    assert still is not None and still.status == "running"
    assert ended.status == "succeeded"
    assert [r.id for r in runs] == [run.id]
    assert backfills == []
    assert paused is None


async def test_a_post_without_an_origin_header_is_accepted(ui, store) -> None:
    # Not a browser (curl, a script): nothing cross-site to refuse.
    async with ui() as (_reactor, client):
        response = await client.post(
            "/ui/pipelines/typed/pause", content="", headers={**FORM, "x-actor": "script"}
        )
        pauses = await store.pauses()
    assert response.status_code == 303
    assert [p.actor for p in pauses] == ["script"]


@pytest.mark.parametrize(
    "origin", ["null", "http://127.0.0.1", "http://localhost:{port}", "http://127.0.0.1:1"]
)
async def test_an_origin_that_is_not_this_host_and_port_is_refused(ui, store, origin) -> None:
    async with ui() as (reactor, client):
        response = await post(
            client,
            "/ui/pipelines/typed/run",
            {"param.at": "2026-01-01T00:00"},
            origin=origin.format(port=reactor.http_port),
        )
        runs = await store.list_runs(pipeline=None, limit=10, before=None)
    assert response.status_code == 403
    assert runs == []
