"""GET /api/events on a real port, and Client.events / AsyncClient.events, on both stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from typing import Any

import anyio.to_thread
import httpx
import pytest
from helpers import wait_for

from reactor import AsyncClient, Client
from reactor.events import Event
from reactor.service import Reactor
from reactor.specs import run_event_source
from reactor.store import Store

from .support import wait_run

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

CHORES = """
name: chores
triggers:
  - on: event
    type: "work.*"
    source: tests
tasks:
  - id: say
    shell: "echo hi"
"""

FIELDS = {"seq", "id", "source", "type", "subject", "time", "received_at", "data", "outcome"}


@pytest.fixture
def api(write_pipeline, start_reactor):
    """``async with api() as (reactor, client)``: the service with its API on a free port."""
    write_pipeline("chores.yaml", CHORES)

    @asynccontextmanager
    async def serve() -> AsyncIterator[tuple[Reactor, httpx.AsyncClient]]:
        async with start_reactor(http=("127.0.0.1", 0)) as reactor:
            assert reactor.http_port
            base = f"http://127.0.0.1:{reactor.http_port}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                yield reactor, client

    return serve


async def publish(client: httpx.AsyncClient, **event: Any) -> list[str]:
    response = await client.post("/api/events", json=event)
    assert response.status_code == 202, response.text
    run_ids: list[str] = response.json()["run_ids"]
    return run_ids


async def run_with_its_end_event(store: Store, run_id: str) -> None:
    """Wait for the run to end and for the event of its end to be stored."""
    await wait_run(store, run_id)

    async def stored() -> bool:
        return await store.get_event(run_event_source("chores"), run_id) is not None

    await wait_for(stored, message=f"the end event of run {run_id}")


def seen(page: httpx.Response) -> list[tuple[str, str]]:
    return [(e["type"], e["id"]) for e in page.json()]


async def test_events_are_listed_newest_first_without_reactors_own_by_default(
    api, store: Store
) -> None:
    async with api() as (_reactor, client):
        [run_id] = await publish(
            client,
            type="work.requested",
            source="tests",
            id="w-1",
            subject="the work",
            time="2026-11-26T05:00:00+01:00",
            data={"n": 1},
        )
        await run_with_its_end_event(store, run_id)
        assert await publish(client, type="orders.paid", source="shop", id="o-1") == []
        assert await publish(client, type="orders.paid", source="shop/eu", id="o-2") == []
        assert await publish(client, type="orders.shipped", source="shop", id="o-3") == []

        default = await client.get("/api/events")
        internal = await client.get("/api/events", params={"internal": "true"})
        hidden = await client.get("/api/events", params={"internal": "false"})
        runs = await client.get("/api/events", params={"type": "reactor.run.*"})
        tasks = await client.get(
            "/api/events", params={"type": "reactor.task.succeeded", "internal": "false"}
        )
        orders = await client.get("/api/events", params={"type": "orders.*"})
        paid = await client.get("/api/events", params={"type": "orders.paid", "source": "shop"})
        shop = await client.get("/api/events", params={"source": "shop"})
        own = await client.get("/api/events", params={"source": run_event_source("chores")})
        none = await client.get("/api/events", params={"type": "Orders.*"})

    assert default.status_code == 200
    assert default.headers["content-type"] == "application/json"
    assert "link" not in default.headers
    published = [
        ("orders.shipped", "o-3"),
        ("orders.paid", "o-2"),
        ("orders.paid", "o-1"),
        ("work.requested", "w-1"),
    ]
    assert seen(default) == published
    assert hidden.json() == default.json()
    listed = default.json()
    assert all(set(e) == FIELDS for e in listed)
    seqs = [e["seq"] for e in listed]
    assert seqs == sorted(seqs, reverse=True)
    work = listed[-1]
    assert (work["source"], work["subject"], work["data"]) == ("tests", "the work", {"n": 1})
    assert work["time"] == "2026-11-26T05:00:00+01:00"
    assert datetime.fromisoformat(work["received_at"]).utcoffset() is not None
    [fired] = work["outcome"]
    assert (fired["trigger"], fired["outcome"], fired["run_id"]) == (
        "chores/event",
        "fired",
        run_id,
    )
    assert listed[0]["outcome"] == [] and listed[0]["subject"] is None
    assert listed[0]["data"] is None

    everything = seen(internal)
    assert everything[:4] == [*published[:3], ("reactor.run.succeeded", run_id)]
    assert ("reactor.task.succeeded", f"{run_id}/say/1") in everything[4:-1]
    assert everything[-1] == ("work.requested", "w-1")
    assert [x for x in everything if not x[0].startswith("reactor.")] == published
    # A type glob naming Reactor's own events shows them without internal=true.
    assert seen(runs) == [("reactor.run.succeeded", run_id)]
    assert seen(tasks) == [("reactor.task.succeeded", f"{run_id}/say/1")]
    assert seen(orders) == published[:3]
    assert seen(paid) == [("orders.paid", "o-1")]
    assert seen(shop) == [("orders.shipped", "o-3"), ("orders.paid", "o-1")]
    # A source of Reactor's own events still hides them unless asked.
    assert own.json() == []
    assert none.json() == []


async def test_the_link_header_walks_every_page_keeping_the_filters(api) -> None:
    async with api() as (_reactor, client):
        for n in range(7):
            await publish(client, type="tick", source="clock", id=f"t{n}")
            await publish(client, type="tock", source="clock", id=f"k{n}")
        first = await client.get("/api/events", params={"type": "tick", "limit": 3})
        pages = [first]
        while "next" in pages[-1].links:
            pages.append(await client.get(pages[-1].links["next"]["url"]))
        exact = [await client.get("/api/events", params={"source": "clock", "limit": 7})]
        while "next" in exact[-1].links:
            exact.append(await client.get(exact[-1].links["next"]["url"]))

    assert all(page.status_code == 200 for page in pages)
    assert [len(page.json()) for page in pages] == [3, 3, 1]
    next_url = httpx.URL(first.links["next"]["url"])
    assert next_url.params["type"] == "tick" and next_url.params["limit"] == "3"
    assert next_url.params["cursor"] == str(first.json()[-1]["seq"])
    assert [e["id"] for page in pages for e in page.json()] == [f"t{n}" for n in range(6, -1, -1)]
    # A page size that divides the events: the last page is empty and has no link.
    assert [len(page.json()) for page in exact] == [7, 7, 0]
    assert "link" not in exact[-1].headers
    walked = [e["id"] for page in exact for e in page.json()]
    assert walked == [x for n in range(6, -1, -1) for x in (f"k{n}", f"t{n}")]


async def test_numbers_json_cannot_carry_are_listed_as_null(api, store: Store) -> None:
    # A sensor may store them: Python's json reads NaN and Infinity (a Kafka message).
    odd = Event(
        type="reading.taken",
        source="meter",
        id="r-1",
        data={"mean": float("nan"), "top": [float("inf"), -float("inf"), 1.5], "n": 2},
    )
    await store.ingest(odd, odd.time, evaluated=True)
    async with api() as (_reactor, client):
        listed = await client.get("/api/events", params={"source": "meter"})

    assert listed.status_code == 200, listed.text
    [event] = listed.json()
    assert event["data"] == {"mean": None, "top": [None, None, 1.5], "n": 2}


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"limit": 0}, "limit: "),
        ({"limit": 10_001}, "limit: "),
        ({"cursor": "x"}, "cursor: "),
        ({"cursor": 0}, "cursor: "),
        ({"internal": "maybe"}, "internal: "),
        ({"type": ""}, "type: "),
        ({"source": ""}, "source: "),
    ],
)
async def test_bad_event_queries_are_refused(api, query, named) -> None:
    async with api() as (_reactor, client):
        response = await client.get("/api/events", params=query)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"].startswith(named)


async def in_thread(call: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking client call off the event loop the served Reactor runs on."""
    return await anyio.to_thread.run_sync(partial(call, *args, **kwargs))


async def test_the_clients_list_events(api, store: Store) -> None:
    async with api() as (reactor, _client):
        url = f"http://127.0.0.1:{reactor.http_port}"
        async with AsyncClient(url) as client:
            [run_id] = (await client.publish("work.a", source="tests", id="w-1")).run_ids
            await run_with_its_end_event(store, run_id)
            await client.publish("orders.paid", {"n": 2}, source="shop", id="o-1")
            await client.publish("orders.paid", {"n": 3}, source="shop", id="o-2")
            newest = await client.events()
            internal = await client.events(internal=True, limit=3)
            older = await client.events(internal=True, before=internal[-1]["seq"])
            older_public = await client.events(before=internal[-1]["seq"])
            paid = await client.events(type="orders.*", source="shop", limit=1)
        with Client(url) as blocking:
            same = await in_thread(blocking.events)
            runs = await in_thread(blocking.events, type="reactor.run.*")
            rest = await in_thread(blocking.events, source="shop", before=paid[0]["seq"])
            nothing = await in_thread(blocking.events, type="work.*", source="shop")

    assert [e["id"] for e in newest] == ["o-2", "o-1", "w-1"]
    assert newest[0]["data"] == {"n": 3}
    assert [(e["type"], e["id"]) for e in internal] == [
        ("orders.paid", "o-2"),
        ("orders.paid", "o-1"),
        ("reactor.run.succeeded", run_id),
    ]
    assert ("reactor.task.succeeded", f"{run_id}/say/1") in [(e["type"], e["id"]) for e in older]
    assert older[-1]["id"] == "w-1"
    assert [e["id"] for e in older_public] == ["w-1"]
    assert [e["id"] for e in paid] == ["o-2"]
    assert same == newest
    assert [e["id"] for e in runs] == [run_id]
    assert [e["id"] for e in rest] == ["o-1"]
    assert nothing == []
