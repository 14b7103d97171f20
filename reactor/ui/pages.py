"""The UI's pages: pipelines, a pipeline, runs, a run and its tasks, events, sensors."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from reactor.explain import explain_event
from reactor.specs import INTERNAL_EVENT_PREFIXES, Schedule
from reactor.store.base import StoredEvent
from reactor.store.records import RunRecord
from reactor.ui.forms import fields_for
from reactor.ui.render import render
from reactor.ui.run_view import RunView, run_view, task_view

if TYPE_CHECKING:
    from reactor.pipelines import Pipeline
    from reactor.service import Reactor

__all__ = ["event_key", "event_row", "page_routes"]

#: Last runs drawn as squares per pipeline on the pipelines page.
LAST_RUNS = 12
RUNS_PAGE = 50
EVENTS_PAGE = 100
LOG_LINES_READ = 20_000


def html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status)


def not_found(what: str) -> HTMLResponse:
    return html(render("not_found.html", what=what, nav=""), 404)


def event_key(event_source: str, event_id: str) -> str:
    """A stable DOM id for an event (ids are unique per source only)."""
    digest = hashlib.blake2b(f"{event_source}\0{event_id}".encode(), digest_size=8)
    return "ev-" + digest.hexdigest()


def outcome_summary(outcome: list[dict[str, Any]] | None) -> dict[str, Any]:
    if outcome is None:
        return {"evaluated": False, "fired": 0, "candidates": 0, "runs": []}
    fired = [d for d in outcome if d.get("fired")]
    return {
        "evaluated": True,
        "fired": len(fired),
        "candidates": len(outcome),
        "runs": [d["run_id"] for d in fired if d.get("run_id")],
    }


def event_row(stored: StoredEvent | None, **live: Any) -> str:
    """One row of the events table, for a stored event or a live one (event, outcome)."""
    if stored is not None:
        event, outcome, received = stored.event, stored.outcome, stored.received_at
    else:
        event, outcome, received = live["event"], live["outcome"], None
    return render(
        "event_row.html",
        event=event,
        key=event_key(event.source, event.id),
        received=received or event.time,
        summary=outcome_summary(outcome),
    )


def _next_fire(pipeline: Pipeline, now: datetime) -> datetime | None:
    times = [
        upcoming[0]
        for trigger in pipeline.triggers
        if isinstance(trigger.spec, Schedule) and (upcoming := trigger.spec.upcoming(now, 1))
    ]
    return min(times, default=None)


def _trigger_summary(pipeline: Pipeline) -> list[dict[str, Any]]:
    shown = []
    for trigger in pipeline.triggers:
        spec = trigger.spec
        what = spec.describe() if isinstance(spec, Schedule) else ""
        if not what:
            details = spec.model_dump(mode="json", exclude_defaults=True, exclude={"on", "id"})
            what = ", ".join(f"{k}: {v}" for k, v in details.items() if not isinstance(v, dict))
        shown.append({"id": trigger.id, "key": trigger.key, "on": spec.on, "what": what})
    return shown


def page_routes(reactor: Reactor) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    async def pipelines_overview() -> list[dict[str, Any]]:
        now = reactor.clock.now()
        rows = []
        for name in sorted(reactor.pipelines):
            pipeline = reactor.pipelines[name]
            runs = await reactor.store.list_runs(pipeline=name, limit=LAST_RUNS, before=None)
            rows.append(
                {
                    "pipeline": pipeline,
                    "runs": list(reversed(runs)),
                    "last": runs[0] if runs else None,
                    "next_fire": _next_fire(pipeline, now),
                    "paused": reactor.pause_of(name),
                    "paused_triggers": [
                        t.id for t in pipeline.triggers if reactor.pause_of(name, t.id)
                    ],
                    "triggers": _trigger_summary(pipeline),
                }
            )
        return rows

    @router.get("/")
    async def pipelines_page() -> Response:
        rows = await pipelines_overview()
        return html(render("pipelines.html", rows=rows, nav="pipelines"))

    @router.get("/pipelines/{name}")
    async def pipeline_page(name: str) -> Response:
        pipeline = reactor.pipelines.get(name)
        if pipeline is None:
            return not_found(f"pipeline {name!r}")
        now = reactor.clock.now()
        runs = await reactor.store.list_runs(pipeline=name, limit=RUNS_PAGE, before=None)
        backfills = [
            b for b in await reactor.store.list_backfills(limit=100) if b.pipeline == name
        ][:10]
        schedules = [
            {"id": t.id, "describe": t.spec.describe(), "next": t.spec.upcoming(now, 3)}
            for t in pipeline.triggers
            if isinstance(t.spec, Schedule)
        ]
        return html(
            render(
                "pipeline.html",
                pipeline=pipeline,
                fields=fields_for(pipeline.params),
                triggers=_trigger_summary(pipeline),
                paused=reactor.pause_of(name),
                trigger_pauses={t.id: reactor.pause_of(name, t.id) for t in pipeline.triggers},
                runs=runs,
                backfills=backfills,
                schedules=schedules,
                has_schedule=bool(schedules),
                now=now,
                nav="pipelines",
            )
        )

    @router.get("/runs")
    async def runs_page(
        pipeline: str | None = None, cursor: int | None = Query(None, ge=1)
    ) -> Response:
        runs = await reactor.store.list_runs(
            pipeline=pipeline or None, limit=RUNS_PAGE, before=cursor
        )
        older = runs[-1].seq if len(runs) == RUNS_PAGE else None
        return html(
            render(
                "runs.html",
                runs=runs,
                pipeline=pipeline or "",
                pipelines=sorted(reactor.pipelines),
                older=older,
                cursor=cursor,
                now=reactor.clock.now(),
                nav="runs",
            )
        )

    async def load_run(run_id: str) -> RunRecord | None:
        return await reactor.store.get_run(run_id)

    async def load_view(
        run_id: str, *, attempts: bool = True, all_rows: bool = False
    ) -> RunView | None:
        run = await load_run(run_id)
        if run is None:
            return None
        pipeline = await reactor.pipeline_of(run)
        records = await reactor.store.task_runs(run_id)
        tried = await reactor.store.attempts(run_id) if attempts else []
        now = reactor.clock.now()
        return run_view(run, pipeline, records, tried, now, all_rows=all_rows)

    @router.get("/runs/{run_id}")
    async def run_page(run_id: str, task: str | None = None) -> Response:
        view = await load_view(run_id)
        if view is None:
            return not_found(f"run {run_id!r}")
        return html(render("run.html", view=view, open_task=task, nav="runs"))

    async def run_part(run_id: str, template: str, **how: bool) -> Response:
        view = await load_view(run_id, **how)
        if view is None:
            return not_found(f"run {run_id!r}")
        return html(render(template, view=view))

    @router.get("/runs/{run_id}/timeline")
    async def run_timeline(run_id: str, all: bool = False) -> Response:
        return await run_part(run_id, "run_timeline.html", all_rows=all)

    @router.get("/runs/{run_id}/tasks-table")
    async def run_tasks(run_id: str, all: bool = False) -> Response:
        return await run_part(run_id, "run_tasks.html", all_rows=all)

    @router.get("/runs/{run_id}/header")
    async def run_header(run_id: str) -> Response:
        return await run_part(run_id, "run_header.html", attempts=False)

    @router.get("/runs/{run_id}/tasks/{task_id}")
    async def task_panel(run_id: str, task_id: str, request: Request) -> Response:
        run = await load_run(run_id)
        if run is None:
            return not_found(f"run {run_id!r}")
        pipeline = await reactor.pipeline_of(run)
        records = await reactor.store.task_runs(run_id)
        attempts = await reactor.store.attempts(run_id)
        logs = await reactor.store.logs(run_id, after=0, limit=LOG_LINES_READ, task_id=task_id)
        view = task_view(run, pipeline, task_id, records, attempts, logs, reactor.clock.now())
        if view is None:
            return not_found(f"task {task_id!r} in run {run_id}")
        if request.headers.get("hx-request"):
            return html(render("task_panel.html", task=view))
        return html(render("task.html", task=view, nav="runs"))

    @router.get("/events")
    async def events_page(
        type: str | None = None,
        source: str | None = None,
        internal: bool = False,
        cursor: int | None = Query(None, ge=1),
    ) -> Response:
        found = await reactor.store.list_events(
            limit=EVENTS_PAGE,
            before=cursor,
            type_pattern=type or None,
            source=source or None,
            exclude_prefixes=() if internal else INTERNAL_EVENT_PREFIXES,
        )
        older = found[-1].seq if len(found) == EVENTS_PAGE else None
        return html(
            render(
                "events.html",
                rows=[event_row(s) for s in found],
                type=type or "",
                source=source or "",
                internal=internal,
                older=older,
                cursor=cursor,
                nav="events",
            )
        )

    @router.get("/events/{event_id}")
    async def event_page(event_id: str, source: str | None = None) -> Response:
        explained = await explain_event(reactor.store, reactor.pipelines, event_id, source)
        if explained is None:
            return not_found(f"event {event_id!r}")
        return html(render("event.html", explained=explained, nav="events"))

    @router.get("/sensors")
    async def sensors_page(request: Request) -> Response:
        template = "sensors_table.html" if request.headers.get("hx-request") else "sensors.html"
        return html(render(template, sensors=reactor.sensors(), nav="sensors"))

    return router
