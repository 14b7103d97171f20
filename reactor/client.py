"""A client for a running Reactor: publish events, start runs and wait for them over HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar, cast
from urllib.parse import quote

import anyio
import httpx

from reactor.errors import ClientError
from reactor.store.records import FINAL_RUN_STATES

__all__ = ["DEFAULT_URL", "AsyncClient", "Client", "Published"]

DEFAULT_URL = "http://127.0.0.1:8080"
# The CloudEvents attributes publish() sets from its own arguments.
_CORE_ATTRIBUTES = frozenset(
    {"specversion", "id", "source", "type", "subject", "time", "data", "datacontenttype"}
)

T = TypeVar("T")


@dataclass(frozen=True)
class Published:
    """What publishing an event did: its id, the runs it started, whether it was a repeat.

    For a duplicate (same ``source`` and ``id`` as an event already published) the
    event id and run ids are the original's and no new run was started.
    """

    event_id: str
    run_ids: tuple[str, ...]
    duplicate: bool = False


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    ok: tuple[int, ...] = (200,)
    params: Mapping[str, Any] | None = None
    content: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        return {"params": self.params, "content": self.content, "headers": self.headers}


# One operation, written once for both clients: a generator that yields a request (and is
# sent its response) or a number of seconds to sleep, and returns the operation's result.
_Operation = Generator["_Request | float", "httpx.Response | None", T]


def _call(request: _Request) -> _Operation[Any]:
    response = yield request
    return _answer(request, cast("httpx.Response", response))


def _answer(request: _Request, response: httpx.Response) -> Any:
    """The response's JSON if its status is one the request expects; else a ClientError."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code not in request.ok:
        error = body.get("error") if isinstance(body, dict) else None
        message = error if isinstance(error, str) else response.text.strip()
        raise ClientError(message or response.reason_phrase, status=response.status_code)
    if body is None:
        raise ClientError(
            f"{request.method} {request.path} answered {response.status_code} with a body"
            " that is not JSON; is this address a Reactor?"
        )
    return body


def _publish(
    type_: str,
    data: Any,
    *,
    source: str,
    id_: str | None,
    subject: str | None,
    time_: datetime | None,
    extensions: Mapping[str, Any] | None,
) -> _Operation[Published]:
    event: dict[str, Any] = {"specversion": "1.0", "type": type_, "source": source}
    for name in sorted(extensions or {}):
        if name in _CORE_ATTRIBUTES:
            raise ClientError(
                f"extension {name!r} is a CloudEvents attribute; pass it as its own argument"
            )
    event.update(extensions or {})
    optional = {"id": id_, "subject": subject, "time": time_.isoformat() if time_ else None}
    event.update({k: v for k, v in optional.items() if v is not None})
    if data is not None:
        event["data"] = data
    try:
        content = json.dumps(event, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise ClientError(f"the event is not JSON: {exc}") from exc
    body = yield from _call(
        _Request(
            "POST",
            "/api/events",
            ok=(200, 202),
            content=content,
            headers={"content-type": "application/cloudevents+json"},
        )
    )
    return Published(
        event_id=body["event_id"],
        run_ids=tuple(body["run_ids"]),
        duplicate=body.get("duplicate") is True,
    )


def _run(pipeline: str, params: Mapping[str, Any] | None) -> _Operation[dict[str, Any]]:
    try:
        content = json.dumps({"params": dict(params or {})}, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ClientError(f"the params are not JSON: {exc}") from exc
    path = f"/api/pipelines/{quote(pipeline, safe='')}/runs"
    headers = {"content-type": "application/json"}
    run: dict[str, Any] = yield from _call(
        _Request("POST", path, ok=(201,), content=content, headers=headers)
    )
    return run


def _runs(pipeline: str | None, limit: int) -> _Operation[list[dict[str, Any]]]:
    query: dict[str, Any] = {"limit": limit}
    if pipeline is not None:
        query["pipeline"] = pipeline
    runs: list[dict[str, Any]] = yield from _call(_Request("GET", "/api/runs", params=query))
    return runs


def _events(
    type_: str | None, source: str | None, internal: bool, limit: int, before: int | None
) -> _Operation[list[dict[str, Any]]]:
    query: dict[str, Any] = {"limit": limit, "internal": "true" if internal else "false"}
    optional = {"type": type_, "source": source, "cursor": before}
    query.update({k: v for k, v in optional.items() if v is not None})
    events: list[dict[str, Any]] = yield from _call(_Request("GET", "/api/events", params=query))
    return events


def _cancel(run_id: str, task: str | None, actor: str | None) -> _Operation[dict[str, Any]]:
    path = f"/api/runs/{quote(run_id, safe='')}"
    if task is not None:
        path += f"/tasks/{quote(task, safe='')}"
    headers = {"x-actor": actor} if actor else {}
    answer: dict[str, Any] = yield from _call(
        _Request("POST", f"{path}/cancel", ok=(200, 202), headers=headers)
    )
    return answer


def _repair(
    run_id: str,
    tasks: Sequence[str] | None,
    params: Mapping[str, Any] | None,
    latest: bool,
    actor: str | None,
) -> _Operation[dict[str, Any]]:
    body: dict[str, Any] = {"latest": latest}
    if tasks is not None:
        body["tasks"] = list(tasks)
    if params:
        body["params"] = dict(params)
    headers = {"content-type": "application/json"} | ({"x-actor": actor} if actor else {})
    answer: dict[str, Any] = yield from _call(
        _Request(
            "POST",
            f"/api/runs/{quote(run_id, safe='')}/repair",
            ok=(202,),
            content=json.dumps(body).encode(),
            headers=headers,
        )
    )
    return answer


def _pause(
    pipeline: str, trigger: str | None, replay: bool | None, actor: str | None, *, resume: bool
) -> _Operation[dict[str, Any]]:
    body: dict[str, Any] = {"trigger": trigger} if trigger is not None else {}
    if resume:
        body["replay"] = replay
    path = f"/api/pipelines/{quote(pipeline, safe='')}/{'resume' if resume else 'pause'}"
    headers = {"content-type": "application/json"} | ({"x-actor": actor} if actor else {})
    answer: dict[str, Any] = yield from _call(
        _Request(
            "POST",
            path,
            ok=(200,) if resume else (201,),
            content=json.dumps(body).encode(),
            headers=headers,
        )
    )
    return answer


def _backfill(
    pipeline: str,
    start: datetime | str,
    end: datetime | str,
    step: str | float | None,
    params: Mapping[str, Any] | None,
    concurrency: int | None,
    actor: str | None,
) -> _Operation[dict[str, Any]]:
    body: dict[str, Any] = {
        "pipeline": pipeline,
        "from": start.isoformat() if isinstance(start, datetime) else start,
        "to": end.isoformat() if isinstance(end, datetime) else end,
    }
    optional = {"step": step, "params": dict(params) if params else None}
    body.update({k: v for k, v in optional.items() if v is not None})
    if concurrency is not None:
        body["concurrency"] = concurrency
    try:
        content = json.dumps(body, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ClientError(f"the params are not JSON: {exc}") from exc
    headers = {"content-type": "application/json"} | ({"x-actor": actor} if actor else {})
    answer: dict[str, Any] = yield from _call(
        _Request("POST", "/api/backfills", ok=(200, 201), content=content, headers=headers)
    )
    return answer


def _redrive(
    event_id: str | None,
    source: str | None,
    type_: str | None,
    start: datetime | str | None,
    end: datetime | str | None,
    pipeline: str | None,
    trigger: str | None,
    dry_run: bool,
    limit: int | None,
    actor: str | None,
    dead_letter: int | None = None,
    decode: str | None = None,
) -> _Operation[dict[str, Any]]:
    def text(moment: datetime | str | None) -> str | None:
        return moment.isoformat() if isinstance(moment, datetime) else moment

    fields = {
        "id": event_id,
        "source": source,
        "type": type_,
        "from": text(start),
        "to": text(end),
        "pipeline": pipeline,
        "trigger": trigger,
        "limit": limit,
        "dead_letter": dead_letter,
        "decode": decode,
    }
    body: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
    body["dry_run"] = dry_run
    headers = {"content-type": "application/json"} | ({"x-actor": actor} if actor else {})
    answer: dict[str, Any] = yield from _call(
        _Request("POST", "/api/events/redrive", content=json.dumps(body).encode(), headers=headers)
    )
    return answer


def _backfills(status: str | None, limit: int) -> _Operation[list[dict[str, Any]]]:
    query: dict[str, Any] = {"limit": limit} | ({"status": status} if status else {})
    found: list[dict[str, Any]] = yield from _call(_Request("GET", "/api/backfills", params=query))
    return found


def _get_backfill(backfill_id: str) -> _Operation[dict[str, Any]]:
    found: dict[str, Any] = yield from _call(
        _Request("GET", f"/api/backfills/{quote(backfill_id, safe='')}")
    )
    return found


def _cancel_backfill(backfill_id: str, actor: str | None) -> _Operation[dict[str, Any]]:
    headers = {"x-actor": actor} if actor else {}
    path = f"/api/backfills/{quote(backfill_id, safe='')}/cancel"
    answer: dict[str, Any] = yield from _call(_Request("POST", path, headers=headers))
    return answer


def _get_run(run_id: str) -> _Operation[dict[str, Any]]:
    run: dict[str, Any] = yield from _call(_Request("GET", f"/api/runs/{quote(run_id, safe='')}"))
    return run


def _wait_run(run_id: str, timeout: float, interval: float) -> _Operation[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        run = yield from _get_run(run_id)
        if run["status"] in FINAL_RUN_STATES:
            return run
        left = deadline - time.monotonic()
        if left <= 0:
            raise ClientError(f"run {run_id} is still {run['status']} after {timeout:g}s")
        yield min(interval, left)


def _sensors() -> _Operation[list[dict[str, Any]]]:
    sensors: list[dict[str, Any]] = yield from _call(_Request("GET", "/api/sensors"))
    return sensors


def _explain_event(event_id: str, source: str | None) -> _Operation[dict[str, Any]]:
    path = f"/api/events/{quote(event_id, safe='')}/explain"
    query = {"source": source} if source is not None else None
    found: dict[str, Any] = yield from _call(_Request("GET", path, params=query))
    return found


def _explain_pipeline(pipeline: str, since: str) -> _Operation[dict[str, Any]]:
    path = f"/api/pipelines/{quote(pipeline, safe='')}/explain"
    found: dict[str, Any] = yield from _call(_Request("GET", path, params={"since": since}))
    return found


def _health() -> _Operation[dict[str, Any]]:
    # A stopping service answers 503 with its health.
    health: dict[str, Any] = yield from _call(_Request("GET", "/healthz", ok=(200, 503)))
    return health


@contextmanager
def _reaching(url: str, timeout: float) -> Iterator[None]:
    """Turn httpx's errors into ClientError, naming the service's address."""
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise ClientError(
            f"cannot reach Reactor at {url} ({exc}); is `reactor serve` running?"
        ) from exc
    except httpx.TimeoutException as exc:
        raise ClientError(f"Reactor at {url} did not answer within {timeout:g}s") from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise ClientError(f"talking to Reactor at {url} failed: {exc}") from exc


class _Base:
    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


class Client(_Base):
    """A blocking client of a running Reactor (``reactor serve``); use it with ``with``."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(url, timeout)
        with _reaching(url, timeout):
            self._http = httpx.Client(base_url=url, timeout=timeout, headers=headers)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _drive(self, operation: _Operation[T]) -> T:
        try:
            step = next(operation)
            while True:
                if isinstance(step, _Request):
                    with _reaching(self.url, self.timeout):
                        response = self._http.request(step.method, step.path, **step.options())
                    step = operation.send(response)
                else:
                    time.sleep(step)
                    step = operation.send(None)
        except StopIteration as done:
            return cast("T", done.value)

    def publish(
        self,
        type: str,
        data: Any = None,
        *,
        source: str = "reactor/client",
        id: str | None = None,
        subject: str | None = None,
        time: datetime | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> Published:
        """Publish an event (CloudEvents); returns its id and the runs it started."""
        return self._drive(
            _publish(
                type,
                data,
                source=source,
                id_=id,
                subject=subject,
                time_=time,
                extensions=extensions,
            )
        )

    def run(self, pipeline: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Start a run of ``pipeline`` now; returns the queued run."""
        return self._drive(_run(pipeline, params))

    def runs(self, pipeline: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` runs (of ``pipeline`` only, if given), newest first."""
        return self._drive(_runs(pipeline, limit))

    def events(
        self,
        *,
        type: str | None = None,
        source: str | None = None,
        internal: bool = False,
        limit: int = 100,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` stored events, newest first: of a ``type`` glob (``*`` any
        run of characters) and a ``source`` if given, Reactor's own run, task, trigger and
        check events only if ``internal`` (or named by ``type``); ``before``: only those
        with a smaller ``seq`` (the last ``seq`` of the previous page)."""
        return self._drive(_events(type, source, internal, limit, before))

    def get_run(self, run_id: str) -> dict[str, Any]:
        """One run with its tasks."""
        return self._drive(_get_run(run_id))

    def cancel(
        self, run_id: str, *, task: str | None = None, actor: str | None = None
    ) -> dict[str, Any]:
        """Cancel a run (answers the run once it ended) or one of its running tasks
        (answers ``{run_id, task_id, cancelling}``); ``actor`` is recorded as who asked."""
        return self._drive(_cancel(run_id, task, actor))

    def repair(
        self,
        run_id: str,
        *,
        tasks: Sequence[str] | None = None,
        params: Mapping[str, Any] | None = None,
        latest: bool = False,
        actor: str | None = None,
    ) -> dict[str, Any]:
        """Repair a finished run: rerun its not-succeeded tasks (or ``tasks``) and all their
        descendants, keeping the others' outputs; answers the run, running again, with
        ``repair: {number, tasks, rerun}`` (see docs/repair.md)."""
        return self._drive(_repair(run_id, tasks, params, latest, actor))

    def pause(
        self, pipeline: str, *, trigger: str | None = None, actor: str | None = None
    ) -> dict[str, Any]:
        """Pause a pipeline (or its trigger ``trigger``): events are recorded as ``paused``
        and start nothing until :meth:`resume`; answers ``{key, paused_at, actor}``."""
        return self._drive(_pause(pipeline, trigger, None, actor, resume=False))

    def resume(
        self,
        pipeline: str,
        *,
        replay: bool | None,
        trigger: str | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        """Resume a paused pipeline (or trigger): ``replay`` true starts the runs the events
        held while paused would have started, false drops them, ``None`` resumes only if
        there are none. Answers ``{key, replayed, dropped, run_ids, ...}``."""
        return self._drive(_pause(pipeline, trigger, replay, actor, resume=True))

    def redrive(
        self,
        event_id: str | None = None,
        *,
        source: str | None = None,
        type: str | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        pipeline: str | None = None,
        trigger: str | None = None,
        dry_run: bool = False,
        limit: int | None = None,
        actor: str | None = None,
        dead_letter: int | None = None,
        decode: str | None = None,
    ) -> dict[str, Any]:
        """Decide stored events again with today's triggers: one (``event_id``, with
        ``source`` when several sources used the id) or those of ``type`` (a glob) received
        from ``start`` (a time, or a duration back from now like ``"2h"``) to ``end``.
        ``pipeline``/``trigger`` restrict the triggers decided again. A trigger that started
        a run for an event before starts nothing: the answer names the existing run.
        ``dead_letter`` (a seq) re-drives the event a dead letter stands for instead,
        rebuilt as its sensor builds it, its value read with ``decode`` (default: the
        trigger's own); the event is stored under its usual id, so re-driving the same
        letter again starts no second run.
        Answers ``{count, new_run_ids, existing_run_ids, events: [...]}``."""
        return self._drive(
            _redrive(
                event_id,
                source,
                type,
                start,
                end,
                pipeline,
                trigger,
                dry_run,
                limit,
                actor,
                dead_letter,
                decode,
            )
        )

    def backfill(
        self,
        pipeline: str,
        start: datetime | str,
        end: datetime | str,
        *,
        step: str | float | None = None,
        params: Mapping[str, Any] | None = None,
        concurrency: int | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        """Start a backfill of ``pipeline``: one run per logical time in ``[start, end)``
        (its schedule's ticks, or every ``step``: ``"1d"`` or seconds). The same backfill
        again answers the existing one and starts nothing. Answers the backfill with its
        ``counts`` per run state and its ``runs``."""
        return self._drive(_backfill(pipeline, start, end, step, params, concurrency, actor))

    def backfills(self, *, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Backfills, newest first, each with its ``counts`` per run state."""
        return self._drive(_backfills(status, limit))

    def get_backfill(self, backfill_id: str) -> dict[str, Any]:
        """One backfill with its counts and runs."""
        return self._drive(_get_backfill(backfill_id))

    def cancel_backfill(self, backfill_id: str, *, actor: str | None = None) -> dict[str, Any]:
        """Cancel a running backfill and its queued and running runs; answers it once
        they ended."""
        return self._drive(_cancel_backfill(backfill_id, actor))

    def wait_run(
        self, run_id: str, *, timeout: float = 60.0, interval: float = 0.2
    ) -> dict[str, Any]:
        """Poll the run until it succeeded, failed or was cancelled; returns it."""
        return self._drive(_wait_run(run_id, timeout, interval))

    def health(self) -> dict[str, Any]:
        """The service's health (``status`` is ``ok`` when it accepts work)."""
        return self._drive(_health())

    def sensors(self) -> list[dict[str, Any]]:
        """Each sensor's state, counts, lag, cursor and last error."""
        return self._drive(_sensors())

    def explain_event(self, event_id: str, source: str | None = None) -> dict[str, Any]:
        """Why the event fired or did not fire each trigger (the first stored with that id,
        unless ``source`` says which)."""
        return self._drive(_explain_event(event_id, source))

    def explain_pipeline(self, pipeline: str, since: str = "1h") -> dict[str, Any]:
        """Why ``pipeline`` ran or did not over the last ``since`` (a duration: 30m, 1h)."""
        return self._drive(_explain_pipeline(pipeline, since))


class AsyncClient(_Base):
    """The same client for async code; use it with ``async with``."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(url, timeout)
        with _reaching(url, timeout):
            self._http = httpx.AsyncClient(base_url=url, timeout=timeout, headers=headers)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _drive(self, operation: _Operation[T]) -> T:
        try:
            step = next(operation)
            while True:
                if isinstance(step, _Request):
                    with _reaching(self.url, self.timeout):
                        response = await self._http.request(
                            step.method, step.path, **step.options()
                        )
                    step = operation.send(response)
                else:
                    await anyio.sleep(step)
                    step = operation.send(None)
        except StopIteration as done:
            return cast("T", done.value)

    async def publish(
        self,
        type: str,
        data: Any = None,
        *,
        source: str = "reactor/client",
        id: str | None = None,
        subject: str | None = None,
        time: datetime | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> Published:
        """Publish an event (CloudEvents); returns its id and the runs it started."""
        return await self._drive(
            _publish(
                type,
                data,
                source=source,
                id_=id,
                subject=subject,
                time_=time,
                extensions=extensions,
            )
        )

    async def run(self, pipeline: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Start a run of ``pipeline`` now; returns the queued run."""
        return await self._drive(_run(pipeline, params))

    async def runs(self, pipeline: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` runs (of ``pipeline`` only, if given), newest first."""
        return await self._drive(_runs(pipeline, limit))

    async def events(
        self,
        *,
        type: str | None = None,
        source: str | None = None,
        internal: bool = False,
        limit: int = 100,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` stored events, newest first: see :meth:`Client.events`."""
        return await self._drive(_events(type, source, internal, limit, before))

    async def get_run(self, run_id: str) -> dict[str, Any]:
        """One run with its tasks."""
        return await self._drive(_get_run(run_id))

    async def cancel(
        self, run_id: str, *, task: str | None = None, actor: str | None = None
    ) -> dict[str, Any]:
        """Cancel a run or one of its running tasks (see :meth:`Client.cancel`)."""
        return await self._drive(_cancel(run_id, task, actor))

    async def repair(
        self,
        run_id: str,
        *,
        tasks: Sequence[str] | None = None,
        params: Mapping[str, Any] | None = None,
        latest: bool = False,
        actor: str | None = None,
    ) -> dict[str, Any]:
        """Repair a finished run (see :meth:`Client.repair`)."""
        return await self._drive(_repair(run_id, tasks, params, latest, actor))

    async def pause(
        self, pipeline: str, *, trigger: str | None = None, actor: str | None = None
    ) -> dict[str, Any]:
        """Pause a pipeline or one of its triggers (see :meth:`Client.pause`)."""
        return await self._drive(_pause(pipeline, trigger, None, actor, resume=False))

    async def resume(
        self,
        pipeline: str,
        *,
        replay: bool | None,
        trigger: str | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        """Resume a paused pipeline or trigger (see :meth:`Client.resume`)."""
        return await self._drive(_pause(pipeline, trigger, replay, actor, resume=True))

    async def redrive(
        self,
        event_id: str | None = None,
        *,
        source: str | None = None,
        type: str | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        pipeline: str | None = None,
        trigger: str | None = None,
        dry_run: bool = False,
        limit: int | None = None,
        actor: str | None = None,
        dead_letter: int | None = None,
        decode: str | None = None,
    ) -> dict[str, Any]:
        """Decide stored events again (see :meth:`Client.redrive`)."""
        return await self._drive(
            _redrive(
                event_id,
                source,
                type,
                start,
                end,
                pipeline,
                trigger,
                dry_run,
                limit,
                actor,
                dead_letter,
                decode,
            )
        )

    async def backfill(
        self,
        pipeline: str,
        start: datetime | str,
        end: datetime | str,
        *,
        step: str | float | None = None,
        params: Mapping[str, Any] | None = None,
        concurrency: int | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        """Start a backfill (see :meth:`Client.backfill`)."""
        return await self._drive(_backfill(pipeline, start, end, step, params, concurrency, actor))

    async def backfills(
        self, *, status: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Backfills, newest first, each with its ``counts`` per run state."""
        return await self._drive(_backfills(status, limit))

    async def get_backfill(self, backfill_id: str) -> dict[str, Any]:
        """One backfill with its counts and runs."""
        return await self._drive(_get_backfill(backfill_id))

    async def cancel_backfill(
        self, backfill_id: str, *, actor: str | None = None
    ) -> dict[str, Any]:
        """Cancel a running backfill (see :meth:`Client.cancel_backfill`)."""
        return await self._drive(_cancel_backfill(backfill_id, actor))

    async def wait_run(
        self,
        run_id: str,
        *,
        timeout: float = 60.0,  # noqa: ASYNC109 (the same arguments as Client.wait_run)
        interval: float = 0.2,
    ) -> dict[str, Any]:
        """Poll the run until it succeeded, failed or was cancelled; returns it."""
        return await self._drive(_wait_run(run_id, timeout, interval))

    async def health(self) -> dict[str, Any]:
        """The service's health (``status`` is ``ok`` when it accepts work)."""
        return await self._drive(_health())

    async def sensors(self) -> list[dict[str, Any]]:
        """Each sensor's state, counts, lag, cursor and last error."""
        return await self._drive(_sensors())

    async def explain_event(self, event_id: str, source: str | None = None) -> dict[str, Any]:
        """Why the event fired or did not fire each trigger (the first stored with that id,
        unless ``source`` says which)."""
        return await self._drive(_explain_event(event_id, source))

    async def explain_pipeline(self, pipeline: str, since: str = "1h") -> dict[str, Any]:
        """Why ``pipeline`` ran or did not over the last ``since`` (a duration: 30m, 1h)."""
        return await self._drive(_explain_pipeline(pipeline, since))
