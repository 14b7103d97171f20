"""The schedule math: cron and every, DST days, leap days, catch-up; pure functions only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from connectors.schedule import (
    ScheduleTriggerSpec,
    catchup_ticks,
    fire_times,
    latest_fire_times,
    next_fire_times,
    previous_fire_time,
    tick_event,
)
from reactor.events import logical_scope
from reactor.specs import Schedule

AMS = ZoneInfo("Europe/Amsterdam")
NYC = ZoneInfo("America/New_York")


def spec(**fields: Any) -> ScheduleTriggerSpec:
    return ScheduleTriggerSpec(on="schedule", **fields)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def iso(times: list[datetime]) -> list[str]:
    return [t.isoformat() for t in times]


# Cron in a timezone, on ordinary days


def test_daily_cron_fires_at_the_local_time_and_keeps_it_across_dst() -> None:
    daily = spec(cron="0 6 * * *", timezone="Europe/Amsterdam")
    got = fire_times(daily, utc(2026, 3, 27), utc(2026, 3, 31))
    assert iso(got) == [
        "2026-03-27T06:00:00+01:00",
        "2026-03-28T06:00:00+01:00",
        "2026-03-29T06:00:00+02:00",
        "2026-03-30T06:00:00+02:00",
    ]


def test_aliases_expand_to_their_cron_expressions() -> None:
    after = utc(2026, 5, 13, 10, 30)
    assert iso(next_fire_times(spec(cron="@hourly"), after, 1)) == ["2026-05-13T11:00:00+00:00"]
    assert iso(next_fire_times(spec(cron="@daily"), after, 1)) == ["2026-05-14T00:00:00+00:00"]
    assert iso(next_fire_times(spec(cron="@weekly"), after, 1)) == ["2026-05-17T00:00:00+00:00"]
    assert iso(next_fire_times(spec(cron="@monthly"), after, 1)) == ["2026-06-01T00:00:00+00:00"]
    assert iso(next_fire_times(spec(cron="@yearly"), after, 1)) == ["2027-01-01T00:00:00+00:00"]


def test_next_fire_times_are_strictly_after_the_given_instant() -> None:
    hourly = spec(cron="0 * * * *")
    assert iso(next_fire_times(hourly, utc(2026, 1, 1, 5), 2)) == [
        "2026-01-01T06:00:00+00:00",
        "2026-01-01T07:00:00+00:00",
    ]
    assert next_fire_times(hourly, utc(2026, 1, 1, 5), 0) == []


# DST: a wall time that does not exist runs once at the next valid instant; one that
# exists twice runs once (its first occurrence).


def test_amsterdam_spring_forward_runs_a_skipped_time_once_at_the_end_of_the_gap() -> None:
    at_230 = spec(cron="30 2 * * *", timezone="Europe/Amsterdam")
    got = fire_times(at_230, utc(2026, 3, 28, 12), utc(2026, 3, 30, 12))
    assert iso(got) == ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]

    # Every 15 minutes from 02:00 to 02:45 falls in the gap: all of them run once, at 03:00.
    quarter = spec(cron="*/15 2-3 * * *", timezone="Europe/Amsterdam")
    got = fire_times(quarter, utc(2026, 3, 28, 23), utc(2026, 3, 29, 2))
    assert iso(got) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:15:00+02:00",
        "2026-03-29T03:30:00+02:00",
        "2026-03-29T03:45:00+02:00",
    ]


def test_amsterdam_fall_back_runs_a_repeated_time_once() -> None:
    at_230 = spec(cron="30 2 * * *", timezone="Europe/Amsterdam")
    got = fire_times(at_230, utc(2026, 10, 24, 12), utc(2026, 10, 26, 12))
    assert iso(got) == ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]

    half_hourly = spec(cron="*/30 * * * *", timezone="Europe/Amsterdam")
    got = fire_times(half_hourly, utc(2026, 10, 24, 23), utc(2026, 10, 25, 3))
    # 02:00 and 02:30 happen twice on the wall; each runs once, on its first pass.
    assert iso(got) == [
        "2026-10-25T01:30:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T03:00:00+01:00",
        "2026-10-25T03:30:00+01:00",
        "2026-10-25T04:00:00+01:00",
    ]


def test_new_york_spring_forward_and_fall_back() -> None:
    at_230 = spec(cron="30 2 * * *", timezone="America/New_York")
    spring = fire_times(at_230, utc(2026, 3, 7, 12), utc(2026, 3, 9, 12))
    assert iso(spring) == ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]

    at_130 = spec(cron="30 1 * * *", timezone="America/New_York")
    fall = fire_times(at_130, utc(2026, 10, 31, 12), utc(2026, 11, 2, 12))
    assert iso(fall) == ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]


def test_every_counts_elapsed_time_and_ignores_dst() -> None:
    hourly = spec(every="1h", timezone="America/New_York")
    got = fire_times(hourly, utc(2026, 11, 1, 4, 30), utc(2026, 11, 1, 7, 30))
    assert iso(got) == [
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T02:00:00-05:00",
    ]


# Leap days


def test_cron_on_the_29th_of_february_fires_only_in_leap_years() -> None:
    leap = spec(cron="0 12 29 2 *", timezone="Europe/Amsterdam")
    assert iso(next_fire_times(leap, utc(2026, 1, 1), 2)) == [
        "2028-02-29T12:00:00+01:00",
        "2032-02-29T12:00:00+01:00",
    ]
    assert previous_fire_time(leap, utc(2027, 1, 1)) == datetime(2024, 2, 29, 12, tzinfo=AMS)


def test_daily_schedules_cross_a_leap_day() -> None:
    daily = spec(cron="0 0 * * *")
    got = fire_times(daily, utc(2028, 2, 28), utc(2028, 3, 1))
    assert iso(got) == ["2028-02-29T00:00:00+00:00", "2028-03-01T00:00:00+00:00"]
    every_day = spec(every="1d", start="2028-02-27T08:00:00+00:00")
    got = fire_times(every_day, utc(2028, 2, 28, 9), utc(2028, 3, 1, 9))
    assert iso(got) == ["2028-02-29T08:00:00+00:00", "2028-03-01T08:00:00+00:00"]


# every: and start:


def test_every_is_aligned_to_its_start_or_to_the_epoch() -> None:
    five = spec(every="5m")
    assert iso(next_fire_times(five, utc(2026, 1, 1, 10, 2, 30), 2)) == [
        "2026-01-01T10:05:00+00:00",
        "2026-01-01T10:10:00+00:00",
    ]
    aligned = spec(every="1h", start="2026-01-01T00:15:00+01:00", timezone="Europe/Amsterdam")
    assert iso(next_fire_times(aligned, utc(2026, 6, 1, 10), 1)) == ["2026-06-01T12:15:00+02:00"]


# Catch-up after downtime


def test_catchup_policies_after_a_day_down() -> None:
    hourly = spec(cron="0 * * * *", max_catchup=3)
    last, now = utc(2026, 1, 1, 0), utc(2026, 1, 2, 0, 30)
    assert catchup_ticks(hourly.model_copy(update={"catchup": "none"}), last, now) == []
    assert iso(catchup_ticks(hourly, last, now)) == ["2026-01-02T00:00:00+00:00"]
    assert iso(catchup_ticks(hourly.model_copy(update={"catchup": "all"}), last, now)) == [
        "2026-01-01T22:00:00+00:00",
        "2026-01-01T23:00:00+00:00",
        "2026-01-02T00:00:00+00:00",
    ]
    # A first start catches nothing up, whatever the policy.
    assert catchup_ticks(hourly.model_copy(update={"catchup": "all"}), None, now) == []


def test_catchup_after_a_long_outage_is_bounded_without_listing_every_tick() -> None:
    every_second = spec(every="1s", catchup="all", max_catchup=2)
    got = catchup_ticks(every_second, utc(2020, 1, 1), utc(2026, 1, 1))
    assert iso(got) == ["2025-12-31T23:59:59+00:00", "2026-01-01T00:00:00+00:00"]
    minutely = spec(cron="* * * * *", catchup="all", max_catchup=2)
    assert len(catchup_ticks(minutely, utc(2020, 1, 1), utc(2026, 1, 1))) == 2


# The tick event


def test_tick_event_id_is_the_utc_instant_and_data_has_the_interval() -> None:
    daily = spec(cron="0 6 * * *", timezone="Europe/Amsterdam")
    tick = datetime(2026, 3, 30, 6, tzinfo=AMS)
    event = tick_event(daily, "reactor/sensors/p/schedule", tick)
    assert event.id == "2026-03-30T04:00:00+00:00"
    assert event.type == "reactor.schedule.tick"
    assert event.data == {
        "logical_time": "2026-03-30T06:00:00+02:00",
        "logical_start": "2026-03-29T06:00:00+02:00",
        "logical_end": "2026-03-30T06:00:00+02:00",
        "scheduled_timezone": "Europe/Amsterdam",
    }
    assert logical_scope(event, utc(2000, 1, 1)) == {
        "time": "2026-03-30T06:00:00+02:00",
        "start": "2026-03-29T06:00:00+02:00",
        "end": "2026-03-30T06:00:00+02:00",
    }


def test_logical_scope_without_a_tick_is_the_fallback_instant() -> None:
    moment = utc(2026, 2, 3, 4, 5)
    assert logical_scope(None, moment) == dict.fromkeys(
        ("time", "start", "end"), moment.isoformat()
    )


def test_a_schedule_spec_is_a_schedule_for_the_cli() -> None:
    daily = spec(cron="0 6 * * *", timezone="Europe/Amsterdam")
    assert isinstance(daily, Schedule)
    assert daily.describe() == "cron '0 6 * * *' in Europe/Amsterdam"
    assert spec(every="90s").describe() == "every 90s from 1970-01-01T00:00:00+00:00"


# Bad input: the message a user sees


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cron": "61 * * * *"}, "cron '61 * * * *' is not valid: Bad minute"),
        ({"cron": "0 6 * *"}, "must have 5 fields"),
        (
            {"cron": "0 0 6 * * *"},
            "must have 5 fields (minute hour day-of-month month day-of-week)",
        ),
        ({"cron": "@fortnightly"}, "unknown cron alias '@fortnightly'"),
        ({"cron": "0 0 31 2 *"}, "is not valid: Bad day-of-month"),
        ({"cron": "0 6 * * *", "timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
        ({"cron": "0 6 * * *", "every": "1h"}, "exactly one of 'cron:' or 'every:'"),
        ({}, "exactly one of 'cron:' or 'every:'"),
        ({"every": "0.5s"}, "every: must be at least 1s"),
        ({"every": "1h", "start": "2026-01-01T00:00:00"}, "needs a UTC offset"),
        ({"cron": "0 6 * * *", "start": "2026-01-01T00:00:00Z"}, "a cron schedule has no start"),
        ({"cron": "0 6 * * *", "catchup": "some"}, "Input should be 'none', 'latest' or 'all'"),
    ],
)
def test_bad_schedules_say_what_is_wrong(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        spec(**fields)
    assert message in str(caught.value)


# Properties: each tick at most once, catch-up never beyond max_catchup

CRONS = [
    "0 6 * * *",
    "30 2 * * *",
    "*/15 * * * *",
    "*/7 1-3 * * *",
    "0 * * * *",
    "0 0 29 2 *",
    "15 3 * * 0",
    "0 2 1 * *",
]
ZONES = ["UTC", "Europe/Amsterdam", "America/New_York", "Australia/Lord_Howe"]

schedules = st.one_of(
    st.builds(
        lambda c, z: spec(cron=c, timezone=z), st.sampled_from(CRONS), st.sampled_from(ZONES)
    ),
    st.builds(
        lambda s, z: spec(every=s, timezone=z),
        st.integers(min_value=30, max_value=3 * 86400),
        st.sampled_from(ZONES),
    ),
)
instants = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=150, deadline=None)
@given(schedules, instants, st.integers(min_value=1, max_value=12))
def test_stepping_tick_by_tick_gives_the_same_ticks_once_each(
    schedule: ScheduleTriggerSpec, after: datetime, count: int
) -> None:
    batch = next_fire_times(schedule, after, count)
    stepped: list[datetime] = []
    cursor = after
    for _ in range(count):
        [tick] = next_fire_times(schedule, cursor, 1) or [None]
        if tick is None:
            break
        stepped.append(tick)
        cursor = tick
    assert stepped == batch
    as_utc = [t.astimezone(UTC) for t in batch]
    assert as_utc == sorted(set(as_utc))
    assert all(t > after for t in as_utc)
    if batch:
        assert fire_times(schedule, after, batch[-1]) == batch


@settings(max_examples=150, deadline=None)
@given(
    schedules,
    instants,
    st.integers(min_value=0, max_value=2 * 86400),
    st.sampled_from(["none", "latest", "all"]),
    st.integers(min_value=1, max_value=5),
)
def test_catchup_is_the_latest_missed_ticks_and_never_more_than_max_catchup(
    schedule: ScheduleTriggerSpec, last: datetime, down: int, policy: str, max_catchup: int
) -> None:
    schedule = schedule.model_copy(update={"catchup": policy, "max_catchup": max_catchup})
    now = last + timedelta(seconds=down)
    missed = fire_times(schedule, last, now)
    got = catchup_ticks(schedule, last, now)
    limit = {"none": 0, "latest": 1, "all": max_catchup}[policy]
    assert len(got) <= limit
    assert got == (missed[-limit:] if limit else [])
    assert latest_fire_times(schedule, last, now, len(missed) + 1) == missed


@settings(max_examples=100, deadline=None)
@given(schedules, instants)
def test_previous_fire_time_is_the_tick_before(
    schedule: ScheduleTriggerSpec, after: datetime
) -> None:
    ticks = next_fire_times(schedule, after, 2)
    if len(ticks) == 2:
        assert previous_fire_time(schedule, ticks[1]) == ticks[0]
