"""Pausing and resuming a pipeline or one trigger, on both stores: recorded, explained, replayed."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from helpers import wait_for

from reactor.client import AsyncClient
from reactor.clock import FakeClock
from reactor.errors import AdmissionError, ClientError
from reactor.events import Event
from reactor.explain import explain_event
from reactor.service import Reactor
from reactor.store import RunRecord, Store

from .support import wait_run

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

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

# Two triggers that both match a ``sync.*`` event: one can be paused alone.
SYNC = """
name: sync
params:
  via: {type: string}
triggers:
  - on: event
    id: fast
    type: "sync.*"
    params: {via: fast}
  - on: event
    id: slow
    type: "sync.*"
    params: {via: slow}
tasks:
  - id: show
    shell: "echo {{ params.via }}"
"""

HOURLY = """
name: hourly
params:
  at: {type: string}
triggers:
  - on: schedule
    every: 1h
    params: {at: "{{ logical.time }}"}
tasks:
  - id: show
    shell: "echo {{ params.at }}"
"""


BATCHED = """
name: readings
params:
  count: {type: integer}
triggers:
  - on: event
    type: sensor.reading
    batch: {max: 2, window: 1h}
    params: {count: "{{ events | length }}"}
tasks:
  - id: sum
    shell: "echo {{ params.count }}"
"""


def order(n: int) -> Event:
    return Event("order.created", "shop", {"n": n}, id=f"order-{n}")


async def outcome_of(reactor: Reactor, event_id: str) -> dict[str, dict]:
    found = await explain_event(reactor.store, reactor.pipelines, event_id, None)
    assert found is not None
    return {entry["trigger"]: entry for entry in found["triggers"]}


async def all_runs(store: Store) -> list[RunRecord]:
    return await store.list_runs(pipeline=None, limit=1000, before=None)


async def test_a_paused_pipeline_records_events_as_paused_and_drop_leaves_them(
    write_pipeline, start_reactor, store: Store
) -> None:
    write_pipeline("orders.yaml", ORDERS)
    async with start_reactor() as reactor:
        pause = await reactor.pause("orders", actor="alice")
        assert (pause.key, pause.actor) == ("orders", "alice")
        assert [(await reactor.publish(order(n))).run_ids for n in (1, 2)] == [[], []]

        entry = (await outcome_of(reactor, "order-1"))["orders/event"]
        assert (entry["outcome"], entry["fired"]) == ("paused", False)
        assert entry["reason"] == f"paused by alice since {pause.paused_at.isoformat()}"

        # A manual run is not held by the pause.
        manual = await reactor.run_now("orders", {"n": 0}, actor="alice")
        assert (await wait_run(store, manual.id)).status == "succeeded"

        with pytest.raises(
            AdmissionError,
            match=r"^2 event\(s\) were received while pipeline orders was paused \(paused by"
            r" alice since .*\): choose to replay them or to drop them",
        ):
            await reactor.resume("orders", replay=None, actor="bob")
        assert reactor.pause_of("orders") == pause  # still paused: nothing was chosen

        resumed = await reactor.resume("orders", replay=False, actor="bob")
        assert (resumed.replayed, resumed.dropped, resumed.run_ids) == (0, 2, [])
        assert reactor.pause_of("orders") is None

        [later] = (await reactor.publish(order(3))).run_ids
        assert (await wait_run(store, later)).params == {"n": 3}
        # Dropped: still explained as paused, and nothing started for them.
        assert (await outcome_of(reactor, "order-2"))["orders/event"]["outcome"] == "paused"

    runs = await all_runs(store)
    assert sorted(r.id for r in runs) == sorted([manual.id, later])


async def test_pausing_one_trigger_holds_only_it_and_a_replay_starts_each_run_once(
    write_pipeline, start_reactor, store: Store
) -> None:
    write_pipeline("sync.yaml", SYNC)
    async with start_reactor() as reactor:
        await reactor.pause("sync", "slow", actor="carol")
        first = await reactor.publish(Event("sync.a", "crm", {}, id="s-1"))
        second = await reactor.publish(Event("sync.b", "crm", {}, id="s-2"))
        fired = [*first.run_ids, *second.run_ids]
        assert len(fired) == 2
        assert {(await wait_run(store, r)).params["via"] for r in fired} == {"fast"}
        entries = await outcome_of(reactor, "s-1")
        assert entries["sync/fast"]["outcome"] == "fired"
        assert entries["sync/slow"]["outcome"] == "paused"
        assert entries["sync/slow"]["reason"].startswith("paused by carol since ")

        with pytest.raises(AdmissionError, match=r"^pipeline sync is not paused$"):
            await reactor.resume("sync", replay=True, actor="carol")

        resumed = await reactor.resume("sync", "slow", replay=True, actor="dave")
        assert (resumed.replayed, resumed.dropped, len(resumed.run_ids)) == (2, 0, 2)
        replayed = [await wait_run(store, r) for r in resumed.run_ids]
        assert [(r.params["via"], r.event_ids) for r in replayed] == [
            ("slow", ["s-1"]),
            ("slow", ["s-2"]),
        ]
        entries = await outcome_of(reactor, "s-1")
        assert entries["sync/slow"]["outcome"] == "fired"
        assert entries["sync/slow"]["run_id"] == resumed.run_ids[0]
        assert entries["sync/fast"]["run_id"] == first.run_ids[0]

        # Paused and resumed again: those events are no longer held, nothing starts twice.
        await reactor.pause("sync", "slow", actor="dave")
        again = await reactor.resume("sync", "slow", replay=True, actor="dave")
        assert (again.replayed, again.run_ids) == (0, [])

    assert len(await all_runs(store)) == 4


async def test_a_pause_survives_a_restart_and_is_replayed_after_it(
    write_pipeline, start_reactor, store: Store
) -> None:
    write_pipeline("orders.yaml", ORDERS)
    async with start_reactor() as reactor:
        pause = await reactor.pause("orders", actor="erin")
        assert (await reactor.publish(order(1))).run_ids == []

    async with start_reactor() as reactor:
        assert reactor.pause_of("orders") == pause
        assert (await reactor.publish(order(2))).run_ids == []
        with pytest.raises(AdmissionError, match=r"^pipeline orders is paused already"):
            await reactor.pause("orders", actor="erin")
        resumed = await reactor.resume("orders", replay=True, actor="erin")
        assert resumed.replayed == 2
        runs = [await wait_run(store, r) for r in resumed.run_ids]
        assert [r.params for r in runs] == [{"n": 1}, {"n": 2}]

    async with start_reactor() as reactor:
        assert reactor.pause_of("orders") is None
    assert await store.pauses() == []


async def test_a_paused_schedule_records_its_ticks_as_paused(
    write_pipeline, start_reactor, store: Store
) -> None:
    write_pipeline("hourly.yaml", HOURLY)
    clock = FakeClock(datetime(2026, 1, 1, 0, 30, tzinfo=UTC))
    async with start_reactor(clock=clock) as reactor:
        await reactor.pause("hourly", "schedule", actor="ops")

        def asleep() -> bool:
            health = reactor.sensor_health().get("hourly/schedule")
            return health is not None and health.message == "next tick 2026-01-01T01:00:00+00:00"

        await wait_for(asleep, message="the schedule to wait for 01:00")
        await clock.wait_for_sleepers(2)
        clock.advance(1800)

        async def tick_decided() -> bool:
            last = await store.last_event("reactor/sensors/hourly/schedule")
            return last is not None and last.outcome is not None

        await wait_for(tick_decided, message="the 01:00 tick to be decided")
        last = await store.last_event("reactor/sensors/hourly/schedule")
        assert last is not None and last.outcome is not None
        [record] = last.outcome
        assert (record["trigger"], record["outcome"], record["fired"]) == (
            "hourly/schedule",
            "paused",
            False,
        )
        assert record["reason"] == "paused by ops since 2026-01-01T00:30:00+00:00"
        assert await all_runs(store) == []

        resumed = await reactor.resume("hourly", "schedule", replay=True, actor="ops")
        [run_id] = resumed.run_ids
        run = await wait_run(store, run_id)
    assert run.params == {"at": "2026-01-01T01:00:00+00:00"}


async def test_a_paused_trigger_feeds_no_window_and_a_replay_fills_it(
    write_pipeline, start_reactor, store: Store
) -> None:
    write_pipeline("readings.yaml", BATCHED)
    async with start_reactor() as reactor:
        await reactor.pause("readings", "event", actor="ops")
        for n in (1, 2):
            published = await reactor.publish(Event("sensor.reading", "plant", {}, id=f"r-{n}"))
            assert published.run_ids == []
        assert await store.open_windows() == []
        entry = (await outcome_of(reactor, "r-1"))["readings/event"]
        assert entry["outcome"] == "paused"

        resumed = await reactor.resume("readings", "event", replay=True, actor="ops")
        assert resumed.replayed == 2
        [run_id] = resumed.run_ids
        run = await wait_run(store, run_id)
    assert (run.params, run.event_ids) == ({"count": 2}, ["r-1", "r-2"])


async def test_the_api_and_client_pause_and_resume(
    write_pipeline, start_reactor, store: Store
) -> None:
    write_pipeline("sync.yaml", SYNC)
    async with start_reactor(http=("127.0.0.1", 0)) as reactor:
        base = f"http://127.0.0.1:{reactor.http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            answer = await http.post("/api/pipelines/nope/pause")
            assert answer.status_code == 404
            assert answer.json() == {"error": "unknown pipeline 'nope' (known: sync)"}
            answer = await http.post("/api/pipelines/sync/pause", json={"trigger": "nope"})
            assert answer.status_code == 404
            assert answer.json() == {
                "error": "pipeline sync has no trigger 'nope' (its triggers: fast, slow)"
            }
            answer = await http.post("/api/pipelines/sync/pause", json={"trigger": 3})
            assert answer.status_code == 422
            assert answer.json() == {"error": "trigger: must be a trigger id (a string)"}
            answer = await http.post("/api/pipelines/sync/pause", json={"replay": True})
            assert answer.status_code == 422
            assert "unknown field(s) replay" in answer.json()["error"]
            answer = await http.post("/api/pipelines/sync/pause", content=b"{nope")
            assert answer.status_code == 400
            assert answer.json()["error"].startswith("body is not JSON")

            answer = await http.post("/api/pipelines/sync/pause", headers={"X-Actor": "gina"})
            assert answer.status_code == 201, answer.text
            assert answer.json()["actor"] == "gina"
            assert answer.json()["key"] == "sync"
            answer = await http.post("/api/pipelines/sync/pause")
            assert answer.status_code == 409
            assert answer.json()["error"].startswith(
                "pipeline sync is paused already (paused by gina since "
            )
            [listed] = (await http.get("/api/pipelines")).json()
            assert listed["paused"]["actor"] == "gina"
            assert [t["paused"] for t in listed["triggers"]] == [None, None]

            published = await http.post(
                "/api/events", json={"specversion": "1.0", "type": "sync.a", "source": "crm"}
            )
            assert published.json()["run_ids"] == []
            event_id = published.json()["event_id"]
            explained = (await http.get(f"/api/events/{event_id}/explain")).json()
            assert {t["outcome"] for t in explained["triggers"]} == {"paused"}
            # Runs on demand still start.
            manual = await http.post("/api/pipelines/sync/runs", json={"params": {"via": "hand"}})
            assert manual.status_code == 201, manual.text

            answer = await http.post("/api/pipelines/sync/resume", json={})
            assert answer.status_code == 422
            assert answer.json()["error"].startswith("replay: required")
            answer = await http.post("/api/pipelines/sync/resume", json={"replay": "yes"})
            assert answer.status_code == 422
            assert answer.json() == {"error": "replay: must be true, false or null"}
            answer = await http.post("/api/pipelines/sync/resume", json={"replay": None})
            assert answer.status_code == 409
            assert "choose to replay them or to drop them" in answer.json()["error"]
            answer = await http.post("/api/pipelines/nope/resume", json={"replay": False})
            assert answer.status_code == 404
            answer = await http.post(
                "/api/pipelines/sync/resume", json={"trigger": "fast", "replay": False}
            )
            assert answer.status_code == 409
            assert answer.json() == {
                "error": "trigger fast of pipeline sync is not paused"
                " (its pipeline is: resume pipeline sync)"
            }

        async with AsyncClient(base) as client:
            resumed = await client.resume("sync", replay=True, actor="hank")
            assert (resumed["key"], resumed["replayed"], resumed["dropped"]) == ("sync", 1, 0)
            assert resumed["paused_by"] == "gina"
            assert len(resumed["run_ids"]) == 2
            for run_id in resumed["run_ids"]:
                await wait_run(store, run_id)
            with pytest.raises(ClientError) as caught:
                await client.resume("sync", replay=False)
            assert caught.value.status == 409
            assert str(caught.value) == "409: pipeline sync is not paused"

            paused = await client.pause("sync", trigger="slow", actor="ivy")
            assert (paused["key"], paused["actor"]) == ("sync/slow", "ivy")
            [listed] = await client_pipelines(base)
            assert listed["paused"] is None
            assert [t["paused"] is not None for t in listed["triggers"]] == [False, True]
            resumed = await client.resume("sync", trigger="slow", replay=None)
            assert (resumed["replayed"], resumed["dropped"], resumed["run_ids"]) == (0, 0, [])


async def client_pipelines(base: str) -> list[dict]:
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        answer = await http.get("/api/pipelines")
        assert answer.status_code == 200
        listed: list[dict] = answer.json()
        return listed
