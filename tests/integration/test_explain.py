"""``GET /api/events/{id}/explain`` and ``GET /api/pipelines/{name}/explain`` on both stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from explain_pipelines import BILLING, ORDERS

from reactor.events import Event
from reactor.service import Reactor
from reactor.store import Store

from .support import wait_run

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def api(write_pipeline, start_reactor):
    """``async with api() as (reactor, client)``: the service with its API on a free port."""
    write_pipeline("orders.yaml", ORDERS)
    write_pipeline("billing.yaml", BILLING)

    @asynccontextmanager
    async def serve() -> AsyncIterator[tuple[Reactor, httpx.AsyncClient]]:
        async with start_reactor(http=("127.0.0.1", 0)) as reactor:
            base = f"http://127.0.0.1:{reactor.http_port}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                yield reactor, client

    return serve


def by_trigger(found: dict) -> dict[str, dict]:
    return {entry["trigger"]: entry for entry in found["triggers"]}


async def test_an_event_is_explained_per_trigger(api) -> None:
    async with api() as (reactor, client):
        published = await reactor.publish(
            Event("orders.paid", "shop/eu", {"amount": 500}, id="e-big")
        )
        for run_id in published.run_ids:
            await wait_run(reactor.store, run_id)
        response = await client.get("/api/events/e-big/explain")
        assert response.status_code == 200, response.text
        found = response.json()

    assert found["event"]["id"] == "e-big"
    assert found["event"]["source"] == "shop/eu"
    assert found["event"]["data"] == {"amount": 500}
    assert found["evaluated"] is True
    assert datetime.fromisoformat(found["evaluated_at"]) >= datetime.fromisoformat(
        found["received_at"]
    )
    assert found["same_id"] == {"count": 0, "events": []}
    entries = by_trigger(found)
    assert list(entries) == ["billing/event", "orders/big", "orders/shop"]
    big = entries["orders/big"]
    assert big["recorded"] is True and big["computed_now"] is False
    assert big["fired"] is True and big["outcome"] == "fired"
    assert big["params"] == {"amount": 500}
    assert entries["orders/shop"]["fired"] is True
    assert sorted(found["run_ids"]) == sorted(published.run_ids)
    assert {big["run_id"], entries["orders/shop"]["run_id"]} == set(published.run_ids)
    billing = entries["billing/event"]
    assert billing == {
        "trigger": "billing/event",
        "pipeline": "billing",
        "candidate": False,
        "recorded": False,
        "computed_now": True,
        "loaded": True,
        "fired": False,
        "outcome": "not_candidate",
        "reason": "type 'orders.paid' does not match 'billing.*'",
    }


async def test_a_false_condition_and_a_wrong_source_are_explained(api) -> None:
    async with api() as (reactor, client):
        await reactor.publish(Event("orders.paid", "till/3", {"amount": 7}, id="e-small"))
        found = (await client.get("/api/events/e-small/explain")).json()

    entries = by_trigger(found)
    big = entries["orders/big"]
    assert big["outcome"] == "condition_false"
    assert big["fired"] is False
    assert big["values"] == {"event.data.amount": 7}
    assert "event.data.amount > 100" in big["reason"]
    shop = entries["orders/shop"]
    assert shop["outcome"] == "not_candidate"
    assert shop["reason"] == "source 'till/3' does not match 'shop/*'"
    assert found["run_ids"] == []


async def test_an_id_shared_by_two_sources_answers_for_the_first_and_counts_the_other(
    api,
) -> None:
    async with api() as (reactor, client):
        await reactor.publish(Event("orders.paid", "shop/eu", {"amount": 1}, id="same"))
        await reactor.publish(Event("billing.due", "ledger", {}, id="same"))
        first = (await client.get("/api/events/same/explain")).json()
        chosen = await client.get("/api/events/same/explain", params={"source": "ledger"})
        missing = await client.get("/api/events/same/explain", params={"source": "nowhere"})

    assert first["event"]["source"] == "shop/eu"
    assert first["same_id"]["count"] == 1
    assert first["same_id"]["events"][0]["source"] == "ledger"
    assert chosen.status_code == 200
    assert chosen.json()["event"]["type"] == "billing.due"
    assert by_trigger(chosen.json())["billing/event"]["fired"] is True
    assert chosen.json()["same_id"]["events"][0]["source"] == "shop/eu"
    assert missing.status_code == 404
    assert missing.json() == {"error": "no event 'same' from source 'nowhere'"}


async def test_an_unknown_event_is_404(api) -> None:
    async with api() as (_reactor, client):
        response = await client.get("/api/events/nope/explain")
    assert response.status_code == 404
    assert response.json() == {"error": "no event 'nope'"}


async def test_why_a_pipeline_did_not_run(api) -> None:
    async with api() as (reactor, client):
        fired = await reactor.publish(Event("orders.paid", "shop/eu", {"amount": 900}))
        await reactor.publish(Event("orders.paid", "till/1", {"amount": 3}, id="small-1"))
        await reactor.publish(Event("orders.paid", "till/1", {"amount": 4}, id="small-2"))
        await reactor.publish(Event("billing.due", "ledger", {}))
        await reactor.publish(Event("billing.due", "ledger", {}))
        await reactor.publish(Event("weather.report", "sky", {}))
        for run_id in fired.run_ids:
            await wait_run(reactor.store, run_id)
        response = await client.get("/api/pipelines/orders/explain", params={"since": "1h"})
        assert response.status_code == 200, response.text
        found = response.json()
        bad = await client.get("/api/pipelines/orders/explain", params={"since": "soon"})
        unknown = await client.get("/api/pipelines/nope/explain")

    assert found["pipeline"] == "orders"
    until = datetime.fromisoformat(found["until"])
    assert until - datetime.fromisoformat(found["since"]) == timedelta(hours=1)
    assert [t["trigger"] for t in found["triggers"]] == ["orders/big", "orders/shop"]
    assert found["triggers"][0]["when"] == "event.data.amount > 100"
    # Run and task ends are events too (reactor.run.*, reactor.task.*): counted, not reached.
    assert found["events"]["total"] > 6
    assert found["events"]["reached"] == 3
    assert found["outcomes"]["fired"]["count"] == 2
    condition = found["outcomes"]["condition_false"]
    assert condition["count"] == 2
    # Newest first, with the reason and the values read.
    assert [e["event_id"] for e in condition["last"]] == ["small-2", "small-1"]
    assert "amount = 4" in condition["last"][0]["reason"]
    assert {e.get("run_id") for e in found["outcomes"]["fired"]["last"]} == set(fired.run_ids)
    by_type = found["unmatched"]["by_type"]
    assert by_type["billing.due"] == 2
    assert by_type["weather.report"] == 1
    assert {t for t in by_type if not t.startswith("reactor.")} == {"billing.due", "weather.report"}
    assert found["runs"]["count"] == 2
    assert found["runs"]["by_status"] == {"succeeded": 2}
    assert {r["id"] for r in found["runs"]["last"]} == set(fired.run_ids)
    assert bad.status_code == 422
    assert bad.json()["error"].startswith("since: 'soon' is not a duration")
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "no pipeline 'nope' (loaded: billing, orders)"}


def at(minute: int) -> datetime:
    return datetime(2026, 3, 1, 12, minute, tzinfo=UTC)


async def test_events_received_pages_in_received_order(store: Store) -> None:
    for minute in (5, 1, 9, 3, 7):
        await store.ingest(Event("t", "s", id=f"m{minute}"), at(minute))
    # Another offset is the same instant: compared in UTC.
    since = at(3).astimezone(timezone(timedelta(hours=2)))
    first = await store.events_received(since, limit=2)
    assert [s.event.id for s in first] == ["m3", "m5"]
    assert first[0].evaluated_at is None
    last = first[-1]
    rest = await store.events_received(since, after=(last.received_at, last.seq), limit=10)
    assert [s.event.id for s in rest] == ["m7", "m9"]
    assert await store.events_received(at(10), limit=10) == []


async def test_find_events_lists_every_source_of_an_id(store: Store) -> None:
    for source in ("b", "a", "c"):
        await store.ingest(Event("t", source, id="x"), at(1))
    assert [s.event.source for s in await store.find_events("x", 10)] == ["b", "a", "c"]
    assert [s.event.source for s in await store.find_events("x", 2)] == ["b", "a"]
    assert await store.find_events("y", 10) == []
