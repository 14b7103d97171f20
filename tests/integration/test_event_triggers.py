"""``on: event`` triggers through ``Reactor.publish``: matching, conditions, bad params, dupes."""

from __future__ import annotations

import pytest
from helpers import Recorder

from reactor.events import Event
from reactor.store import Store

from .support import wait_run

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

ORDERS = """
name: orders
params:
  order_id: {type: string}
  amount: {type: integer, default: 0}
triggers:
  - on: event
    id: any_order
    type: "orders.*"
    params:
      order_id: "{{ event.data.order_id }}"
      amount: "{{ event.data.amount }}"
tasks:
  - id: show
    shell: "echo {{ params.order_id }} {{ params.amount }}"
"""

BIG_ORDERS = """
name: big_orders
params:
  amount: {type: integer}
triggers:
  - on: event
    type: orders.created
    source: "shop/*"
    when: "event.data.amount > 100"
    params: {amount: "{{ event.data.amount }}"}
tasks:
  - id: show
    shell: "echo big {{ params.amount }}"
"""


async def outcome(store: Store, event: Event) -> list[dict]:
    stored = await store.get_event(event.source, event.id)
    assert stored is not None
    return stored.outcome or []


async def test_a_glob_on_the_type_starts_a_run_with_rendered_params(
    write_pipeline, start_reactor, store
) -> None:
    write_pipeline("orders.yaml", ORDERS)
    async with start_reactor() as reactor:
        created = await reactor.publish(
            Event("orders.created", "shop/eu", {"order_id": "A-1", "amount": 12})
        )
        refunded = await reactor.publish(
            Event("orders.refunded", "shop/us", {"order_id": "A-2", "amount": 3})
        )
        other = Event("customers.created", "shop/eu", {"order_id": "A-3", "amount": 1})
        unrelated = await reactor.publish(other)
        prefix = await reactor.publish(Event("orders", "shop/eu", {"order_id": "A-4", "amount": 1}))
        runs = [await wait_run(store, r) for r in created.run_ids + refunded.run_ids]

    assert (created.duplicate, len(created.run_ids)) == (False, 1)
    assert len(refunded.run_ids) == 1
    assert unrelated.run_ids == [] and prefix.run_ids == []
    assert await outcome(store, other) == []
    assert [(r.status, r.trigger, r.params) for r in runs] == [
        ("succeeded", "orders/any_order", {"order_id": "A-1", "amount": 12}),
        ("succeeded", "orders/any_order", {"order_id": "A-2", "amount": 3}),
    ]
    assert runs[0].event_ids == [created.event_id]
    outputs = [(await store.task_runs(r.id))[0].output for r in runs]
    assert outputs == ["A-1 12", "A-2 3"]


async def test_when_false_records_the_reason_and_starts_nothing(
    write_pipeline, start_reactor, store
) -> None:
    write_pipeline("big.yaml", BIG_ORDERS)
    small = Event("orders.created", "shop/eu", {"amount": 5})
    big = Event("orders.created", "shop/eu", {"amount": 500})
    elsewhere = Event("orders.created", "warehouse", {"amount": 500})
    no_amount = Event("orders.created", "shop/eu", {"total": 500})
    async with start_reactor() as reactor:
        assert (await reactor.publish(small)).run_ids == []
        [run_id] = (await reactor.publish(big)).run_ids
        assert (await reactor.publish(elsewhere)).run_ids == []
        assert (await reactor.publish(no_amount)).run_ids == []
        run = await wait_run(store, run_id)

    assert run.params == {"amount": 500}
    assert await outcome(store, small) == [
        {
            "trigger": "big_orders/event",
            "pipeline": "big_orders",
            "fired": False,
            "outcome": "condition_false",
            "reason": "when: 'event.data.amount > 100' is false (event.data.amount = 5)",
            "params": None,
            "values": {"event.data.amount": 5},
        }
    ]
    [fired] = await outcome(store, big)
    assert (fired["fired"], fired["reason"], fired["run_id"]) == (True, "matched", run_id)
    # The source glob does not match: the trigger is not even a candidate.
    assert await outcome(store, elsewhere) == []
    [failed] = await outcome(store, no_amount)
    assert failed["fired"] is False
    assert failed["reason"].startswith("when: ")
    assert "amount" in failed["reason"]
    assert len(await store.list_runs(pipeline=None, limit=10, before=None)) == 1


async def test_bad_params_fail_the_trigger_with_a_reason_and_the_service_carries_on(
    write_pipeline, start_reactor, store, recorder: Recorder
) -> None:
    write_pipeline("orders.yaml", ORDERS)
    not_a_number = Event("orders.created", "shop/eu", {"order_id": "B-1", "amount": "lots"})
    no_order_id = Event("orders.created", "shop/eu", {"amount": 4})
    async with start_reactor() as reactor:
        first = await reactor.publish(not_a_number)
        second = await reactor.publish(no_order_id)
        fine = await reactor.publish(
            Event("orders.created", "shop/eu", {"order_id": "B-2", "amount": "7"})
        )
        run = await wait_run(store, fine.run_ids[0])

    assert first.run_ids == [] and second.run_ids == []
    [decision] = await outcome(store, not_a_number)
    assert decision["fired"] is False
    assert decision["reason"].startswith("params: param 'amount': expected integer, got 'lots'")
    [decision] = await outcome(store, no_order_id)
    assert decision["fired"] is False
    assert decision["reason"] == (
        "params: 'dict object' has no attribute 'order_id' (in 'event.data.order_id')"
    )
    # A string of digits is a fine integer: params are typed, not just checked.
    assert (run.status, run.params) == ("succeeded", {"order_id": "B-2", "amount": 7})
    assert [r.id for r in recorder.runs.values()] == [run.id]


async def test_a_duplicate_event_starts_nothing_and_returns_the_original_runs(
    write_pipeline, start_reactor, store
) -> None:
    write_pipeline("orders.yaml", ORDERS)
    write_pipeline("big.yaml", BIG_ORDERS)
    event = Event("orders.created", "shop/eu", {"order_id": "C-1", "amount": 900}, id="evt-1")
    async with start_reactor() as reactor:
        original = await reactor.publish(event)
        again = await reactor.publish(
            Event("orders.created", "shop/eu", {"order_id": "other", "amount": 1}, id="evt-1")
        )
        for run_id in original.run_ids:
            await wait_run(store, run_id)

    assert original.duplicate is False
    assert len(original.run_ids) == 2  # one per pipeline whose trigger fired
    assert again.duplicate is True
    assert again.event_id == original.event_id == "evt-1"
    assert sorted(again.run_ids) == sorted(original.run_ids)

    # Redelivered after a restart, on the same store: still a duplicate.
    async with start_reactor() as reactor:
        later = await reactor.publish(event)
    assert later.duplicate is True
    assert sorted(later.run_ids) == sorted(original.run_ids)
    runs = await store.list_runs(pipeline=None, limit=10, before=None)
    assert sorted(r.id for r in runs) == sorted(original.run_ids)


async def test_the_same_id_from_another_source_is_another_event(
    write_pipeline, start_reactor, store
) -> None:
    write_pipeline("orders.yaml", ORDERS)
    async with start_reactor() as reactor:
        data = {"order_id": "D", "amount": 1}
        one = await reactor.publish(Event("orders.created", "shop/eu", data, id="7"))
        two = await reactor.publish(Event("orders.created", "shop/us", data, id="7"))
        for run_id in one.run_ids + two.run_ids:
            await wait_run(store, run_id)

    assert not one.duplicate and not two.duplicate
    assert len(set(one.run_ids + two.run_ids)) == 2
