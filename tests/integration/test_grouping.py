"""Grouping triggers through the running service: batch, debounce, correlation, dedupe, rate.

Time is a FakeClock, so windows open, close and expire without waiting.
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import wait_for

from reactor.clock import FakeClock
from reactor.events import Event
from reactor.store import RunRecord, Store

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

BATCH = """
name: readings
params:
  count: {type: integer}
  first: {type: integer}
triggers:
  - on: event
    type: sensor.reading
    batch: {max: 3, window: 30s}
    params:
      count: "{{ events | length }}"
      first: "{{ events[0].data.value }}"
tasks:
  - id: sum
    shell: "echo {{ params.count }}"
"""

DEBOUNCE = """
name: rebuild
params:
  changes: {type: integer}
triggers:
  - on: event
    type: docs.changed
    debounce: {quiet: 10s, max_wait: 30s}
    params: {changes: "{{ events | length }}"}
tasks:
  - id: build
    shell: "echo {{ params.changes }}"
"""

CORRELATE = """
name: fulfil
params:
  order: {type: string}
  carrier: {type: string}
triggers:
  - on: event
    all_of:
      - {type: orders.paid}
      - {type: orders.shipped, when: "event.data.carrier != 'none'"}
    key: "{{ event.data.order_id }}"
    within: 1h
    params:
      order: "{{ events[0].data.order_id }}"
      carrier: "{{ events[1].data.carrier }}"
tasks:
  - id: invoice
    shell: "echo {{ params.order }} {{ params.carrier }}"
"""

DEDUPE = """
name: ingest
params:
  path: {type: string}
triggers:
  - on: event
    type: file.landed
    dedupe: {key: "{{ event.data.path }}", for: 1h}
    params: {path: "{{ event.data.path }}"}
tasks:
  - id: load
    shell: "echo {{ params.path }}"
"""

RATE = """
name: notify
params:
  n: {type: integer}
concurrency: {max_active_runs: 100}
triggers:
  - on: event
    type: alert.raised
    rate: {max: 2, per: 1m, over_limit: OVER}
    params: {n: "{{ event.data.n }}"}
tasks:
  - id: send
    shell: "echo {{ params.n }}"
"""


def reading(n: int) -> Event:
    return Event("sensor.reading", "tests/sensors", {"value": n}, id=f"r{n}")


async def runs_of(store: Store, pipeline: str) -> list[RunRecord]:
    return list(reversed(await store.list_runs(pipeline=pipeline, limit=1000, before=None)))


async def wait_runs(store: Store, pipeline: str, count: int) -> list[RunRecord]:
    async def finished() -> bool:
        runs = await runs_of(store, pipeline)
        return len(runs) >= count and all(r.status == "succeeded" for r in runs)

    await wait_for(finished, message=f"{count} finished run(s) of {pipeline}")
    return await runs_of(store, pipeline)


async def decision(store: Store, event: Event) -> dict[str, Any]:
    stored = await store.get_event(event.source, event.id)
    assert stored is not None and stored.outcome is not None
    [found] = stored.outcome
    return found


async def test_a_full_batch_runs_at_once_and_a_partial_one_when_its_window_closes(
    write_pipeline, start_reactor, store
) -> None:
    write_pipeline("readings.yaml", BATCH)
    clock = FakeClock()
    async with start_reactor(clock=clock) as reactor:
        for n in (1, 2, 3):
            await reactor.publish(reading(n))
        [full] = await wait_runs(store, "readings", 1)
        assert full.params == {"count": 3, "first": 1}
        assert full.event_ids == ["r1", "r2", "r3"]
        assert (await decision(store, reading(1)))["outcome"] == "waiting"
        last = await decision(store, reading(3))
        assert (last["outcome"], last["run_id"]) == ("fired", full.id)

        await reactor.publish(reading(4))
        await reactor.publish(reading(5))
        waiting = await decision(store, reading(5))
        assert waiting["outcome"] == "waiting" and "(2/3 events" in waiting["reason"]
        clock.advance(29)
        assert len(await runs_of(store, "readings")) == 1
        clock.advance(1)
        runs = await wait_runs(store, "readings", 2)
    assert runs[1].params == {"count": 2, "first": 4}
    assert runs[1].event_ids == ["r4", "r5"]


async def test_an_open_batch_survives_a_restart(write_pipeline, start_reactor, store) -> None:
    write_pipeline("readings.yaml", BATCH)
    clock = FakeClock()
    async with start_reactor(clock=clock) as reactor:
        await reactor.publish(reading(1))
        await reactor.publish(reading(2))
    assert await runs_of(store, "readings") == []

    async with start_reactor(clock=clock) as reactor:
        await reactor.publish(reading(3))
        [run] = await wait_runs(store, "readings", 1)
        assert run.event_ids == ["r1", "r2", "r3"]
        # The next batch starts empty: its window closing starts nothing.
        clock.advance(60)
        await reactor.publish(reading(4))
        clock.advance(30)
        runs = await wait_runs(store, "readings", 2)
    assert runs[1].event_ids == ["r4"]


async def test_debounce_waits_for_the_burst_to_be_quiet(
    write_pipeline, start_reactor, store
) -> None:
    write_pipeline("rebuild.yaml", DEBOUNCE)
    clock = FakeClock()
    async with start_reactor(clock=clock) as reactor:
        for n in range(3):
            await reactor.publish(Event("docs.changed", "tests/docs", {"n": n}, id=f"c{n}"))
            clock.advance(5)
        # 10 s after the last change: quiet.
        assert await runs_of(store, "rebuild") == []
        clock.advance(5)
        [run] = await wait_runs(store, "rebuild", 1)
        assert run.params == {"changes": 3}

        # A burst that never stops still runs after max_wait.
        for n in range(3, 12):
            await reactor.publish(Event("docs.changed", "tests/docs", {"n": n}, id=f"c{n}"))
            clock.advance(4)
        runs = await wait_runs(store, "rebuild", 2)
    assert runs[1].params["changes"] < 9


async def test_a_correlation_runs_once_both_events_arrived_for_the_same_key(
    write_pipeline, start_reactor, store
) -> None:
    write_pipeline("fulfil.yaml", CORRELATE)
    clock = FakeClock()
    paid = Event("orders.paid", "shop", {"order_id": "A-1"}, id="p1")
    other = Event("orders.paid", "shop", {"order_id": "B-2"}, id="p2")
    no_carrier = Event("orders.shipped", "shop", {"order_id": "A-1", "carrier": "none"}, id="s0")
    shipped = Event("orders.shipped", "shop", {"order_id": "A-1", "carrier": "dhl"}, id="s1")
    async with start_reactor(clock=clock) as reactor:
        await reactor.publish(paid)
        await reactor.publish(other)
        await reactor.publish(no_carrier)
        assert (await decision(store, no_carrier))["outcome"] == "condition_false"
        waiting = await decision(store, paid)
        assert waiting["outcome"] == "waiting"
        assert "waiting in group 'A-1' for orders.shipped" in waiting["reason"]
        await reactor.publish(shipped)
        [run] = await wait_runs(store, "fulfil", 1)
        assert run.params == {"order": "A-1", "carrier": "dhl"}
        assert run.event_ids == ["p1", "s1"]

        # B-2 never ships: its group times out, recorded as an event of the trigger.
        clock.advance(3600)

        async def timed_out() -> Any:
            stored = await store.last_event("reactor/triggers/fulfil/event")
            return stored

        await wait_for(timed_out, message="the correlation timeout to be recorded")
        note = await timed_out()
    assert note.event.type == "reactor.trigger.correlation_timeout"
    assert note.event.data["key"] == "B-2"
    assert note.event.data["events"] == ["p2"]
    assert note.event.data["missing"] == ["orders.shipped"]
    assert len(await runs_of(store, "fulfil")) == 1


async def test_dedupe_holds_for_its_period_and_across_restarts(
    write_pipeline, start_reactor, store
) -> None:
    write_pipeline("ingest.yaml", DEDUPE)
    clock = FakeClock()

    def landed(n: int, path: str) -> Event:
        return Event("file.landed", "tests/files", {"path": path}, id=f"f{n}")

    async with start_reactor(clock=clock) as reactor:
        await reactor.publish(landed(1, "a.csv"))
        await reactor.publish(landed(2, "a.csv"))
        await reactor.publish(landed(3, "b.csv"))
        await wait_runs(store, "ingest", 2)
    dup = await decision(store, landed(2, "a.csv"))
    assert dup["outcome"] == "deduplicated"
    assert "dedupe key 'a.csv' already seen by event f1" in dup["reason"]

    async with start_reactor(clock=clock) as reactor:
        await reactor.publish(landed(4, "a.csv"))
        assert (await decision(store, landed(4, "a.csv")))["outcome"] == "deduplicated"
        clock.advance(3601)
        await reactor.publish(landed(5, "a.csv"))
        runs = await wait_runs(store, "ingest", 3)
    assert [r.params["path"] for r in runs] == ["a.csv", "b.csv", "a.csv"]


@pytest.mark.parametrize("over", ["queue", "drop"])
async def test_a_rate_limit_queues_or_drops_what_is_over(
    write_pipeline, start_reactor, store, over: str
) -> None:
    write_pipeline("notify.yaml", RATE.replace("OVER", over))
    clock = FakeClock()
    alerts = [Event("alert.raised", "tests/alerts", {"n": n}, id=f"a{n}") for n in range(5)]
    async with start_reactor(clock=clock) as reactor:
        for alert in alerts:
            await reactor.publish(alert)
        await wait_runs(store, "notify", 2)
        third = await decision(store, alerts[2])
        assert third["outcome"] == ("rate_limited" if over == "queue" else "dropped")
        assert "rate limit: 2 runs per 60s" in third["reason"]
        clock.advance(60)
        if over == "queue":
            await wait_runs(store, "notify", 4)
            clock.advance(60)
            runs = await wait_runs(store, "notify", 5)
            assert [r.params["n"] for r in runs] == [0, 1, 2, 3, 4]
        else:
            await reactor.publish(Event("alert.raised", "tests/alerts", {"n": 9}, id="a9"))
            runs = await wait_runs(store, "notify", 3)
            assert [r.params["n"] for r in runs] == [0, 1, 9]
