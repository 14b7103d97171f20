"""``reactor.Client`` and ``reactor.AsyncClient`` against a real served Reactor, on both stores."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import httpx
import pytest
from helpers import imported, wait_for

from reactor import AsyncClient, Client, ClientError, Published
from reactor.store import Store

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "client.md"

STEPS = """
import threading

GATE = threading.Event()


def hold():
    # Blocks a worker thread until the test opens the gate (or 10 s pass).
    return GATE.wait(10)
"""

ORDERS = """
name: orders
params:
  n: {type: integer, default: 0}
triggers:
  - on: event
    id: placed
    type: "orders.*"
    source: shop
    params: {n: "{{ event.data.n }}"}
tasks:
  - id: show
    shell: "echo order {{ params.n }}"
"""

HOLD = """
name: hold
tasks:
  - id: wait
    python: {module}:hold
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def in_thread(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking client call off the event loop the served Reactor runs on."""
    return await anyio.to_thread.run_sync(partial(call, *args, **kwargs))


@pytest.fixture
def served(write_pipeline, write_module, start_reactor):
    """``async with served() as (url, steps)``: the service on a free port; steps' module name."""
    module = write_module(STEPS)
    write_pipeline("orders.yaml", ORDERS)
    write_pipeline("hold.yaml", HOLD.format(module=module))

    @asynccontextmanager
    async def serve() -> AsyncIterator[tuple[str, Any]]:
        async with start_reactor(http=("127.0.0.1", 0)) as reactor:
            assert reactor.http_port
            yield f"http://127.0.0.1:{reactor.http_port}", module

    return serve


async def test_publish_starts_a_run_and_a_repeat_is_a_duplicate(served, store: Store) -> None:
    when = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
    async with served() as (url, _steps):
        with Client(url) as client:
            published = await in_thread(
                client.publish,
                "orders.new",
                {"n": 3},
                source="shop",
                id="o-1",
                subject="order 3",
                time=when,
                extensions={"tenant": "eu"},
            )
            [run_id] = published.run_ids
            run = await in_thread(client.wait_run, run_id, timeout=10)
            again = await in_thread(client.publish, "orders.new", {"n": 4}, source="shop", id="o-1")
            other_source = await in_thread(client.publish, "orders.new", {"n": 5}, id="o-1")
            health = await in_thread(client.health)

    assert published == Published(event_id="o-1", run_ids=(run_id,), duplicate=False)
    assert (run["status"], run["params"], run["event_ids"]) == ("succeeded", {"n": 3}, ["o-1"])
    assert run["tasks"][0]["output"] == "order 3"
    assert again == Published(event_id="o-1", run_ids=(run_id,), duplicate=True)
    # The default source is the client's, which the trigger does not listen to.
    assert other_source == Published(event_id="o-1", run_ids=(), duplicate=False)
    stored = await store.get_event("shop", "o-1")
    assert stored is not None
    event = stored.event
    assert (event.type, event.subject, event.time, event.data) == (
        "orders.new",
        "order 3",
        when,
        {"n": 3},
    )
    assert event.extensions == {"tenant": "eu"}
    assert (await store.get_event("reactor/client", "o-1")) is not None
    assert health["status"] == "ok" and health["pipelines"] == 2


async def test_run_wait_run_get_run_and_the_runs_listing(served) -> None:
    async with served() as (url, steps):
        with Client(url, timeout=10) as client:
            started = await in_thread(client.run, "orders", {"n": 7})
            done = await in_thread(client.wait_run, started["id"], timeout=10)
            held = await in_thread(client.run, "hold")
            with pytest.raises(ClientError) as still:
                await in_thread(client.wait_run, held["id"], timeout=0.1, interval=0.02)
            # Python tasks import their module when they first run.
            await wait_for(
                lambda: imported(steps, "GATE") is not None, message="the held task to start"
            )
            sys.modules[steps].GATE.set()
            released = await in_thread(client.wait_run, held["id"], timeout=10)
            detail = await in_thread(client.get_run, started["id"])
            everything = await in_thread(client.runs)
            newest = await in_thread(client.runs, limit=1)
            only_orders = await in_thread(client.runs, "orders")

    assert (started["pipeline"], started["params"], started["status"]) == (
        "orders",
        {"n": 7},
        "queued",
    )
    assert (done["id"], done["status"]) == (started["id"], "succeeded")
    assert [(t["task_id"], t["output"]) for t in done["tasks"]] == [("show", "order 7")]
    assert detail == done
    status = still.value.message.split()[-3]
    assert status in ("queued", "running")
    assert str(still.value) == f"run {held['id']} is still {status} after 0.1s"
    assert still.value.status is None
    assert released["status"] == "succeeded"
    assert [r["id"] for r in everything] == [held["id"], started["id"]]
    assert [r["id"] for r in newest] == [held["id"]]
    assert [r["id"] for r in only_orders] == [started["id"]]


async def test_errors_carry_the_status_and_the_services_message(served, store: Store) -> None:
    async with served() as (url, _steps):
        with Client(url) as client:
            errors = []
            for call, args in [
                (client.run, ("nope",)),
                (client.run, ("orders", {"n": "many"})),
                (client.run, ("orders", {"m": 1})),
                (client.get_run, ("no-such-run",)),
                (client.publish, ("",)),
                (partial(client.publish, time=datetime(2026, 1, 1)), ("orders.new",)),
            ]:
                with pytest.raises(ClientError) as caught:
                    await in_thread(call, *args)
                errors.append((caught.value.status, str(caught.value)))
            with pytest.raises(ClientError) as not_json:
                client.publish("orders.new", {"n": float("nan")})
            with pytest.raises(ClientError) as not_json_params:
                client.run("orders", {"n": object()})
            with pytest.raises(ClientError) as core:
                client.publish("orders.new", extensions={"type": "x"})

    assert errors == [
        (404, "404: unknown pipeline 'nope' (known: hold, orders)"),
        (
            422,
            "422: orders: param 'n': expected integer, got 'many':"
            " Input should be a valid integer, unable to parse string as an integer",
        ),
        (422, "422: orders: unknown param 'm' (declared: n)"),
        (404, "404: no run 'no-such-run'"),
        (400, "400: 'type' is required and must be a non-empty string"),
        (400, "400: 'time' '2026-01-01T00:00:00' has no UTC offset"),
    ]
    assert (
        str(not_json.value)
        == "the event is not JSON: Out of range float values are not JSON compliant"
    )
    assert str(not_json_params.value) == (
        "the params are not JSON: Object of type object is not JSON serializable"
    )
    assert str(core.value) == (
        "extension 'type' is a CloudEvents attribute; pass it as its own argument"
    )
    assert await store.list_runs(pipeline=None, limit=10, before=None) == []


async def test_an_unreachable_service_says_how_to_fix_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url) as client, pytest.raises(ClientError) as caught:
        await in_thread(client.publish, "orders.new")
    async with AsyncClient(url) as aclient:
        with pytest.raises(ClientError) as async_caught:
            await aclient.runs()

    for error in (caught.value, async_caught.value):
        assert isinstance(error.__cause__, httpx.ConnectError)
        assert error.status is None
        assert str(error) == (
            f"cannot reach Reactor at {url} ({error.__cause__}); is `reactor serve` running?"
        )


async def test_a_server_that_is_not_reactor() -> None:
    async with served_text("<html>hello</html>") as url, AsyncClient(url) as client:
        with pytest.raises(ClientError) as caught:
            await client.health()
    assert str(caught.value) == (
        "GET /healthz answered 200 with a body that is not JSON; is this address a Reactor?"
    )


async def test_the_async_client(served, store: Store) -> None:
    async with served() as (url, _steps), AsyncClient(url) as client:
        published = await client.publish("orders.new", {"n": 2}, source="shop", id="a-1")
        again = await client.publish("orders.new", {"n": 2}, source="shop", id="a-1")
        run = await client.wait_run(published.run_ids[0], timeout=10)
        started = await client.run("orders", {"n": 8})
        done = await client.wait_run(started["id"], timeout=10)
        listed = await client.runs("orders")
        one = await client.get_run(run["id"])
        health = await client.health()
        with pytest.raises(ClientError) as unknown:
            await client.run("nope")
        with pytest.raises(ClientError) as bad:
            await client.run("orders", {"n": "many"})

    assert published == Published(event_id="a-1", run_ids=(run["id"],), duplicate=False)
    assert again == Published(event_id="a-1", run_ids=(run["id"],), duplicate=True)
    assert (run["status"], run["params"]) == ("succeeded", {"n": 2})
    assert (done["status"], done["params"]) == ("succeeded", {"n": 8})
    assert [r["id"] for r in listed] == [started["id"], run["id"]]
    assert one == run
    assert health["status"] == "ok"
    assert (unknown.value.status, unknown.value.message) == (
        404,
        "unknown pipeline 'nope' (known: hold, orders)",
    )
    assert (bad.value.status, bad.value.message) == (
        422,
        "orders: param 'n': expected integer, got 'many':"
        " Input should be a valid integer, unable to parse string as an integer",
    )


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


async def test_the_docs_example_runs_and_prints_what_the_page_says(
    write_pipeline, start_reactor
) -> None:
    page = DOCS.read_text(encoding="utf-8")
    write_pipeline("orders.yaml", _blocks(page, "yaml")[0])
    example = _blocks(page, "python")[0]
    printed = _blocks(page, "text")[0]
    async with start_reactor(http=("127.0.0.1", 0)) as reactor:
        code = example.replace("http://127.0.0.1:8080", f"http://127.0.0.1:{reactor.http_port}")
        done = await anyio.run_process([sys.executable, "-c", code], check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode() == printed


def test_import_reactor_does_not_import_httpx() -> None:
    # `reactor serve`'s idle memory is measured: httpx is loaded only with the client.
    code = (
        "import sys, reactor; assert 'httpx' not in sys.modules;"
        " reactor.Client; assert 'httpx' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@asynccontextmanager
async def served_text(body: str) -> AsyncIterator[str]:
    """A tiny HTTP server on a free port that answers every request with ``body`` as HTML."""

    async def answer(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()
            data = body.encode()
            await stream.send(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(data), data)
            )

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, answer)
        yield f"http://127.0.0.1:{port}"
        tg.cancel_scope.cancel()
