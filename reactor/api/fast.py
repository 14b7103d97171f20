"""The ingress path of the API: ``POST /hooks/{name}`` and ``POST /api/events`` in raw ASGI.

These two routes take the service's traffic, so they skip FastAPI's middleware and
routing, ``Request`` objects and ``JSONResponse``: :class:`IngressPath` reads
the body from ``receive`` and answers with pre-encoded headers; the FastAPI
application answers everything else. The answers (statuses, error bodies,
headers) are the ones the FastAPI routes gave; those routes remain, for the
OpenAPI schema and for requests under a ``root_path``, and call the same
functions here.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.types import Receive, Scope, Send

from reactor.errors import AdmissionError, StoreError
from reactor.events import Event, InvalidEvent
from reactor.specs import HOOK_ATTRIBUTE, HookRequest

if TYPE_CHECKING:
    from reactor.service import PublishResult, Reactor

__all__ = ["Answer", "IngressPath", "answer_event", "answer_hook", "json_answer"]

#: A status and its JSON body, already encoded.
Answer = tuple[int, bytes]
#: Reads the request body; with a limit, ``None`` as soon as the body is longer.
BodyReader = Callable[[int | None], Awaitable[bytes | None]]
Headers = Iterable[tuple[bytes, bytes]]

# Starlette's JSONResponse renders with these settings; one encoder, made once.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_JSON_TYPE = (b"content-type", b"application/json")
_SERVER_ERROR = b"Internal Server Error"
_SERVER_ERROR_HEADERS = [
    (b"content-length", str(len(_SERVER_ERROR)).encode()),
    (b"content-type", b"text/plain; charset=utf-8"),
]
_EVENT_TYPES = ("application/json", "application/cloudevents+json")


def json_answer(status: int, content: Any) -> Answer:
    return status, _ENCODER.encode(content).encode("utf-8")


def _error(status: int, message: str) -> Answer:
    return json_answer(status, {"error": message})


def _first(headers: Headers, name: bytes) -> str:
    """The first value of header ``name`` (lower-case), as Starlette's ``headers.get``."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return ""


def _no_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity, which no JSON response could carry back.
    raise ValueError(f"{name} is not a JSON value")


def _published(result: PublishResult) -> Answer:
    payload: dict[str, Any] = {"event_id": result.event_id, "run_ids": result.run_ids}
    if result.duplicate:
        payload["duplicate"] = True
        return json_answer(200, payload)
    return json_answer(202, payload)


async def answer_hook(
    reactor: Reactor, name: str, headers: Headers, query: bytes, read: BodyReader
) -> Answer:
    """``POST /hooks/{name}``: verify, publish, and answer once the runs are admitted."""
    try:
        receiver = reactor.hook(name)
        if receiver is None:
            return _error(404, f"no webhook {name!r}")
        headers = list(headers)
        declared = _first(headers, b"content-length")
        body = None
        if not (declared.isdigit() and int(declared) > receiver.max_body):
            body = await read(receiver.max_body)
        if body is None:
            return _error(
                413, f"the body is larger than this hook's max_body ({receiver.max_body} bytes)"
            )
        request = HookRequest(
            method="POST",
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers},
            query=dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True)) if query else {},
            body=body,
            content_type=_first(headers, b"content-type"),
        )
        answer = receiver.receive(request, reactor.clock.now())
        if answer.event is None:
            return json_answer(answer.status, answer.body)
        try:
            result = await reactor.publish(answer.event)
        except AdmissionError as exc:
            return _error(503, str(exc))
        return _published(result)
    except StoreError as exc:
        return _error(503, str(exc))


async def answer_event(reactor: Reactor, headers: Headers, read: BodyReader) -> Answer:
    """``POST /api/events``: a CloudEvent in structured mode, answered once admitted."""
    try:
        kind = _first(headers, b"content-type").split(";")[0].strip().lower()
        if kind not in _EVENT_TYPES:
            return _error(
                415,
                "send the event as application/cloudevents+json or application/json"
                " (CloudEvents structured mode)",
            )
        raw = await read(None)
        try:
            body = json.loads(raw, parse_constant=_no_constant) if raw else None
            event = Event.from_cloudevent(body, default_source="reactor/api")
        except ValueError as exc:
            return _error(400, f"body is not JSON: {exc}")
        except InvalidEvent as exc:
            return _error(400, str(exc))
        if HOOK_ATTRIBUTE in event.extensions:
            return _error(400, f"{HOOK_ATTRIBUTE} is set only by POST /hooks/{{name}}")
        try:
            result = await reactor.publish(event)
        except AdmissionError as exc:
            return _error(503, str(exc))
        return _published(result)
    except StoreError as exc:
        return _error(503, str(exc))


class _Disconnected(Exception):
    """The client went away before its body arrived: there is nobody to answer."""


def _body_reader(receive: Receive) -> BodyReader:
    async def read(limit: int | None) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if limit is not None and size > limit:
                    return None
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    return read


class IngressPath:
    """Answers ``POST /hooks/{name}`` and ``POST /api/events`` of a served ``reactor``."""

    def __init__(self, reactor: Reactor) -> None:
        self.reactor = reactor

    async def handled(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer the request if it is one of the ingress routes; ``False`` if it is not."""
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
            return False
        path: str = scope["path"]
        if path.startswith("/hooks/"):
            name = path[7:]
            if not name or "/" in name:
                return False
            answering = answer_hook(
                self.reactor, name, scope["headers"], scope["query_string"], _body_reader(receive)
            )
        elif path == "/api/events":
            answering = answer_event(self.reactor, scope["headers"], _body_reader(receive))
        else:
            return False
        await self._answer(answering, send)
        return True

    async def _answer(self, answering: Awaitable[Answer], send: Send) -> None:
        started = False
        try:
            status, body = await answering
            started = True
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-length", str(len(body)).encode()), _JSON_TYPE],
                }
            )
            await send({"type": "http.response.body", "body": body})
        except _Disconnected:
            return
        except Exception:
            # As Starlette's ServerErrorMiddleware: a plain 500, then the error goes on to
            # the server, which logs it.
            if not started:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": _SERVER_ERROR_HEADERS,
                    }
                )
                await send({"type": "http.response.body", "body": _SERVER_ERROR})
            raise
