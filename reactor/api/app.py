"""The FastAPI application: JSON over HTTP for runs, events, pipelines and health."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from reactor.alerting.fatigue import Incident
from reactor.api.assets import asset_routes
from reactor.api.fast import Answer, BodyReader, IngressPath, answer_event, answer_hook
from reactor.backfill import BackfillError, backfill_json, parse_request
from reactor.checks import check_outcome
from reactor.durations import parse_duration
from reactor.errors import AdmissionError, StoreError
from reactor.explain import explain_event, explain_pipeline
from reactor.metrics import CONTENT_TYPE as METRICS_TYPE
from reactor.pauses import Pause
from reactor.redrive import RedriveError, UnknownEvent
from reactor.redrive import parse_request as parse_redrive
from reactor.repair import RepairError, UnknownTaskError, repair_number
from reactor.specs import INTERNAL_EVENT_PREFIXES, Schedule
from reactor.ui import mount_ui

if TYPE_CHECKING:
    from reactor.service import Reactor

__all__ = ["create_app"]

MAX_RUNS_PAGE = 10_000


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _pipeline_json(reactor: Reactor, name: str) -> dict[str, Any]:
    pipeline = reactor.pipelines[name]
    return {
        "name": pipeline.name,
        "description": pipeline.spec.description,
        "version": pipeline.version,
        "path": str(pipeline.path),
        "params": {
            k: v.model_dump(exclude_defaults=True) | {"type": v.type}
            for k, v in pipeline.params.items()
        },
        "concurrency": pipeline.spec.concurrency.model_dump(),
        "paused": _pause_json(reactor.pause_of(name)),
        "triggers": [
            {
                "id": t.id,
                "key": t.key,
                "on": t.spec.on,
                "paused": _pause_json(reactor.pause_of(name, t.id)),
            }
            for t in pipeline.triggers
        ],
        "tasks": [
            {"id": t.id, "needs": list(t.need_ids), "type": t.spec.type_key}
            for t in pipeline.tasks.values()
        ],
    }


def _pause_json(pause: Pause | None) -> dict[str, Any] | None:
    if pause is None:
        return None
    return {"paused_at": pause.paused_at.isoformat(), "actor": pause.actor}


def _pause_request(body: Any, *, resume: bool) -> tuple[str | None, bool | None] | str:
    """``(trigger, replay)`` from a pause or resume body, or what is wrong with it."""
    shape = '{"trigger"?: "id", "replay": true|false}' if resume else '{"trigger"?: "id"}'
    if body is None:
        body = {}
    if not isinstance(body, dict):
        return f"body must be an object like {shape}"
    allowed = {"trigger", "replay"} if resume else {"trigger"}
    if unknown := sorted(set(body) - allowed):
        return f"unknown field(s) {', '.join(unknown)}; body must be like {shape}"
    trigger = body.get("trigger")
    if trigger is not None and not isinstance(trigger, str):
        return "trigger: must be a trigger id (a string)"
    if not resume:
        return trigger, None
    if "replay" not in body:
        return (
            "replay: required: true replays the events received while paused,"
            " false drops them, null only resumes when there are none"
        )
    replay = body["replay"]
    if replay is not None and not isinstance(replay, bool):
        return "replay: must be true, false or null"
    return trigger, replay


_REPAIR_SHAPE = '{"tasks"?: ["id", ...], "params"?: {...}, "latest"?: true|false}'


def _repair_request(body: Any) -> tuple[list[str] | None, dict[str, Any], bool] | str:
    """``(tasks, params, latest)`` from a repair body, or what is wrong with it."""
    if not isinstance(body, dict):
        return f"body must be an object like {_REPAIR_SHAPE}"
    if unknown := sorted(set(body) - {"tasks", "params", "latest"}):
        return f"unknown field(s) {', '.join(unknown)}; body must be like {_REPAIR_SHAPE}"
    tasks = body.get("tasks")
    if tasks is not None and (
        not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks)
    ):
        return "tasks: must be a list of task ids (strings)"
    params = body.get("params") or {}
    if not isinstance(params, dict):
        return "params: must be an object of param values"
    latest = body.get("latest", False)
    if not isinstance(latest, bool):
        return "latest: must be true or false"
    return tasks, params, latest


def _no_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity, which no JSON response could carry back.
    raise ValueError(f"{name} is not a JSON value")


async def _json_body(request: Request) -> Any:
    """The parsed body; ``ValueError`` (a ``JSONDecodeError`` among them) if it is not JSON."""
    raw = await request.body()
    if not raw:
        return None
    return json.loads(raw, parse_constant=_no_constant)


def _stream_reader(request: Request) -> BodyReader:
    async def read(limit: int | None) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if limit is not None and size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    return read


def _answer(answer: Answer) -> Response:
    status, body = answer
    return Response(body, status_code=status, media_type="application/json")


class _Application(FastAPI):
    """FastAPI, except that the ingress routes are answered before its middleware and routing."""

    ingress: IngressPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.ingress is None or not await self.ingress.handled(scope, receive, send):
            await super().__call__(scope, receive, send)


def create_app(reactor: Reactor) -> FastAPI:
    app = _Application(
        title="Reactor",
        version="0.1.0",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in err['loc'][1:]) or 'request'}: {err['msg']}"
            for err in exc.errors()
        ]
        return _error(422, "; ".join(problems))

    @app.exception_handler(StoreError)
    async def store_error(_request: Request, exc: StoreError) -> JSONResponse:
        return _error(503, str(exc))

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        health = reactor.health()
        return JSONResponse(health, status_code=503 if health["status"] == "stopping" else 200)

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus text format: every ``reactor_*`` metric (docs/metrics.md)."""
        return Response(reactor.metrics.exposition(), media_type=METRICS_TYPE)

    @app.get("/api/sensors")
    async def sensors() -> list[dict[str, Any]]:
        return reactor.sensors()

    @app.get("/api/pools")
    async def pools() -> list[dict[str, Any]]:
        return reactor.pools.describe()

    @app.get("/api/dead-letters")
    async def dead_letters(
        request: Request,
        trigger: str | None = None,
        limit: int = Query(100, ge=1, le=MAX_RUNS_PAGE),
        cursor: int | None = Query(None, ge=1),
    ) -> Response:
        found = await reactor.store.dead_letters(trigger, limit=limit, before=cursor)
        headers = {}
        if len(found) == limit and found[-1].seq is not None:
            url = request.url.include_query_params(cursor=found[-1].seq)
            headers["Link"] = f'<{url}>; rel="next"'
        return JSONResponse([letter.to_json() for letter in found], headers=headers)

    @app.get("/api/audit")
    async def audit(
        request: Request,
        target: str | None = None,
        limit: int = Query(100, ge=1, le=MAX_RUNS_PAGE),
        cursor: int | None = Query(None, ge=1),
    ) -> Response:
        found = await reactor.store.audit(limit=limit, before=cursor, target=target)
        headers = {}
        if len(found) == limit and found[-1].seq is not None:
            url = request.url.include_query_params(cursor=found[-1].seq)
            headers["Link"] = f'<{url}>; rel="next"'
        return JSONResponse([entry.to_json() for entry in found], headers=headers)

    @app.get("/api/pipelines")
    async def pipelines() -> list[dict[str, Any]]:
        return [_pipeline_json(reactor, name) for name in sorted(reactor.pipelines)]

    @app.get("/api/pipelines/{name}/schedule")
    async def schedule(
        name: str, count: int = Query(10, ge=1, le=1000), after: datetime | None = None
    ) -> Response:
        pipeline = reactor.pipelines.get(name)
        if pipeline is None:
            return _error(404, f"no pipeline {name!r}")
        if after is not None and after.tzinfo is None:
            return _error(422, f"after: {after.isoformat()!r} needs a UTC offset")
        start = after or reactor.clock.now()
        triggers = []
        for trigger in pipeline.triggers:
            spec = trigger.spec
            if not isinstance(spec, Schedule):
                continue
            times = spec.upcoming(start, count)
            triggers.append(
                {
                    "trigger": trigger.key,
                    "id": trigger.id,
                    "schedule": spec.describe(),
                    "timezone": spec.timezone,
                    "fire_times": [
                        {"time": t.isoformat(), "utc": t.astimezone(UTC).isoformat()} for t in times
                    ],
                }
            )
        return JSONResponse({"pipeline": name, "after": start.isoformat(), "triggers": triggers})

    @app.post("/api/pipelines/{name}/runs", status_code=201)
    async def run_pipeline(name: str, request: Request) -> Response:
        try:
            body = await _json_body(request) or {}
        except ValueError as exc:
            return _error(400, f"body is not JSON: {exc}")
        params = body.get("params", {}) if isinstance(body, dict) else None
        if not isinstance(params, dict):
            return _error(400, 'body must be an object like {"params": {...}}')
        try:
            run = await reactor.run_now(name, params, actor=request.headers.get("x-actor", "api"))
        except AdmissionError as exc:
            if not reactor.accepting:
                return _error(503, str(exc))
            status = 404 if name not in reactor.pipelines else 422
            return _error(status, str(exc))
        return JSONResponse(run.to_json(), status_code=201)

    async def _pause_body(
        request: Request, *, resume: bool
    ) -> tuple[str | None, bool | None] | Response:
        try:
            body = await _json_body(request)
        except ValueError as exc:
            return _error(400, f"body is not JSON: {exc}")
        found = _pause_request(body, resume=resume)
        return _error(422, found) if isinstance(found, str) else found

    def _pause_status(name: str, trigger: str | None) -> int:
        """404 for an unknown pipeline or trigger (unless a pause of it is left), else 409."""
        pipeline = reactor.pipelines.get(name)
        if reactor.pause_of(name, trigger) is not None:
            return 409
        if pipeline is None or (
            trigger is not None and all(t.id != trigger for t in pipeline.triggers)
        ):
            return 404
        return 409

    @app.post("/api/pipelines/{name}/pause", status_code=201)
    async def pause_pipeline(name: str, request: Request) -> Response:
        found = await _pause_body(request, resume=False)
        if isinstance(found, Response):
            return found
        trigger, _ = found
        actor = request.headers.get("x-actor", "api")
        try:
            pause = await reactor.pause(name, trigger, actor=actor)
        except AdmissionError as exc:
            return _error(_pause_status(name, trigger), str(exc))
        return JSONResponse(pause.to_json(), status_code=201)

    @app.post("/api/pipelines/{name}/resume")
    async def resume_pipeline(name: str, request: Request) -> Response:
        found = await _pause_body(request, resume=True)
        if isinstance(found, Response):
            return found
        trigger, replay = found
        actor = request.headers.get("x-actor", "api")
        try:
            resumed = await reactor.resume(name, trigger, replay=replay, actor=actor)
        except AdmissionError as exc:
            return _error(_pause_status(name, trigger), str(exc))
        return JSONResponse(resumed.to_json())

    @app.get("/api/runs")
    async def runs(
        request: Request,
        pipeline: str | None = None,
        limit: int = Query(100, ge=1, le=MAX_RUNS_PAGE),
        cursor: int | None = Query(None, ge=1),
    ) -> Response:
        found = await reactor.store.list_runs(pipeline=pipeline, limit=limit, before=cursor)
        headers = {}
        if len(found) == limit and found[-1].seq is not None:
            url = request.url.include_query_params(cursor=found[-1].seq)
            headers["Link"] = f'<{url}>; rel="next"'
        return JSONResponse([r.to_json() for r in found], headers=headers)

    @app.get("/api/runs/{run_id}")
    async def run(run_id: str) -> Response:
        found = await reactor.store.get_run(run_id)
        if found is None:
            return _error(404, f"no run {run_id!r}")
        tasks = await reactor.store.task_runs(run_id)
        return JSONResponse(found.to_json() | {"tasks": [t.to_json() for t in tasks]})

    @app.get("/api/runs/{run_id}/logs")
    async def logs(
        run_id: str,
        after: int = Query(0, ge=0),
        limit: int = Query(1000, ge=1, le=MAX_RUNS_PAGE),
    ) -> Response:
        if await reactor.store.get_run(run_id) is None:
            return _error(404, f"no run {run_id!r}")
        lines = await reactor.store.logs(run_id, after=after, limit=limit)
        next_after = lines[-1].seq if lines else after
        return JSONResponse({"lines": [x.to_json() for x in lines], "next": next_after})

    @app.get("/api/runs/{run_id}/checks")
    async def checks(run_id: str) -> Response:
        if await reactor.store.get_run(run_id) is None:
            return _error(404, f"no run {run_id!r}")
        tasks = await reactor.store.task_runs(run_id)
        return JSONResponse(
            [
                {
                    "task_id": t.task_id,
                    **{
                        k: t.output.get(k)
                        for k in ("outcome", "passed", "severity", "observed", "expectation")
                    },
                    "message": t.output.get("message"),
                    "ended_at": t.ended_at.isoformat() if t.ended_at else None,
                }
                for t in tasks
                if check_outcome(t.output) is not None
            ]
        )

    @app.post("/api/runs/{run_id}/cancel")
    async def cancel_run(run_id: str, request: Request) -> Response:
        actor = request.headers.get("x-actor", "api")
        try:
            run = await reactor.cancel_run(run_id, actor=actor)
        except AdmissionError as exc:
            return _error(404 if await reactor.store.get_run(run_id) is None else 409, str(exc))
        return JSONResponse(run.to_json())

    @app.post("/api/runs/{run_id}/repair", status_code=202)
    async def repair_run(run_id: str, request: Request) -> Response:
        try:
            body = await _json_body(request) or {}
        except ValueError as exc:
            return _error(400, f"body is not JSON: {exc}")
        found = _repair_request(body)
        if isinstance(found, str):
            return _error(422, found)
        tasks, params, latest = found
        actor = request.headers.get("x-actor", "api")
        try:
            run, plan = await reactor.repair(
                run_id, tasks=tasks, params=params, latest=latest, actor=actor
            )
        except UnknownTaskError as exc:
            return _error(422, str(exc))
        except RepairError as exc:
            return _error(409, str(exc))
        except AdmissionError as exc:
            if not reactor.accepting:
                return _error(503, str(exc))
            return _error(404, str(exc))
        repair = {
            "number": repair_number(run.reason),
            "tasks": list(plan.chosen),
            "rerun": list(plan.reset),
        }
        return JSONResponse(run.to_json() | {"repair": repair}, status_code=202)

    @app.post("/api/runs/{run_id}/tasks/{task_id}/cancel", status_code=202)
    async def cancel_task(run_id: str, task_id: str, request: Request) -> Response:
        actor = request.headers.get("x-actor", "api")
        if await reactor.store.get_run(run_id) is None:
            return _error(404, f"no run {run_id!r}")
        try:
            await reactor.cancel_task(run_id, task_id, actor=actor)
        except AdmissionError as exc:
            return _error(409, str(exc))
        body = {"run_id": run_id, "task_id": task_id, "cancelling": True}
        return JSONResponse(body, status_code=202)

    # Alert incidents (reactor/alerting): open ones, or with ?all=true closed ones too.

    @app.get("/api/incidents")
    async def incidents(
        closed: bool = Query(False, alias="all"),
        limit: int = Query(100, ge=1, le=MAX_RUNS_PAGE),
    ) -> Response:
        found = await reactor.store.incidents(include_closed=closed, limit=limit)
        return JSONResponse({"incidents": [Incident.from_json(i).view() for i in found]})

    # Backfills: one run per logical time of a past range (reactor/backfill.py).

    @app.post("/api/backfills", status_code=201)
    async def start_backfill(request: Request) -> Response:
        try:
            body = await _json_body(request)
        except ValueError as exc:
            return _error(400, f"body is not JSON: {exc}")
        try:
            asked = parse_request(body)
        except BackfillError as exc:
            return _error(422, str(exc))
        try:
            backfill, new = await reactor.start_backfill(
                asked.pipeline,
                asked.start,
                asked.end,
                step=asked.step,
                params=asked.params,
                concurrency=asked.concurrency,
                actor=request.headers.get("x-actor", "api"),
            )
        except AdmissionError as exc:
            if not reactor.accepting:
                return _error(503, str(exc))
            return _error(404 if asked.pipeline not in reactor.pipelines else 422, str(exc))
        except BackfillError as exc:
            return _error(422, str(exc))
        runs = await reactor.backfill_runs(backfill)
        shown = backfill_json(backfill, runs, with_runs=True)
        return JSONResponse(shown, status_code=201 if new else 200)

    @app.get("/api/backfills")
    async def backfills(
        status: str | None = None, limit: int = Query(100, ge=1, le=1000)
    ) -> Response:
        found = await reactor.store.list_backfills(status=status, limit=limit)
        return JSONResponse(
            [backfill_json(b, await reactor.backfill_runs(b), with_runs=False) for b in found]
        )

    @app.get("/api/backfills/{backfill_id}")
    async def backfill(backfill_id: str) -> Response:
        found = await reactor.store.get_backfill(backfill_id)
        if found is None:
            return _error(404, f"no backfill {backfill_id!r}")
        runs = await reactor.backfill_runs(found)
        return JSONResponse(backfill_json(found, runs, with_runs=True))

    @app.post("/api/backfills/{backfill_id}/cancel")
    async def cancel_backfill(backfill_id: str, request: Request) -> Response:
        actor = request.headers.get("x-actor", "api")
        try:
            cancelled = await reactor.cancel_backfill(backfill_id, actor=actor)
        except AdmissionError as exc:
            missing = await reactor.store.get_backfill(backfill_id) is None
            return _error(404 if missing else 409, str(exc))
        runs = await reactor.backfill_runs(cancelled)
        return JSONResponse(backfill_json(cancelled, runs, with_runs=True))

    @app.get("/api/events")
    async def events(
        request: Request,
        type_pattern: str | None = Query(None, alias="type", min_length=1),
        source: str | None = Query(None, min_length=1),
        internal: bool = False,
        limit: int = Query(100, ge=1, le=MAX_RUNS_PAGE),
        cursor: int | None = Query(None, ge=1),
    ) -> Response:
        # Internal events stay hidden unless asked for, or named by the type glob
        # (``reactor.run.*``), as a trigger's glob names them.
        hidden = () if internal else INTERNAL_EVENT_PREFIXES
        excluded = [p for p in hidden if not (type_pattern or "").startswith(p)]
        found = await reactor.store.list_events(
            limit=limit,
            before=cursor,
            type_pattern=type_pattern,
            source=source,
            exclude_prefixes=excluded,
        )
        headers = {}
        if len(found) == limit:
            url = request.url.include_query_params(cursor=found[-1].seq)
            headers["Link"] = f'<{url}>; rel="next"'
        return JSONResponse([e.to_json() for e in found], headers=headers)

    # Re-drive: stored events decided again by today's triggers (reactor/redrive.py).
    @app.post("/api/events/redrive")
    async def redrive(request: Request) -> Response:
        try:
            body = await _json_body(request)
        except ValueError as exc:
            return _error(400, f"body is not JSON: {exc}")
        try:
            asked = parse_redrive(body, reactor.clock.now())
            done = await reactor.redrive(asked, actor=request.headers.get("x-actor", "api"))
        except UnknownEvent as exc:
            return _error(404, str(exc))
        except RedriveError as exc:
            return _error(422, str(exc))
        except AdmissionError as exc:
            return _error(503, str(exc))
        return JSONResponse(done.to_json())

    # Explanations: why an event fired or not, why a pipeline ran or not (reactor/explain.py).
    @app.get("/api/events/{event_id}/explain")
    async def explain_event_route(event_id: str, source: str | None = None) -> Response:
        found = await explain_event(reactor.store, reactor.pipelines, event_id, source)
        if found is None:
            where = f" from source {source!r}" if source is not None else ""
            return _error(404, f"no event {event_id!r}{where}")
        return JSONResponse(found)

    @app.get("/api/pipelines/{name}/explain")
    async def explain_pipeline_route(name: str, since: str = "1h") -> Response:
        pipeline = reactor.pipelines.get(name)
        if pipeline is None:
            known = ", ".join(sorted(reactor.pipelines)) or "none"
            return _error(404, f"no pipeline {name!r} (loaded: {known})")
        try:
            period = parse_duration(since)
        except ValueError as exc:
            return _error(422, f"since: {exc}")
        now = reactor.clock.now()
        found = await explain_pipeline(
            reactor.store, pipeline, now - timedelta(seconds=period), now
        )
        return JSONResponse(found)

    # Served by IngressPath (reactor/api/fast.py); declared here for the OpenAPI schema.
    @app.post("/api/events")
    async def publish(request: Request) -> Response:
        return _answer(
            await answer_event(reactor, request.scope["headers"], _stream_reader(request))
        )

    @app.post("/hooks/{name}")
    async def hook(name: str, request: Request) -> Response:
        scope = request.scope
        return _answer(
            await answer_hook(
                reactor, name, scope["headers"], scope["query_string"], _stream_reader(request)
            )
        )

    app.ingress = IngressPath(reactor)
    app.include_router(asset_routes(reactor))
    mount_ui(app, reactor)
    return app
