"""What an operator does from the UI: run now, pause, resume, backfill, cancel, repair.

Each action calls the service as the JSON API does, with the actor ``ui:ADDRESS`` (or
the ``X-Actor`` header). Forms post urlencoded; with htmx the answer is a redirect
header or an error fragment for the form, without script a 303 or an error page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from reactor.backfill import BackfillError, parse_request
from reactor.errors import AdmissionError
from reactor.repair import RepairError, UnknownTaskError
from reactor.ui.forms import FormError, parse_form, read_params
from reactor.ui.render import render

if TYPE_CHECKING:
    from reactor.service import Reactor

__all__ = ["action_routes", "actor_of"]


def actor_of(request: Request) -> str:
    given = request.headers.get("x-actor")
    if given:
        return given
    client = request.client.host if request.client else "unknown"
    return f"ui:{client}"


def _same_origin(request: Request) -> bool:
    """A form posted from another site (a cross-site request) is refused."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _done(request: Request, url: str) -> Response:
    if request.headers.get("hx-request"):
        return Response(status_code=200, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def _failed(request: Request, message: str, status: int = 422) -> Response:
    if request.headers.get("hx-request"):
        return HTMLResponse(render("form_error.html", message=message), status_code=status)
    back = request.headers.get("referer") or "/"
    return HTMLResponse(
        render("action_failed.html", message=message, back=back, nav=""), status_code=status
    )


async def _form(request: Request) -> dict[str, list[str]]:
    return parse_form(await request.body())


def _one(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name)
    return values[-1].strip() if values else ""


def action_routes(reactor: Reactor) -> APIRouter:
    router = APIRouter(prefix="/ui", include_in_schema=False)

    async def guard(request: Request) -> Response | None:
        if not _same_origin(request):
            return _failed(request, "refused: the form was posted from another site", 403)
        return None

    @router.post("/pipelines/{name}/run")
    async def run_now(name: str, request: Request) -> Response:
        if refused := await guard(request):
            return refused
        pipeline = reactor.pipelines.get(name)
        if pipeline is None:
            return _failed(request, f"no pipeline {name!r}", 404)
        try:
            params = read_params(pipeline.params, await _form(request))
            run = await reactor.run_now(name, params, actor=actor_of(request))
        except FormError as exc:
            return _failed(request, str(exc))
        except AdmissionError as exc:
            return _failed(request, str(exc), 503 if not reactor.accepting else 422)
        return _done(request, f"/runs/{quote(run.id)}")

    @router.post("/pipelines/{name}/pause")
    async def pause(name: str, request: Request) -> Response:
        if refused := await guard(request):
            return refused
        trigger = _one(await _form(request), "trigger") or None
        try:
            await reactor.pause(name, trigger, actor=actor_of(request))
        except AdmissionError as exc:
            return _failed(request, str(exc), 409 if name in reactor.pipelines else 404)
        return _done(request, f"/pipelines/{quote(name)}")

    @router.post("/pipelines/{name}/resume")
    async def resume(name: str, request: Request) -> Response:
        if refused := await guard(request):
            return refused
        form = await _form(request)
        trigger = _one(form, "trigger") or None
        replay = {"replay": True, "drop": False}.get(_one(form, "held"))
        try:
            await reactor.resume(name, trigger, replay=replay, actor=actor_of(request))
        except AdmissionError as exc:
            return _failed(request, str(exc), 409 if name in reactor.pipelines else 404)
        return _done(request, f"/pipelines/{quote(name)}")

    @router.post("/pipelines/{name}/backfill")
    async def backfill(name: str, request: Request) -> Response:
        if refused := await guard(request):
            return refused
        pipeline = reactor.pipelines.get(name)
        if pipeline is None:
            return _failed(request, f"no pipeline {name!r}", 404)
        form = await _form(request)
        try:
            params = read_params(pipeline.params, form)
            body: dict[str, object] = {
                "pipeline": name,
                # datetime-local fields carry no offset: parse_request reads them as UTC.
                "from": _one(form, "from"),
                "to": _one(form, "to"),
                "params": params,
            }
            if step := _one(form, "step"):
                body["step"] = step
            if concurrency := _one(form, "concurrency"):
                body["concurrency"] = _whole(concurrency, "concurrency")
            asked = parse_request(body)
            found, _ = await reactor.start_backfill(
                name,
                asked.start,
                asked.end,
                step=asked.step,
                params=asked.params,
                concurrency=asked.concurrency,
                actor=actor_of(request),
            )
        except (FormError, BackfillError) as exc:
            return _failed(request, str(exc))
        except AdmissionError as exc:
            return _failed(request, str(exc), 503 if not reactor.accepting else 422)
        return _done(request, f"/pipelines/{quote(name)}?backfill={quote(found.id)}#backfills")

    @router.post("/runs/{run_id}/cancel")
    async def cancel_run(run_id: str, request: Request) -> Response:
        if refused := await guard(request):
            return refused
        try:
            await reactor.cancel_run(run_id, actor=actor_of(request))
        except AdmissionError as exc:
            missing = await reactor.store.get_run(run_id) is None
            return _failed(request, str(exc), 404 if missing else 409)
        return _done(request, f"/runs/{quote(run_id)}")

    @router.post("/runs/{run_id}/tasks/{task_id}/cancel")
    async def cancel_task(run_id: str, task_id: str, request: Request) -> Response:
        if refused := await guard(request):
            return refused
        try:
            await reactor.cancel_task(run_id, task_id, actor=actor_of(request))
        except AdmissionError as exc:
            return _failed(request, str(exc), 409)
        return _done(request, f"/runs/{quote(run_id)}?task={quote(task_id)}")

    @router.post("/runs/{run_id}/repair")
    async def repair(run_id: str, request: Request) -> Response:
        if refused := await guard(request):
            return refused
        form = await _form(request)
        tasks = [t for t in form.get("task", []) if t] or None
        try:
            await reactor.repair(
                run_id,
                tasks=tasks,
                params={},
                latest=_one(form, "latest") == "true",
                actor=actor_of(request),
            )
        except (UnknownTaskError, RepairError) as exc:
            return _failed(request, str(exc), 409)
        except AdmissionError as exc:
            return _failed(request, str(exc), 503 if not reactor.accepting else 404)
        return _done(request, f"/runs/{quote(run_id)}")

    return router


def _whole(text: str, name: str) -> int:
    if not text.isdigit():
        raise FormError(f"{name}: {text!r} is not a whole number")
    return int(text)
