"""The raw-ASGI ingress path (``POST /hooks/{name}``, ``POST /api/events``) over real HTTP.

It answers before FastAPI's routing, so each answer is compared with the one the
FastAPI routes give for the same request (reached under a ``root_path``, which
the ingress path leaves to them), and what only the raw path does itself is
tested here: bodies read from ``receive`` in chunks, limits, missing headers,
query strings, clients that go away, and everything else left to FastAPI.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from connectors.webhooks import hook_source
from reactor.api import create_app
from reactor.api.fast import IngressPath
from reactor.service import Reactor
from reactor.store import Store

from .support import wait_run

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

SECRET = "fast-path-secret"

SIGNED = """
name: on_signed
params:
  ref: {type: string}
triggers:
  - on: webhook
    name: signed
    signature: github
    secret: env:TEST_FAST_PATH_SECRET
    params: {ref: "{{ event.data.body.ref }}"}
tasks:
  - id: show
    shell: "echo {{ params.ref }}"
"""

OPEN = """
name: on_open
triggers:
  - on: webhook
    name: open
    public: true
    max_body: 1KiB
  - on: event
    type: "fast.*"
tasks:
  - id: show
    shell: "echo open"
"""


def _signature(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def served(write_pipeline, start_reactor, monkeypatch: pytest.MonkeyPatch):
    """``async with served() as (reactor, client)``: the hooks above, on a free port."""
    monkeypatch.setenv("TEST_FAST_PATH_SECRET", SECRET)
    write_pipeline("signed.yaml", SIGNED)
    write_pipeline("open.yaml", OPEN)

    @asynccontextmanager
    async def serve() -> AsyncIterator[tuple[Reactor, httpx.AsyncClient]]:
        async with start_reactor(http=("127.0.0.1", 0)) as reactor:
            base = f"http://127.0.0.1:{reactor.http_port}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                yield reactor, client

    return serve


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _requests(key: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, httpx keyword arguments) covering every answer of the two routes."""
    pushed = json.dumps({"ref": f"refs/heads/{key}"}).encode()
    return [
        ("POST", "/hooks/nope", {"json": {"n": 1}}),
        ("POST", "/hooks/open", {"content": b"{" + b" " * 1100 + b"}"}),
        (
            "POST",
            "/hooks/open",
            {
                "content": _chunks(b'{"n": "', b"x" * 2000, b'"}'),
                "headers": {"content-type": "application/json"},
            },
        ),
        ("POST", "/hooks/open", {"content": b'{"n": 1}'}),
        ("POST", "/hooks/open", {"content": b"\x00", "headers": {"content-type": "image/png"}}),
        (
            "POST",
            "/hooks/open",
            {"content": b'{"n": ', "headers": {"content-type": "application/json"}},
        ),
        ("POST", "/hooks/signed", {"content": pushed, "headers": {"x-hub-signature-256": "x"}}),
        (
            "POST",
            "/hooks/signed",
            {
                "content": pushed,
                "headers": {
                    "content-type": "application/json",
                    "x-hub-signature-256": _signature(pushed),
                    "x-github-delivery": f"delivery-{key}",
                },
            },
        ),
        (
            "POST",
            "/hooks/signed",
            {
                "content": pushed,
                "headers": {
                    "content-type": "application/json",
                    "x-hub-signature-256": _signature(pushed),
                    "x-github-delivery": f"delivery-{key}",
                },
            },
        ),
        ("POST", "/api/events", {"content": b"{}"}),
        ("POST", "/api/events", {"content": b"{", "headers": {"content-type": "application/json"}}),
        (
            "POST",
            "/api/events",
            {"content": b'{"n": NaN}', "headers": {"content-type": "application/json"}},
        ),
        ("POST", "/api/events", {"json": {"specversion": "1.0"}}),
        (
            "POST",
            "/api/events",
            {"json": {"specversion": "1.0", "type": "fast.x", "reactorhook": "open"}},
        ),
        ("POST", "/api/events", {"json": {"specversion": "1.0", "type": "fast.x", "id": key}}),
        ("POST", "/api/events", {"json": {"specversion": "1.0", "type": "fast.x", "id": key}}),
    ]


def _comparable(response: httpx.Response) -> tuple[int, str, Any]:
    """Status, content type and body, with the ids (new on each request) replaced."""
    body = response.json()
    if isinstance(body, dict) and "run_ids" in body:
        body = body | {"event_id": "<id>", "run_ids": ["<run>" for _ in body["run_ids"]]}
    return response.status_code, response.headers["content-type"], body


async def test_answers_are_those_of_the_fastapi_routes(
    served, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    answered: list[bool] = []
    handled = IngressPath.handled

    async def counted(self: IngressPath, scope: Any, receive: Any, send: Any) -> bool:
        answered.append(await handled(self, scope, receive, send))
        return answered[-1]

    monkeypatch.setattr(IngressPath, "handled", counted)
    async with served() as (reactor, client):
        # Under a root_path the ingress path steps aside and FastAPI's routes answer.
        routed = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(reactor), root_path="/base"),
            base_url="http://reactor/base",
        )
        async with routed:
            fast = [
                await client.request(method, path, **kwargs)
                for method, path, kwargs in _requests("fast")
            ]
            slow = [
                await routed.request(method, path, **kwargs)
                for method, path, kwargs in _requests("slow")
            ]
        run_ids = [r.json()["run_ids"][0] for r in fast + slow if r.status_code == 202]
        for run_id in run_ids:
            assert (await wait_run(store, run_id)).status == "succeeded"

    assert [_comparable(r) for r in fast] == [_comparable(r) for r in slow]
    # The served port answered all of them on the ingress path, the routed client none.
    assert answered == [True] * len(fast) + [False] * len(slow)
    assert [r.status_code for r in fast] == [
        404, 413, 413, 415, 415, 422, 401, 202, 200, 415, 400, 400, 400, 400, 202, 200,
    ]  # fmt: skip
    for response in fast:
        assert response.headers["content-length"] == str(len(response.content))
    assert fast[3].json() == {
        "error": "the request has a body but no Content-Type; send JSON (application/json),"
        " a form or text"
    }
    assert fast[9].json() == {
        "error": "send the event as application/cloudevents+json or application/json"
        " (CloudEvents structured mode)"
    }
    assert fast[11].json()["error"] == "body is not JSON: NaN is not a JSON value"
    assert fast[13].json() == {"error": "reactorhook is set only by POST /hooks/{name}"}
    assert len(run_ids) == 4


async def test_a_chunked_body_is_verified_whole_and_its_query_and_headers_kept(
    served, store: Store
) -> None:
    body = json.dumps({"ref": "refs/heads/main", "pad": "y" * 3000}).encode()
    async with served() as (_reactor, client):
        signed = await client.post(
            "/hooks/signed?a=1&a=2&b=",
            content=_chunks(body[:10], body[10:2000], body[2000:]),
            headers=[
                ("content-type", "application/json"),
                ("x-hub-signature-256", _signature(body)),
                ("x-thing", "first"),
                ("x-thing", "last"),
            ],
        )
        assert signed.status_code == 202, signed.text
        run = await wait_run(store, signed.json()["run_ids"][0])
        stored = await store.last_event(hook_source("signed"))

    assert run.status == "succeeded" and run.params == {"ref": "refs/heads/main"}
    assert stored is not None
    assert stored.event.data["query"] == {"a": "2", "b": ""}
    assert stored.event.data["headers"]["x-thing"] == "last"
    assert "transfer-encoding" in stored.event.data["headers"]
    assert stored.event.data["body"]["pad"] == "y" * 3000


async def test_a_public_hook_without_a_body_needs_no_content_type(served, store: Store) -> None:
    async with served() as (_reactor, client):
        empty = await client.post("/hooks/open")
        assert empty.status_code == 202, empty.text
        await wait_run(store, empty.json()["run_ids"][0])
        stored = await store.last_event(hook_source("open"))

    assert stored is not None and stored.event.data["body"] is None


async def test_other_methods_and_paths_are_left_to_fastapi(served) -> None:
    async with served() as (_reactor, client):
        get_hook = await client.get("/hooks/open")
        nested = await client.post("/hooks/open/more", json={})
        no_name = await client.post("/hooks/", json={})
        put_events = await client.put("/api/events")
        health = await client.get("/healthz")

    assert (get_hook.status_code, get_hook.json()) == (405, {"detail": "Method Not Allowed"})
    assert (nested.status_code, nested.json()) == (404, {"detail": "Not Found"})
    assert (no_name.status_code, no_name.json()) == (404, {"detail": "Not Found"})
    assert put_events.status_code == 405
    assert health.status_code == 200


def _send_half_a_request(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /hooks/open HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"n": 1'
        )


async def test_a_client_that_leaves_mid_body_stores_nothing(served, store: Store) -> None:
    async with served() as (reactor, client):
        assert reactor.http_port is not None
        await anyio.to_thread.run_sync(_send_half_a_request, reactor.http_port)
        after = await client.post("/hooks/open", json={"n": 2})
        assert after.status_code == 202
        await wait_run(store, after.json()["run_ids"][0])
        runs = await store.list_runs(pipeline="on_open", limit=10, before=None)

    assert [r.id for r in runs] == after.json()["run_ids"]
