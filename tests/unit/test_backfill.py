"""Backfill planning: logical times in [from, to), steps, ids, params as scheduled runs get."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from spec_files import write

from connectors.schedule import previous_fire_time, tick_event
from reactor.backfill import (
    MAX_RUNS,
    BackfillError,
    backfill_id,
    backfill_json,
    backfill_of,
    count_states,
    ended_status,
    logical_times,
    parse_instant,
    parse_request,
    plan_backfill,
    run_key_prefix,
)
from reactor.events import logical_scope
from reactor.pipelines import Pipeline, load_pipeline
from reactor.rules import decide
from reactor.sensors import sensor_source
from reactor.store.base import BackfillRow
from reactor.store.records import RunRecord

ENV = {"REGION": "eu"}


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def pipeline(
    tmp_path: Path, triggers: list[dict[str, Any]], params: dict[str, Any] | None = None
) -> Pipeline:
    """A pipeline ``daily`` with these triggers (YAML is a superset of JSON)."""
    text = json.dumps(
        {
            "name": "daily",
            "params": params or {},
            "triggers": triggers,
            "tasks": [{"id": "a", "shell": "true"}],
        }
    )
    return load_pipeline(write(tmp_path, "daily.yaml", text), display="daily.yaml")


DAILY = [
    {
        "id": "nightly",
        "on": "schedule",
        "cron": "0 2 * * *",
        "timezone": "Europe/Amsterdam",
        "params": {
            "day": "{{ logical.time }}",
            "since": "{{ logical.start }}",
            "region": "{{ env.REGION }}",
        },
    }
]
DAY_PARAMS = {
    "day": {"type": "string"},
    "since": {"type": "string"},
    "region": {"type": "string"},
    "limit": {"type": "integer", "default": 10},
}
EVENT = [{"on": "event", "type": "x"}]


def test_schedule_ticks_in_the_range_from_included_to_excluded(tmp_path: Path) -> None:
    p = pipeline(tmp_path, DAILY, DAY_PARAMS)
    # 2026-03-01 02:00 Amsterdam is 01:00 UTC: from at that instant is included, to is not.
    times = logical_times(p, utc(2026, 3, 1, 1), utc(2026, 3, 4, 1), None)
    assert [t.time.isoformat() for t in times] == [
        "2026-03-01T02:00:00+01:00",
        "2026-03-02T02:00:00+01:00",
        "2026-03-03T02:00:00+01:00",
    ]
    # Each closes the interval since the tick before, the first one's included.
    assert [t.start.isoformat() for t in times] == [
        "2026-02-28T02:00:00+01:00",
        "2026-03-01T02:00:00+01:00",
        "2026-03-02T02:00:00+01:00",
    ]
    assert [t.end for t in times] == [t.time for t in times]


def test_logical_values_and_params_are_those_of_a_scheduled_run(tmp_path: Path) -> None:
    p = pipeline(tmp_path, DAILY, DAY_PARAMS)
    trigger = p.triggers[0]
    # Across the spring-forward night of Europe/Amsterdam (2026-03-29).
    plan = plan_backfill(p, utc(2026, 3, 27), utc(2026, 3, 31), None, {"limit": "3"}, ENV)
    assert len(plan.events) == 4
    for event, params in zip(plan.events, plan.params, strict=True):
        tick = datetime.fromisoformat(event.data["logical_time"])
        scheduled = tick_event(trigger.spec, sensor_source(trigger.key), tick)  # type: ignore[arg-type]
        assert logical_scope(event, event.time) == logical_scope(scheduled, scheduled.time)
        assert event.data["scheduled_timezone"] == "Europe/Amsterdam"
        fired = decide(trigger, p, scheduled, ENV)
        assert fired.params is not None
        # The backfill's own params override the trigger's; the rest is the same.
        assert params == fired.params | {"limit": 3}
    assert plan.params[0]["day"] == "2026-03-27T02:00:00+01:00"
    assert plan.params[0]["since"] == "2026-03-26T02:00:00+01:00"
    # 02:00 does not exist that night: the run is at the end of the gap, as scheduled.
    assert plan.params[2]["day"] == "2026-03-29T03:00:00+02:00"


def test_the_first_tick_looks_back_as_far_as_the_schedule_needs(tmp_path: Path) -> None:
    # Fires on the 1st of January only: the tick before the first is a year back.
    p = pipeline(tmp_path, [{"id": "y", "on": "schedule", "cron": "0 0 1 1 *"}])
    times = logical_times(p, utc(2026, 1, 1), utc(2026, 1, 2), None)
    assert [(t.start, t.time) for t in times] == [(utc(2025, 1, 1), utc(2026, 1, 1))]
    spec: Any = p.triggers[0].spec
    assert previous_fire_time(spec, utc(2026, 1, 1)) == utc(2025, 1, 1)


def test_fixed_steps_from_from_each_closing_the_step_before(tmp_path: Path) -> None:
    p = pipeline(tmp_path, EVENT)
    times = logical_times(p, utc(2026, 1, 1), utc(2026, 1, 3, 12), 86400.0)
    assert [t.time for t in times] == [utc(2026, 1, 1), utc(2026, 1, 2), utc(2026, 1, 3)]
    assert [t.start for t in times] == [utc(2025, 12, 31), utc(2026, 1, 1), utc(2026, 1, 2)]
    plan = plan_backfill(p, utc(2026, 1, 1), utc(2026, 1, 2), 6 * 3600.0, {}, ENV)
    assert [e.data["logical_time"] for e in plan.events] == [
        "2026-01-01T00:00:00+00:00",
        "2026-01-01T06:00:00+00:00",
        "2026-01-01T12:00:00+00:00",
        "2026-01-01T18:00:00+00:00",
    ]
    assert plan.params == ({},) * 4


def test_run_keys_name_the_backfill_and_the_logical_time(tmp_path: Path) -> None:
    p = pipeline(tmp_path, EVENT)
    plan = plan_backfill(p, utc(2026, 1, 1), utc(2026, 1, 3), 86400.0, {}, ENV)
    assert plan.keys == (
        f"daily/backfill:{plan.id}/2026-01-01T00:00:00+00:00",
        f"daily/backfill:{plan.id}/2026-01-02T00:00:00+00:00",
    )
    assert all(k.startswith(run_key_prefix("daily", plan.id)) for k in plan.keys)
    assert {backfill_of(k) for k in plan.keys} == {plan.id}
    assert backfill_of("daily/manual@0123") is None
    assert backfill_of("daily/parent:r1/t/1") is None


def test_the_id_depends_on_what_is_asked_not_how_it_is_written() -> None:
    a = backfill_id("p", utc(2026, 1, 1), utc(2026, 1, 5), None, {"x": 1, "y": 2})
    same_instant = datetime.fromisoformat("2026-01-01T01:00:00+01:00")
    assert a == backfill_id("p", same_instant, utc(2026, 1, 5), None, {"y": 2, "x": 1})
    others = {
        backfill_id("q", utc(2026, 1, 1), utc(2026, 1, 5), None, {"x": 1, "y": 2}),
        backfill_id("p", utc(2026, 1, 2), utc(2026, 1, 5), None, {"x": 1, "y": 2}),
        backfill_id("p", utc(2026, 1, 1), utc(2026, 1, 6), None, {"x": 1, "y": 2}),
        backfill_id("p", utc(2026, 1, 1), utc(2026, 1, 5), 3600.0, {"x": 1, "y": 2}),
        backfill_id("p", utc(2026, 1, 1), utc(2026, 1, 5), None, {"x": 1}),
    }
    assert a not in others
    assert len(others) == 5


@pytest.mark.parametrize(
    ("triggers", "start", "end", "step", "message"),
    [
        (
            DAILY,
            utc(2026, 1, 5),
            utc(2026, 1, 5),
            None,
            "from (2026-01-05T00:00:00+00:00) must be before to (2026-01-05T00:00:00+00:00)",
        ),
        (
            DAILY,
            utc(2026, 1, 6),
            utc(2026, 1, 5),
            None,
            "from (2026-01-06T00:00:00+00:00) must be before to (2026-01-05T00:00:00+00:00)",
        ),
        (
            EVENT,
            utc(2026, 1, 1),
            utc(2026, 1, 5),
            None,
            "daily has no on: schedule trigger, so its logical times are not known;"
            " give --step (step in the API), like --step 1d",
        ),
        (
            [
                {"id": "a", "on": "schedule", "cron": "@daily"},
                {"id": "b", "on": "schedule", "every": "1h"},
            ],
            utc(2026, 1, 1),
            utc(2026, 1, 5),
            None,
            "daily has 2 on: schedule triggers (a, b), so its logical times are not known;"
            " give --step (step in the API), like --step 1d",
        ),
        (
            [{"on": "schedule", "cron": "* * * * *"}],
            utc(2026, 1, 1),
            utc(2026, 2, 1),
            None,
            f"daily: 2026-01-01T00:00:00+00:00 to 2026-02-01T00:00:00+00:00 gives more than"
            f" {MAX_RUNS} runs; backfill a shorter range (or a longer --step) at a time",
        ),
        (
            EVENT,
            utc(2026, 1, 1),
            utc(2026, 1, 2),
            1.0,
            f"daily: 2026-01-01T00:00:00+00:00 to 2026-01-02T00:00:00+00:00 gives more than"
            f" {MAX_RUNS} runs; backfill a shorter range (or a longer --step) at a time",
        ),
        (
            EVENT,
            utc(2026, 1, 1),
            utc(2026, 1, 2),
            0.0,
            "step must be longer than 0, got 0.0s",
        ),
    ],
)
def test_bad_ranges_say_what_is_wrong(
    tmp_path: Path,
    triggers: list[dict[str, Any]],
    start: datetime,
    end: datetime,
    step: float | None,
    message: str,
) -> None:
    p = pipeline(tmp_path, triggers, DAY_PARAMS if triggers is DAILY else None)
    with pytest.raises(BackfillError) as caught:
        plan_backfill(p, start, end, step, {}, ENV)
    assert str(caught.value) == message


def test_exactly_the_cap_is_allowed(tmp_path: Path) -> None:
    p = pipeline(tmp_path, EVENT)
    end = utc(2026, 1, 1) + timedelta(minutes=MAX_RUNS)
    assert len(logical_times(p, utc(2026, 1, 1), end, 60.0)) == MAX_RUNS


def test_a_range_without_ticks_is_refused(tmp_path: Path) -> None:
    p = pipeline(tmp_path, [{"on": "schedule", "cron": "0 0 1 1 *"}])
    with pytest.raises(BackfillError) as caught:
        plan_backfill(p, utc(2026, 2, 1), utc(2026, 3, 1), None, {}, ENV)
    assert str(caught.value) == (
        "daily has no logical time in [2026-02-01T00:00:00+00:00, 2026-03-01T00:00:00+00:00)"
    )


def test_params_that_do_not_fit_name_the_logical_time(tmp_path: Path) -> None:
    p = pipeline(tmp_path, DAILY, DAY_PARAMS)
    with pytest.raises(BackfillError) as caught:
        plan_backfill(p, utc(2026, 1, 1), utc(2026, 1, 2), None, {"nope": 1}, ENV)
    message = str(caught.value)
    assert message.startswith("daily: params for logical time 2026-01-01T02:00:00+01:00: ")
    assert "nope" in message


def test_request_bodies_are_checked_field_by_field() -> None:
    asked = parse_request(
        {"pipeline": "p", "from": "2026-01-01", "to": "2026-01-03T00:00:00+01:00", "step": "1d"}
    )
    assert asked.start == utc(2026, 1, 1)
    assert asked.end == datetime.fromisoformat("2026-01-03T00:00:00+01:00")
    assert (asked.step, asked.params, asked.concurrency) == (86400.0, {}, 4)
    problems = {
        "body must be an object": [],
        "unknown field 'form'": {"pipeline": "p", "form": "x", "to": "y"},
        "from is required (a string)": {"pipeline": "p", "to": "2026-01-01"},
        "from 'yesterday' is not a date or time": {"pipeline": "p", "from": "yesterday", "to": "x"},
        "step: 'daily' is not a duration": {
            "pipeline": "p",
            "from": "2026-01-01",
            "to": "x",
            "step": "daily",
        },
        "step must be longer than 0": {"pipeline": "p", "from": "a", "to": "b", "step": 0},
        "params must be an object": {"pipeline": "p", "from": "a", "to": "b", "params": [1]},
        "concurrency must be a whole number, got '2'": {
            "pipeline": "p",
            "from": "2026-01-01",
            "to": "2026-01-02",
            "concurrency": "2",
        },
    }
    for start, body in problems.items():
        with pytest.raises(BackfillError) as caught:
            parse_request(body)
        assert str(caught.value).startswith(start), (body, str(caught.value))


def test_naive_times_are_read_as_utc() -> None:
    assert parse_instant("2026-01-01", "from") == utc(2026, 1, 1)
    assert parse_instant("2026-01-01T06:00:00+01:00", "to") == utc(2026, 1, 1, 5)


def _run(status: str, n: int) -> RunRecord:
    return RunRecord(f"r{n}", f"k{n}", "p", "v", status, {}, None, [], utc(2026, 1, 1))


def test_counts_and_the_end_of_a_backfill() -> None:
    runs = [_run("succeeded", 1), _run("running", 2), _run("queued", 3)]
    assert count_states(runs, 5) == {
        "pending": 2,
        "queued": 1,
        "running": 1,
        "succeeded": 1,
        "failed": 0,
        "cancelled": 0,
    }
    assert ended_status([_run("succeeded", 1), _run("succeeded", 2)]) == ("succeeded", None)
    assert ended_status(
        [_run("succeeded", 1), _run("failed", 2), _run("failed", 3), _run("cancelled", 4)]
    ) == ("failed", "1 run cancelled, 2 runs failed")
    with pytest.raises(ValueError, match="1 runs have not ended"):
        ended_status([_run("running", 1)])


def test_the_api_shows_counts_and_runs() -> None:
    row = BackfillRow(
        id="b1",
        pipeline="p",
        start=utc(2026, 1, 1),
        end=utc(2026, 1, 3),
        step=86400.0,
        params={"x": 1},
        concurrency=2,
        total=2,
        status="running",
        created_at=utc(2026, 2, 1),
        actor="cli:me@host",
    )
    shown = backfill_json(row, [_run("running", 1)], with_runs=False)
    assert shown["counts"]["pending"] == 1
    assert shown["counts"]["running"] == 1
    assert shown["from"] == "2026-01-01T00:00:00+00:00"
    assert "runs" not in shown
    assert [r["id"] for r in backfill_json(row, [_run("running", 1)], with_runs=True)["runs"]] == [
        "r1"
    ]
