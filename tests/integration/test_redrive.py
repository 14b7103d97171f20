"""Re-driving stored events through today's triggers, on both stores: dedupe makes it safe."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from reactor.client import AsyncClient
from reactor.clock import FakeClock
from reactor.errors import ClientError
from reactor.events import Event
from reactor.explain import explain_event
from reactor.redrive import RedriveError, RedriveRequest, UnknownEvent, parse_request
from reactor.service import Reactor
from reactor.store import RunRecord, Store

from .support import wait_run

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

# Matches nothing the tests publish: events arrive before any pipeline wants them.
OTHER = """
name: other
triggers:
  - on: event
    type: invoice.paid
tasks:
  - id: show
    shell: "echo invoice"
"""

ORDERS = """
name: orders
params:
  n: {type: integer}
triggers:
  - on: event
    type: order.created
    params: {n: "{{ event.data.n }}"}
tasks:
  - id: show
    shell: "echo order {{ params.n }}"
"""

AUDIT = """
name: audit
triggers:
  - on: event
    type: "order.*"
tasks:
  - id: show
    shell: "echo audit"
"""

START = datetime(2026, 3, 1, tzinfo=UTC)


def order(n: int, type_: str = "order.created") -> Event:
    return Event(type_, "shop", {"n": n}, id=f"order-{n}")


async def all_runs(store: Store) -> list[RunRecord]:
    return await store.list_runs(pipeline=None, limit=1000, before=None)


async def outcome_of(reactor: Reactor, event_id: str) -> dict[str, dict]:
    found = await explain_event(reactor.store, reactor.pipelines, event_id, None)
    assert found is not None
    return {entry["trigger"]: entry for entry in found["triggers"] if entry["recorded"]}


async def test_an_event_no_trigger_wanted_reaches_a_pipeline_added_later_once(
    write_pipeline, start_reactor, store: Store
) -> None:
    write_pipeline("other.yaml", OTHER)
    async with start_reactor() as reactor:
        assert (await reactor.publish(order(1))).run_ids == []
        assert await outcome_of(reactor, "order-1") == {}

        write_pipeline("orders.yaml", ORDERS)
        await reactor.reload()
        first = await reactor.redrive(RedriveRequest(event_id="order-1"), actor="alice")
        [item] = first.events
        assert item.existing_run_ids == []
        [run_id] = item.new_run_ids
        [decision] = item.decisions
        assert (decision["trigger"], decision["outcome"], decision["run_id"]) == (
            "orders/event",
            "fired",
            run_id,
        )
        run = await wait_run(store, run_id)
        assert (run.status, run.params, run.event_ids) == ("succeeded", {"n": 1}, ["order-1"])
        assert (await outcome_of(reactor, "order-1"))["orders/event"]["run_id"] == run_id

        again = await reactor.redrive(RedriveRequest(event_id="order-1"), actor="alice")
        [item] = again.events
        assert (item.new_run_ids, item.existing_run_ids) == ([], [run_id])
        [decision] = item.decisions
        assert decision["run_id"] == run_id
        assert decision["reason"].endswith(f"; run {run_id} existed already")
        assert again.to_json()["existing_run_ids"] == [run_id]
        # The stored outcome names the run that exists, not one planned in vain.
        recorded = (await outcome_of(reactor, "order-1"))["orders/event"]
        assert recorded["run_id"] == run_id
        assert [r.id for r in await all_runs(store)] == [run_id]

        with pytest.raises(UnknownEvent, match=r"^no event 'nope'$"):
            await reactor.redrive(RedriveRequest(event_id="nope"), actor="alice")
        with pytest.raises(UnknownEvent, match=r"^no event 'order-1' from source 'crm'$"):
            await reactor.redrive(RedriveRequest(event_id="order-1", source="crm"), actor="a")


async def test_a_redrive_for_one_pipeline_keeps_the_other_triggers_records(
    write_pipeline, start_reactor, store: Store
) -> None:
    write_pipeline("audit.yaml", AUDIT)
    async with start_reactor() as reactor:
        [audit_run] = (await reactor.publish(order(1))).run_ids
        await wait_run(store, audit_run)
        write_pipeline("orders.yaml", ORDERS)
        await reactor.reload()

        with pytest.raises(RedriveError, match=r"^unknown pipeline 'nope' \(known: audit, orders"):
            await reactor.redrive(RedriveRequest(event_id="order-1", pipeline="nope"), actor="a")
        with pytest.raises(RedriveError, match=r"^pipeline orders has no trigger 'x'"):
            await reactor.redrive(
                RedriveRequest(event_id="order-1", pipeline="orders", trigger="x"), actor="a"
            )
        done = await reactor.redrive(
            RedriveRequest(event_id="order-1", pipeline="orders", trigger="event"), actor="a"
        )
        [item] = done.events
        assert [d["trigger"] for d in item.decisions] == ["orders/event"]
        [new_run] = item.new_run_ids
        await wait_run(store, new_run)
        recorded = await outcome_of(reactor, "order-1")
        assert recorded["audit/event"]["run_id"] == audit_run
        assert recorded["orders/event"]["run_id"] == new_run


async def test_a_type_and_time_window_selects_and_a_dry_run_starts_nothing(
    write_pipeline, start_reactor, store: Store
) -> None:
    clock = FakeClock(START)
    write_pipeline("other.yaml", OTHER)
    async with start_reactor(clock=clock) as reactor:
        await reactor.publish(order(1))  # 00:00, before the window
        clock.advance(3600)
        await reactor.publish(order(2))  # 01:00
        await reactor.publish(order(3, "order.cancelled"))  # 01:00, another type
        clock.advance(3600)
        await reactor.publish(order(4))  # 02:00, the window's end (not included)
        write_pipeline("orders.yaml", ORDERS)
        await reactor.reload()

        window = parse_request(
            {"type": "order.c*ed", "from": "2026-03-01T01:00:00Z", "to": "2026-03-01T02:00:00Z"},
            clock.now(),
        )
        dry = await reactor.redrive(replace(window, dry_run=True), actor="x")
        assert [e.stored.event.id for e in dry.events] == ["order-2", "order-3"]
        assert dry.to_json()["would_start"] == 1
        assert dry.to_json()["new_run_ids"] == []
        assert await all_runs(store) == []
        assert await outcome_of(reactor, "order-2") == {}

        done = await reactor.redrive(window, actor="bob")
        assert [e.stored.event.id for e in done.events] == ["order-2", "order-3"]
        [run_id] = done.to_json()["new_run_ids"]
        run = await wait_run(store, run_id)
        assert run.event_ids == ["order-2"]
        assert [r.id for r in await all_runs(store)] == [run_id]

        # A dry run of it again names the run that exists and would start nothing.
        dry = await reactor.redrive(replace(window, dry_run=True), actor="x")
        assert dry.to_json()["existing_run_ids"] == [run_id]
        assert dry.to_json()["would_start"] == 0

        since = parse_request({"type": "order.*", "from": "3h", "limit": 2}, clock.now())
        assert since.start == START - timedelta(hours=1)
        with pytest.raises(
            RedriveError, match=r"^more than 2 events match; narrow the type or the time window"
        ):
            await reactor.redrive(since, actor="bob")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "body must be an object like"),
        ({"id": "a", "what": 1}, "unknown field(s) what; a re-drive takes"),
        ({"id": ""}, "id must be a non-empty string"),
        ({"id": "a", "type": "x"}, "id re-drives one event: give it without type, from or to"),
        ({"type": "x"}, "give id, or type and from:"),
        ({"type": "x", "from": "soon"}, "from 'soon' is not a date or time;"),
        ({"type": "x", "from": "2h", "to": "3h"}, "to (2026-03-01T00:00:00+00:00) must be after"),
        ({"type": "x", "from": "1h", "source": "s"}, "source goes with id"),
        ({"id": "a", "trigger": "t"}, "trigger needs pipeline"),
        ({"id": "a", "dry_run": "yes"}, "dry_run must be true or false"),
        ({"type": "x", "from": "1h", "limit": 10_001}, "limit must be a whole number from 1 to"),
    ],
)
def test_a_bad_request_says_what_is_wrong(body: object, message: str) -> None:
    with pytest.raises(RedriveError) as caught:
        parse_request(body, START + timedelta(hours=3))
    assert str(caught.value).startswith(message), str(caught.value)


async def test_the_api_and_client_redrive(write_pipeline, start_reactor, store: Store) -> None:
    write_pipeline("other.yaml", OTHER)
    async with start_reactor(http=("127.0.0.1", 0)) as reactor:
        base = f"http://127.0.0.1:{reactor.http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            published = await http.post(
                "/api/events",
                json={"specversion": "1.0", "type": "order.created", "source": "shop", "id": "o1"},
            )
            assert published.json()["run_ids"] == []
            write_pipeline("audit.yaml", AUDIT)
            await reactor.reload()

            answer = await http.post("/api/events/redrive", json={"id": "nope"})
            assert (answer.status_code, answer.json()) == (404, {"error": "no event 'nope'"})
            answer = await http.post("/api/events/redrive", json={"type": "x"})
            assert answer.status_code == 422
            assert answer.json()["error"].startswith("give id, or type and from")
            answer = await http.post("/api/events/redrive", content=b"{nope")
            assert answer.status_code == 400
            assert answer.json()["error"].startswith("body is not JSON")

            answer = await http.post(
                "/api/events/redrive", json={"id": "o1"}, headers={"X-Actor": "gina"}
            )
            assert answer.status_code == 200, answer.text
            found = answer.json()
            assert (found["actor"], found["count"], found["dry_run"]) == ("gina", 1, False)
            [run_id] = found["new_run_ids"]
            [item] = found["events"]
            assert item["event"]["id"] == "o1"
            assert item["decisions"][0]["run_id"] == run_id
            await wait_run(store, run_id)

        async with AsyncClient(base) as client:
            again = await client.redrive("o1", source="shop", actor="hank")
            assert (again["actor"], again["new_run_ids"]) == ("hank", [])
            assert again["existing_run_ids"] == [run_id]
            window = await client.redrive(type="order.*", start="1h", dry_run=True)
            assert (window["count"], window["would_start"]) == (1, 0)
            with pytest.raises(ClientError) as caught:
                await client.redrive("o1", source="crm")
            assert caught.value.status == 404
            assert str(caught.value) == "404: no event 'o1' from source 'crm'"
