"""The HTTP API on a real port: health, pipelines, runs (paged), logs, events, runs on demand."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import httpx
import pytest

from reactor.service import Reactor

from .support import wait_run

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

STEPS = """
def ok(n=0):
    return {"n": n}


def boom():
    raise RuntimeError("no luck")


def not_json():
    return {"mean": float("nan"), "top": float("inf"), "low": float("-inf"), "n": 1.5}
"""

WORK = """
name: chores
description: Does the work.
params:
  n: {{type: integer, default: 0}}
triggers:
  - on: event
    type: "work.*"
    params: {{n: "{{{{ event.data.n }}}}"}}
tasks:
  - id: first
    python: {module}:ok
    args: {{n: "{{{{ params.n }}}}"}}
  - id: second
    needs: [first]
    shell: "echo second {{{{ tasks.first.output.n }}}}"
"""

OTHER = """
name: other
tasks:
  - id: fails
    python: {module}:boom
"""

ODD = """
name: odd
tasks:
  - id: numbers
    python: {module}:not_json
"""


@pytest.fixture
def api(write_pipeline, write_module, start_reactor):
    """``async with api() as (reactor, client)``: the service with its API on a free port."""
    module = write_module(STEPS)
    write_pipeline("work.yaml", WORK.format(module=module))
    write_pipeline("other.yaml", OTHER.format(module=module))
    write_pipeline("odd.yaml", ODD.format(module=module))

    @asynccontextmanager
    async def serve() -> AsyncIterator[tuple[Reactor, httpx.AsyncClient]]:
        async with start_reactor(http=("127.0.0.1", 0)) as reactor:
            assert reactor.http_port
            base = f"http://127.0.0.1:{reactor.http_port}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                yield reactor, client

    return serve


def is_iso_with_offset(text: str | None) -> bool:
    assert text is not None
    return datetime.fromisoformat(text).utcoffset() is not None


async def test_a_second_service_in_the_same_process_answers(api) -> None:
    # The first service's listening socket was closed under the event loop, which then
    # never watched the next socket given the same descriptor: the second API hung.
    for _ in range(3):
        async with api() as (_reactor, client):
            health = await client.get("/healthz", timeout=5)
            assert health.status_code == 200


async def test_health_and_pipelines(api) -> None:
    async with api() as (_reactor, client):
        health = await client.get("/healthz")
        pipelines = await client.get("/api/pipelines")

    assert health.status_code == 200
    assert health.json() == {
        "status": "ok",
        "pipelines": 3,
        "active_runs": 0,
        "queued_runs": 0,
        "sensors": {},
    }
    assert pipelines.status_code == 200
    listed = pipelines.json()
    assert [p["name"] for p in listed] == ["chores", "odd", "other"]
    work = listed[0]
    assert work["description"] == "Does the work."
    assert work["params"] == {"n": {"type": "integer", "default": 0}}
    assert work["concurrency"] == {"max_active_runs": 16, "on_overlap": "queue"}
    assert work["paused"] is None
    assert work["triggers"] == [
        {"id": "event", "key": "chores/event", "on": "event", "paused": None}
    ]
    assert work["tasks"] == [
        {"id": "first", "needs": [], "type": "python"},
        {"id": "second", "needs": ["first"], "type": "shell"},
    ]
    assert len(work["version"]) == 16


async def test_runs_are_listed_newest_first_and_the_link_header_walks_every_page(
    api, store
) -> None:
    async with api() as (reactor, client):
        created = [(await reactor.run_now("chores", {"n": i})).id for i in range(23)]
        failed = (await reactor.run_now("other")).id
        for run_id in [*created, failed]:
            await wait_run(store, run_id)

        first = await client.get("/api/runs", params={"limit": 10})
        pages = [first]
        while "next" in pages[-1].links:
            pages.append(await client.get(pages[-1].links["next"]["url"]))
        everything = await client.get("/api/runs")
        only_work = await client.get("/api/runs", params={"pipeline": "chores", "limit": 100})
        only_other = await client.get("/api/runs", params={"pipeline": "other"})
        nothing = await client.get("/api/runs", params={"pipeline": "nope"})

    assert all(page.status_code == 200 for page in pages)
    assert [len(page.json()) for page in pages] == [10, 10, 4]
    assert 'rel="next"' in first.headers["link"]
    walked = [run["id"] for page in pages for run in page.json()]
    newest_first = [failed, *reversed(created)]
    assert walked == newest_first
    assert [run["id"] for run in everything.json()] == newest_first
    assert "link" not in everything.headers
    assert [run["id"] for run in only_work.json()] == list(reversed(created))
    assert [(r["id"], r["status"]) for r in only_other.json()] == [(failed, "failed")]
    assert nothing.json() == []

    run = everything.json()[-1]
    assert set(run) >= {
        "id",
        "pipeline",
        "status",
        "params",
        "trigger",
        "event_ids",
        "created_at",
        "started_at",
        "ended_at",
    }
    assert (run["pipeline"], run["status"], run["params"]) == ("chores", "succeeded", {"n": 0})
    assert (run["trigger"], run["event_ids"]) == (None, [])
    for key in ("created_at", "started_at", "ended_at"):
        assert is_iso_with_offset(run[key]), run[key]


async def test_a_page_size_that_divides_the_runs_ends_with_an_empty_page(api, store) -> None:
    async with api() as (reactor, client):
        ids = [(await reactor.run_now("chores")).id for _ in range(4)]
        for run_id in ids:
            await wait_run(store, run_id)
        pages = [await client.get("/api/runs", params={"limit": 2})]
        while "next" in pages[-1].links:
            pages.append(await client.get(pages[-1].links["next"]["url"]))

    assert [len(p.json()) for p in pages] == [2, 2, 0]
    assert [r["id"] for p in pages for r in p.json()] == list(reversed(ids))


@pytest.mark.parametrize("query", [{"limit": 0}, {"limit": 10_001}, {"cursor": "x"}])
async def test_bad_runs_queries_are_refused(api, query) -> None:
    async with api() as (_reactor, client):
        response = await client.get("/api/runs", params=query)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/json"


async def test_one_run_with_its_tasks_and_logs(api, store) -> None:
    async with api() as (reactor, client):
        run_id = (await reactor.run_now("chores", {"n": 3})).id
        await wait_run(store, run_id)
        detail = await client.get(f"/api/runs/{run_id}")
        logs = await client.get(f"/api/runs/{run_id}/logs")
        rest = await client.get(f"/api/runs/{run_id}/logs", params={"after": logs.json()["next"]})
        partial = await client.get(f"/api/runs/{run_id}/logs", params={"limit": 1})

    assert detail.status_code == 200
    body = detail.json()
    assert (body["id"], body["status"], body["params"]) == (run_id, "succeeded", {"n": 3})
    tasks = body["tasks"]
    assert [(t["task_id"], t["status"], t["attempts"]) for t in tasks] == [
        ("first", "succeeded", 1),
        ("second", "succeeded", 1),
    ]
    assert tasks[0]["output"] == {"n": 3}
    assert tasks[1]["output"] == "second 3"
    for task in tasks:
        assert is_iso_with_offset(task["started_at"]) and is_iso_with_offset(task["ended_at"])

    assert logs.status_code == 200
    lines = logs.json()["lines"]
    shell_lines = [(x["stream"], x["line"]) for x in lines if x["task_id"] == "second"]
    assert shell_lines == [("stdout", "second 3")]
    assert all(is_iso_with_offset(x["time"]) for x in lines)
    assert logs.json()["next"] == lines[-1]["seq"]
    assert rest.json() == {"lines": [], "next": logs.json()["next"]}
    assert len(partial.json()["lines"]) == 1


async def test_unknown_runs_answer_404_with_a_json_error(api) -> None:
    async with api() as (_reactor, client):
        run = await client.get("/api/runs/does-not-exist")
        logs = await client.get("/api/runs/does-not-exist/logs")

    assert run.status_code == 404
    assert run.json() == {"error": "no run 'does-not-exist'"}
    assert logs.status_code == 404
    assert logs.json() == {"error": "no run 'does-not-exist'"}


async def test_publishing_an_event_answers_202_with_its_runs_and_a_duplicate_200(
    api, store
) -> None:
    event = {"specversion": "1.0", "type": "work.requested", "source": "tests", "id": "e-1"}
    async with api() as (_reactor, client):
        accepted = await client.post(
            "/api/events",
            content=json.dumps(event | {"data": {"n": 5}}),
            headers={"content-type": "application/cloudevents+json"},
        )
        duplicate = await client.post("/api/events", json=event | {"data": {"n": 6}})
        unmatched = await client.post("/api/events", json={"type": "nobody.cares"})
        charset = await client.post(
            "/api/events",
            content=json.dumps({"type": "work.again", "data": {"n": 1}}),
            headers={"content-type": "application/json; charset=utf-8"},
        )
        [run_id] = accepted.json()["run_ids"]
        run = await wait_run(store, run_id)
        await wait_run(store, charset.json()["run_ids"][0])

    assert accepted.status_code == 202
    assert accepted.json() == {"event_id": "e-1", "run_ids": [run_id]}
    assert (run.params, run.trigger, run.event_ids) == ({"n": 5}, "chores/event", ["e-1"])
    assert duplicate.status_code == 200
    assert duplicate.json() == {"event_id": "e-1", "run_ids": [run_id], "duplicate": True}
    assert unmatched.status_code == 202
    assert unmatched.json()["run_ids"] == []
    # id and source may be left out: they are filled in.
    stored = await store.find_event(unmatched.json()["event_id"])
    assert stored is not None and stored.event.source == "reactor/api"
    assert charset.status_code == 202
    runs = await store.list_runs(pipeline="chores", limit=10, before=None)
    assert len(runs) == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "body is not JSON: "),
        ("", "an event must be a JSON object"),
        ("[1, 2]", "an event must be a JSON object"),
        ('{"source": "x"}', "'type' is required and must be a non-empty string"),
        ('{"type": ""}', "'type' is required and must be a non-empty string"),
        ('{"type": "a", "specversion": "0.3"}', "specversion '0.3' is not supported; use '1.0'"),
        ('{"type": "a", "time": "yesterday"}', "'time' 'yesterday' is not an RFC 3339 timestamp"),
        ('{"type": "work.x", "data": {"n": NaN}}', "body is not JSON: NaN is not a JSON value"),
        ('{"type": "work.x", "data": -Infinity}', "body is not JSON: -Infinity is not a JSON"),
        (b'{"type": "work.\xff"}', "body is not JSON: 'utf-8' codec can't decode byte 0xff"),
    ],
)
async def test_bad_events_answer_400_with_the_message(api, store, body, message) -> None:
    async with api() as (_reactor, client):
        response = await client.post(
            "/api/events", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)
    assert await store.list_runs(pipeline=None, limit=10, before=None) == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
async def test_events_of_another_content_type_answer_415(api, content_type) -> None:
    async with api() as (_reactor, client):
        response = await client.post(
            "/api/events",
            content=b'{"type": "work.x"}',
            headers={"content-type": content_type} if content_type else {},
        )
    assert response.status_code == 415
    assert response.json() == {
        "error": "send the event as application/cloudevents+json or application/json"
        " (CloudEvents structured mode)"
    }


async def test_running_a_pipeline_on_demand(api, store) -> None:
    async with api() as (_reactor, client):
        created = await client.post("/api/pipelines/chores/runs", json={"params": {"n": 9}})
        no_body = await client.post("/api/pipelines/chores/runs")
        unknown = await client.post("/api/pipelines/nope/runs", json={})
        bad = await client.post("/api/pipelines/chores/runs", json={"params": {"n": "many"}})
        extra = await client.post("/api/pipelines/chores/runs", json={"params": {"m": 1}})
        not_json = await client.post(
            "/api/pipelines/chores/runs",
            content="{",
            headers={"content-type": "application/json"},
        )
        not_object = await client.post("/api/pipelines/chores/runs", json={"params": [1]})
        run = await wait_run(store, created.json()["id"])
        await wait_run(store, no_body.json()["id"])

    assert created.status_code == 201
    assert created.json()["pipeline"] == "chores"
    assert created.json()["params"] == {"n": 9}
    assert (run.status, run.params) == ("succeeded", {"n": 9})
    assert no_body.status_code == 201 and no_body.json()["params"] == {"n": 0}
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "unknown pipeline 'nope' (known: chores, odd, other)"}
    assert bad.status_code == 422
    assert bad.json()["error"].startswith("chores: param 'n': expected integer, got 'many'")
    assert extra.status_code == 422
    assert extra.json() == {"error": "chores: unknown param 'm' (declared: n)"}
    assert not_json.status_code == 400
    assert not_json.json()["error"].startswith("body is not JSON: ")
    assert not_object.status_code == 400
    assert not_object.json() == {"error": 'body must be an object like {"params": {...}}'}


async def test_outputs_that_json_cannot_carry_are_stored_as_null(api, store) -> None:
    async with api() as (reactor, client):
        run_id = (await reactor.run_now("odd")).id
        await wait_run(store, run_id)
        detail = await client.get(f"/api/runs/{run_id}")
        listing = await client.get("/api/runs")

    assert detail.status_code == 200, detail.text
    [task] = detail.json()["tasks"]
    assert (task["status"], task["output"]) == (
        "succeeded",
        {"mean": None, "top": None, "low": None, "n": 1.5},
    )
    assert listing.status_code == 200
