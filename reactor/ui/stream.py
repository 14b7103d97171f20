"""Server-Sent Events for the pages: a run's task changes, all runs, events, a log tail.

Each stream subscribes to the hub first and then sends the current state, so no
change falls between the page being rendered and its stream being opened.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Protocol

import anyio
from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse

from reactor.dag import FINAL_TASK_STATES
from reactor.events import Event
from reactor.specs import INTERNAL_EVENT_PREFIXES
from reactor.store.records import FINAL_RUN_STATES, LogLine
from reactor.ui.hub import EVENTS, RUNS, LiveHub, Message, run_message, run_topic, task_message
from reactor.ui.pages import EVENTS_PAGE, event_row
from reactor.ui.run_view import iteration_of

if TYPE_CHECKING:
    from reactor.service import Reactor

__all__ = ["stream_routes"]

#: A comment line this often keeps proxies from closing an idle stream.
KEEPALIVE = 15.0
#: How often a log tail reads new lines while its task runs.
LOG_POLL = 0.25
#: How often a log tail looks at the store for the task's end (it may run elsewhere).
LOG_STATUS_EVERY = 2.0
LOG_BATCH = 1000


def sse(kind: str, data: Any) -> str:
    text = data if isinstance(data, str) else json.dumps(data, default=str)
    lines = "".join(f"data: {line}\n" for line in text.split("\n"))
    return f"event: {kind}\n{lines}\n"


def _respond(body: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


class _Receiver(Protocol):
    async def receive(self) -> Message: ...


async def _relay(receive: _Receiver, first: list[str]) -> AsyncIterator[str]:
    for chunk in first:
        yield chunk
    while True:
        with anyio.move_on_after(KEEPALIVE):
            try:
                kind, payload = await receive.receive()
            except anyio.EndOfStream:
                # Fell too far behind: the browser reconnects and starts from the state.
                return
            yield sse(kind, payload)
            continue
        yield ": keepalive\n\n"


def _log_json(line: LogLine) -> dict[str, Any]:
    return {
        "seq": line.seq,
        "attempt": line.attempt,
        "stream": line.stream,
        "time": line.time.isoformat(),
        "line": line.line,
    }


def stream_routes(reactor: Reactor, hub: LiveHub) -> APIRouter:
    router = APIRouter(prefix="/ui/stream", include_in_schema=False)

    @router.get("/runs")
    async def all_runs() -> Response:
        async def body() -> AsyncIterator[str]:
            async with hub.subscribe(RUNS) as receive:
                async for chunk in _relay(receive, [sse("hello", {})]):
                    yield chunk

        return _respond(body())

    @router.get("/runs/{run_id}")
    async def one_run(run_id: str) -> Response:
        async def body() -> AsyncIterator[str]:
            async with hub.subscribe(run_topic(run_id)) as receive:
                run = await reactor.store.get_run(run_id)
                if run is None:
                    yield sse("gone", {"run_id": run_id})
                    return
                tasks = await reactor.store.task_runs(run_id)
                snapshot = [
                    task_message(t, "")[1] for t in tasks if iteration_of(t.task_id) is None
                ]
                first = [sse("snapshot", {"run": run_message(run)[1], "tasks": snapshot})]
                async for chunk in _relay(_Skipping(receive), first):
                    yield chunk

        return _respond(body())

    @router.get("/events")
    async def events(
        type: str | None = None, source: str | None = None, internal: bool = False
    ) -> Response:
        # As the store's list_events reads it: ``*`` is any run of characters, the rest
        # only itself (fnmatch would also read ``?`` and ``[...]``, and disagree with the page).
        typed = re.compile(".*".join(map(re.escape, type.split("*"))), re.S) if type else None

        def shown(event: Event) -> bool:
            if not internal and event.type.startswith(INTERNAL_EVENT_PREFIXES):
                return False
            if source and event.source != source:
                return False
            return typed is None or typed.fullmatch(event.type) is not None

        async def body() -> AsyncIterator[str]:
            async with hub.subscribe(EVENTS) as receive:
                recent = await reactor.store.list_events(
                    limit=EVENTS_PAGE,
                    type_pattern=type or None,
                    source=source or None,
                    exclude_prefixes=() if internal else INTERNAL_EVENT_PREFIXES,
                )
                # Oldest first, so the page prepends them in the order they came.
                first = [sse("event", {"html": event_row(s)}) for s in reversed(recent)]
                async for chunk in _relay(_Rendered(receive, shown), first):
                    yield chunk

        return _respond(body())

    @router.get("/runs/{run_id}/tasks/{task_id}/logs")
    async def logs(run_id: str, task_id: str, after: int = Query(0, ge=0)) -> Response:
        async def ended() -> bool:
            run = await reactor.store.get_run(run_id)
            if run is None or run.status in FINAL_RUN_STATES:
                return True
            found = [t for t in await reactor.store.task_runs(run_id) if t.task_id == task_id]
            return bool(found) and found[0].status in FINAL_TASK_STATES

        async def body() -> AsyncIterator[str]:
            last = after
            async with hub.subscribe(run_topic(run_id)) as receive:
                done = await ended()
                settling = False
                since_status = 0.0
                while True:
                    lines = await reactor.store.logs(
                        run_id, after=last, limit=LOG_BATCH, task_id=task_id
                    )
                    if lines:
                        last = lines[-1].seq or last
                        yield sse("lines", [_log_json(line) for line in lines])
                        if len(lines) == LOG_BATCH:
                            continue
                    if done:
                        yield sse("end", {"after": last})
                        return
                    with anyio.move_on_after(LOG_POLL):
                        try:
                            kind, payload = await receive.receive()
                        except anyio.EndOfStream:
                            return
                        # Observers hear of an end before its last log lines are
                        # written (they are written with the task's state): the store
                        # says when the end, and so every line, is there.
                        if kind == "run" and payload["status"] in FINAL_RUN_STATES:
                            settling = True
                        elif payload.get("task_id") == task_id:
                            settling = payload["status"] in FINAL_TASK_STATES
                    since_status += LOG_POLL
                    if settling or since_status >= LOG_STATUS_EVERY:
                        since_status = 0.0
                        done = await ended()

        return _respond(body())

    return router


class _Skipping:
    """A run's changes without its loops' iterations (the loop's own node shows them)."""

    def __init__(self, receive: _Receiver) -> None:
        self._receive = receive

    async def receive(self) -> Message:
        while True:
            kind, payload = await self._receive.receive()
            if kind != "task" or iteration_of(payload["task_id"]) is None:
                return kind, payload


class _Rendered:
    """Decided events that pass the page's filters, as rows of its table."""

    def __init__(self, receive: _Receiver, shown: Callable[[Event], bool]) -> None:
        self._receive = receive
        self._shown = shown

    async def receive(self) -> Message:
        while True:
            kind, payload = await self._receive.receive()
            event = payload["event"]
            if self._shown(event):
                return kind, {"html": event_row(None, event=event, outcome=payload["outcome"])}
