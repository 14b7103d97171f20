"""The metrics' pure parts: source labels, the bound on event types, what runs and tasks
count, and one registry per service."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from reactor.events import Event
from reactor.metrics import MAX_EVENT_SOURCES, MAX_EVENT_TYPES, Backlog, Metrics, event_source_label
from reactor.sensors import SensorHealth
from reactor.specs import HOOK_ATTRIBUTE
from reactor.store import RunRecord, TaskRecord

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(metrics.exposition().decode())
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def run(status: str, *, started: float | None = 0, ended: float | None = 90) -> RunRecord:
    return RunRecord(
        id="r1",
        run_key="k",
        pipeline="orders",
        version="v1",
        status=status,
        params={},
        trigger="orders/event",
        event_ids=["e1"],
        created_at=T0,
        started_at=T0 + timedelta(seconds=started) if started is not None else None,
        ended_at=T0 + timedelta(seconds=ended) if ended is not None else None,
    )


def task(task_id: str, status: str, *, started: float | None = 0) -> TaskRecord:
    return TaskRecord(
        "r1",
        task_id,
        status,
        attempts=1,
        started_at=T0 + timedelta(seconds=started) if started is not None else None,
        ended_at=T0 + timedelta(seconds=3),
    )


def test_the_source_label_says_where_an_event_came_in_from_a_bounded_set() -> None:
    def label(source: str, **extensions: str) -> str:
        return event_source_label(Event("t", source, extensions=dict(extensions)))

    assert label("reactor/sensors/orders/files") == "orders/files"
    assert label("reactor/hooks/github") == "hook:github"
    # A webhook in CloudEvents mode keeps the sender's source; the hook still names it.
    assert label("https://github.com/acme", **{HOOK_ATTRIBUTE: "github"}) == "hook:github"
    assert label("reactor/pipelines/orders") == "reactor"
    assert label("reactor/backfills/orders") == "reactor"
    assert label("reactor/api") == "api"
    assert label("billing-service/eu/42") == "api"


def test_new_events_and_duplicates_are_counted_apart() -> None:
    metrics = Metrics()
    event = Event("order.created", "shop")
    metrics.ingested(event, True)
    metrics.ingested(event, False)
    metrics.ingested(Event("order.created", "reactor/sensors/orders/kafka"), True)

    assert value(metrics, "reactor_events_total", source="api", type="order.created") == 1
    assert value(metrics, "reactor_events_total", source="orders/kafka", type="order.created") == 1
    assert value(metrics, "reactor_event_duplicates_total", source="api") == 1


def test_event_types_beyond_the_bound_are_counted_as_other() -> None:
    metrics = Metrics()
    for n in range(MAX_EVENT_TYPES + 5):
        metrics.ingested(Event(f"type.{n}", "shop"), True)
    metrics.ingested(Event("type.0", "reactor/sensors/a/b"), True)  # a type seen already

    found = samples(metrics)
    types = {
        dict(labels)["type"]
        for name, labels in found
        if name == "reactor_events_total" and dict(labels)["source"] == "api"
    }
    assert len(types) == MAX_EVENT_TYPES + 1
    assert value(metrics, "reactor_events_total", source="api", type="other") == 5
    assert value(metrics, "reactor_events_total", source="a/b", type="type.0") == 1


def test_sources_beyond_the_bound_are_counted_as_other() -> None:
    metrics = Metrics()
    for n in range(MAX_EVENT_SOURCES + 3):
        metrics.ingested(Event("t", f"reactor/sensors/made/up{n}"), True)
    metrics.ingested(Event("t", "reactor/sensors/made/up0"), False)  # a source seen already

    assert value(metrics, "reactor_events_total", source="other", type="t") == 3
    assert value(metrics, "reactor_events_total", source="made/up0", type="t") == 1
    assert value(metrics, "reactor_event_duplicates_total", source="made/up0") == 1


def test_trigger_evaluations_by_outcome() -> None:
    metrics = Metrics()
    outcome = [
        {"trigger": "orders/event", "pipeline": "orders", "outcome": "fired", "run_id": "r1"},
        {"trigger": "audit/event", "pipeline": "audit", "outcome": "paused"},
    ]
    metrics.event_decided(Event("t", "s"), outcome)
    metrics.event_decided(Event("t", "s"), outcome[:1])

    evaluations = "reactor_trigger_evaluations_total"
    fired = {"pipeline": "orders", "trigger": "orders/event", "outcome": "fired"}
    paused = {"pipeline": "audit", "trigger": "audit/event", "outcome": "paused"}
    assert value(metrics, evaluations, **fired) == 2
    assert value(metrics, evaluations, **paused) == 1


def test_a_run_counts_once_it_ends_with_its_duration() -> None:
    metrics = Metrics()
    metrics.run_changed(run("queued", started=None, ended=None))
    metrics.run_changed(run("running", ended=None))
    assert value(metrics, "reactor_runs_total", pipeline="orders", status="failed") is None

    metrics.run_changed(run("failed", started=0, ended=90))

    assert value(metrics, "reactor_runs_total", pipeline="orders", status="failed") == 1
    assert value(metrics, "reactor_run_duration_seconds_sum", pipeline="orders") == 90
    assert value(metrics, "reactor_run_duration_seconds_bucket", pipeline="orders", le="60.0") == 0
    assert value(metrics, "reactor_run_duration_seconds_bucket", pipeline="orders", le="120.0") == 1


def test_a_run_cancelled_while_queued_counts_without_a_duration() -> None:
    metrics = Metrics()
    metrics.run_changed(run("cancelled", started=None, ended=5))

    assert value(metrics, "reactor_runs_total", pipeline="orders", status="cancelled") == 1
    assert value(metrics, "reactor_run_duration_seconds_count", pipeline="orders") is None


def test_tasks_count_when_final_and_loop_iterations_do_not() -> None:
    metrics = Metrics()
    metrics.task_changed(run("running"), task("load", "running"), "attempt 1")
    metrics.task_changed(run("running"), task("load", "succeeded"), "")
    metrics.task_changed(run("running"), task("load[3]", "succeeded"), "")
    metrics.task_changed(run("running"), task("after", "upstream_failed", started=None), "")

    assert value(metrics, "reactor_tasks_total", pipeline="orders", status="succeeded") == 1
    assert value(metrics, "reactor_tasks_total", pipeline="orders", status="upstream_failed") == 1
    assert value(metrics, "reactor_task_duration_seconds_count", pipeline="orders") == 1
    assert value(metrics, "reactor_task_duration_seconds_sum", pipeline="orders") == 3


def test_the_start_latency_is_measured_from_the_event_that_fired_the_run() -> None:
    metrics = Metrics()
    metrics.run_changed(run("running"))  # started without an event's arrival: not measured
    assert value(metrics, "reactor_event_to_run_seconds_count", pipeline="orders") is None

    metrics.run_admitted("r1", time.perf_counter() - 0.5)
    metrics.run_changed(run("running"))
    metrics.run_changed(run("running"))  # told twice: measured once

    assert value(metrics, "reactor_event_to_run_seconds_count", pipeline="orders") == 1
    took = value(metrics, "reactor_event_to_run_seconds_sum", pipeline="orders")
    assert took is not None and took >= 0.5


def test_gauges_are_read_when_scraped() -> None:
    metrics = Metrics()
    backlog = Backlog()
    health = {"orders/kafka": SensorHealth(state="watching", lag=12), "a/files": SensorHealth()}
    metrics.watch(lambda: backlog, lambda: health)
    assert value(metrics, "reactor_rule_inbox_events") == 0
    backlog = Backlog(queued={"orders": 3}, running={"orders": 1}, inbox=7)
    health["orders/kafka"].lag = 40

    assert value(metrics, "reactor_runs_queued", pipeline="orders") == 3
    assert value(metrics, "reactor_runs_running", pipeline="orders") == 1
    assert value(metrics, "reactor_rule_inbox_events") == 7
    assert value(metrics, "reactor_sensor_lag", trigger="orders/kafka") == 40
    assert value(metrics, "reactor_sensor_lag", trigger="a/files") is None  # reports no lag
    assert value(metrics, "reactor_sensor_up", trigger="orders/kafka") == 1
    assert value(metrics, "reactor_sensor_up", trigger="a/files") == 0


def test_each_service_has_a_registry_of_its_own() -> None:
    first, second = Metrics(), Metrics()
    first.ingested(Event("t", "s"), True)

    assert value(first, "reactor_events_total", source="api", type="t") == 1
    assert value(second, "reactor_events_total", source="api", type="t") is None
