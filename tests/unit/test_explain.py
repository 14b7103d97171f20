"""Explanations, pure: recorded decisions, reasons computed now, pipeline reports, dry runs."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reactor.events import Event
from reactor.explain import PipelineReport, dry_run, explain_stored, not_candidate_reason
from reactor.pipelines import Pipeline, load_pipeline
from reactor.store.base import StoredEvent
from reactor.store.records import RunRecord

ORDERS = """
name: orders
params:
  amount: {type: integer, default: 0}
triggers:
  - on: event
    id: big
    type: orders.paid
    when: "event.data.amount > 100"
    params: {amount: "{{ event.data.amount }}"}
  - on: event
    id: shop
    type: "orders.*"
    source: "shop/*"
  - on: event
    id: typed
    type: orders.paid
    params: {amount: "{{ event.data.note }}"}
tasks:
  - {id: a, shell: echo}
"""

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def orders(tmp_path: Path) -> Pipeline:
    path = tmp_path / "orders.yaml"
    path.write_text(textwrap.dedent(ORDERS).lstrip(), encoding="utf-8")
    return load_pipeline(path)


def stored(event: Event, outcome: list[dict] | None, seq: int = 1) -> StoredEvent:
    return StoredEvent(event, seq, NOW, outcome, NOW if outcome is not None else None)


def test_reasons_name_the_type_or_the_source(orders: Pipeline) -> None:
    big, shop, _ = orders.triggers
    assert not_candidate_reason(big, Event("orders.new", "shop/eu")) == (
        "type 'orders.new' does not match 'orders.paid'"
    )
    assert not_candidate_reason(shop, Event("orders.new", "till")) == (
        "source 'till' does not match 'shop/*'"
    )
    assert not_candidate_reason(shop, Event("orders.new", "shop/eu")) is None


def test_recorded_decisions_are_shown_and_the_rest_computed_now(orders: Pipeline) -> None:
    event = Event("orders.paid", "till", {"amount": 5})
    recorded = [
        {
            "trigger": "orders/big",
            "pipeline": "orders",
            "fired": False,
            "outcome": "condition_false",
            "reason": "when: 'event.data.amount > 100' is false (event.data.amount = 5)",
            "params": None,
            "values": {"event.data.amount": 5},
        },
        # A trigger removed since, and an outcome code this version does not know.
        {
            "trigger": "gone/old",
            "pipeline": "gone",
            "fired": False,
            "outcome": "waiting",
            "reason": "waiting in a batch",
            "params": None,
            "window": "w1",
        },
    ]
    found = explain_stored(stored(event, recorded), {"orders": orders})
    entries = {e["trigger"]: e for e in found["triggers"]}
    assert list(entries) == ["orders/big", "orders/shop", "orders/typed", "gone/old"]
    assert entries["orders/big"]["values"] == {"event.data.amount": 5}
    assert entries["orders/big"]["recorded"] is True
    assert entries["orders/shop"]["outcome"] == "not_candidate"
    assert entries["orders/shop"]["computed_now"] is True
    # Matches now but nothing was recorded: the pipeline changed since.
    assert entries["orders/typed"]["outcome"] == "not_recorded"
    assert entries["gone/old"]["loaded"] is False
    assert entries["gone/old"]["outcome"] == "waiting"
    assert entries["gone/old"]["window"] == "w1"
    assert found["evaluated"] is True
    assert found["evaluated_at"] == NOW.isoformat()
    assert found["fired"] == 0 and found["run_ids"] == []


def test_an_event_not_evaluated_yet_is_pending(orders: Pipeline) -> None:
    found = explain_stored(stored(Event("orders.paid", "shop/eu"), None), {"orders": orders})
    outcomes = [e["outcome"] for e in found["triggers"]]
    assert outcomes == ["pending", "pending", "pending"]
    assert found["evaluated"] is False and found["evaluated_at"] is None


def test_dry_run_decides_each_trigger_without_starting_anything(orders: Pipeline) -> None:
    entries = dry_run(orders, Event("orders.paid", "shop/eu", {"amount": 250}), {})
    assert [(e["trigger"], e["candidate"], e["outcome"]) for e in entries] == [
        ("orders/big", True, "fired"),
        ("orders/shop", True, "fired"),
        ("orders/typed", True, "params_invalid"),
    ]
    assert entries[0]["params"] == {"amount": 250}
    assert entries[1]["params"] == {"amount": 0}
    assert entries[2]["reason"].startswith("params:")
    entries = dry_run(orders, Event("billing.due", "shop/eu"), {})
    assert [e["outcome"] for e in entries] == ["not_candidate"] * 3


def test_a_pipeline_report_counts_outcomes_keeps_the_latest_and_names_unmatched_types(
    orders: Pipeline,
) -> None:
    report = PipelineReport(orders, NOW, NOW)
    for n in range(8):
        decision = {
            "trigger": "orders/big",
            "pipeline": "orders",
            "fired": False,
            "outcome": "condition_false",
            "reason": f"no {n}",
        }
        report.add_event(stored(Event("orders.paid", "x", id=f"e{n}"), [decision], n))
    report.add_event(
        stored(
            Event("orders.paid", "shop/a", id="f"),
            [
                {
                    "trigger": "orders/shop",
                    "pipeline": "orders",
                    "fired": True,
                    "outcome": "fired",
                    "reason": "matched",
                    "run_id": "r1",
                },
                {"trigger": "other/x", "pipeline": "other", "fired": True, "outcome": "fired"},
            ],
        )
    )
    report.add_event(stored(Event("billing.due", "x"), []))
    report.add_event(stored(Event("billing.due", "x"), [{"pipeline": "other", "fired": True}]))
    report.add_event(stored(Event("orders.paid", "x"), None))
    report.add_run(RunRecord("r1", "k", "orders", "v", "failed", {}, "orders/shop", [], NOW))
    found = report.to_json()
    assert found["events"] == {"total": 12, "reached": 9, "unevaluated": 1, "truncated": False}
    assert list(found["outcomes"]) == ["condition_false", "fired"]
    condition = found["outcomes"]["condition_false"]
    assert condition["count"] == 8
    assert [e["event_id"] for e in condition["last"]] == ["e7", "e6", "e5", "e4", "e3"]
    assert found["outcomes"]["fired"]["last"][0]["run_id"] == "r1"
    assert found["unmatched"] == {"count": 2, "by_type": {"billing.due": 2}}
    assert found["runs"]["by_status"] == {"failed": 1}
    assert found["runs"]["last"][0]["id"] == "r1"
