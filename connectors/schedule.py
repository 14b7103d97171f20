"""``on: schedule``: runs at the times of a cron expression or every fixed interval."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from anyio.abc import TaskStatus
from cronsim import CronSim, CronSimError
from pydantic import Field, field_validator, model_validator

from reactor.durations import Duration, format_duration
from reactor.events import Event
from reactor.sensors import SensorContext, sensor_source
from reactor.specs import EventFilter, TriggerSpec

__all__ = [
    "SCHEDULE_TICK",
    "ScheduleSensor",
    "ScheduleTriggerSpec",
    "catchup_ticks",
    "fire_times",
    "latest_fire_times",
    "next_fire_times",
    "previous_fire_time",
    "tick_event",
]

SCHEDULE_TICK = "reactor.schedule.tick"

ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

#: ``every:`` without ``start:`` counts from here, so ``every: 5m`` fires at :00, :05, ...
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: Wider than any DST shift: local-time searches start this far beyond their bound.
_SLACK = timedelta(hours=3)

#: Longest single sleep, so a wall clock that is set while asleep is noticed soon.
_MAX_SLEEP = 60.0


def _expand(cron: str) -> str:
    return ALIASES.get(cron.strip().lower(), cron.strip())


class ScheduleTriggerSpec(TriggerSpec):
    """``on: schedule``: ``cron:`` or ``every:`` (with ``start:``), ``timezone:``, catch-up."""

    on: Literal["schedule"]
    cron: str | None = None
    every: Duration | None = None
    start: datetime | None = None
    timezone: str = "UTC"
    catchup: Literal["none", "latest", "all"] = "latest"
    max_catchup: int = Field(10, ge=1, le=10_000)

    has_sensor: ClassVar[bool] = True

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        expanded = _expand(value)
        if expanded.startswith("@"):
            allowed = ", ".join(a for a in ALIASES if a not in ("@midnight", "@annually"))
            raise ValueError(f"unknown cron alias {value!r}; allowed: {allowed}")
        if len(expanded.split()) != 5:
            raise ValueError(
                f"cron {value!r} must have 5 fields (minute hour day-of-month month"
                f" day-of-week), found {len(expanded.split())}"
            )
        try:
            CronSim(expanded, datetime(2000, 1, 1))
        except CronSimError as exc:
            raise ValueError(f"cron {value!r} is not valid: {exc}") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r}; use an IANA name like UTC, Europe/Amsterdam"
                " or America/New_York"
            ) from None
        return value

    @field_validator("start")
    @classmethod
    def _start_has_offset(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(
                f"start {value.isoformat()!r} needs a UTC offset, like 2026-01-01T06:00:00+01:00"
            )
        return value

    @model_validator(mode="after")
    def _cron_xor_every(self) -> ScheduleTriggerSpec:
        if (self.cron is None) == (self.every is None):
            raise ValueError("a schedule needs exactly one of 'cron:' or 'every:'")
        if self.every is not None and self.every < 1:
            raise ValueError("every: must be at least 1s")
        if self.start is not None and self.every is None:
            raise ValueError("start: aligns 'every:'; a cron schedule has no start")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def event_filter(self, trigger_key: str) -> EventFilter:
        return EventFilter(SCHEDULE_TICK, sensor_source(trigger_key))

    # What ``reactor schedule`` and the API show (reactor.specs.Schedule).

    def upcoming(self, after: datetime, count: int) -> list[datetime]:
        return next_fire_times(self, after, count)

    def describe(self) -> str:
        if self.cron is not None:
            return f"cron {self.cron!r} in {self.timezone}"
        assert self.every is not None
        start = (self.start or EPOCH).isoformat()
        return f"every {format_duration(self.every)} from {start}"


# The schedule's math: pure functions of the spec and instants.


def _local_instant(naive: datetime, zone: ZoneInfo) -> datetime:
    """The instant a local wall time stands for, by the DST policy.

    A wall time skipped by spring-forward runs at the first instant after the gap;
    one that exists twice (fall-back) runs at its first occurrence only.
    """
    first = naive.replace(tzinfo=zone, fold=0)
    if _exists(first):
        return first
    # In a gap: the first wall time after it that exists is the instant the gap ends.
    probe = naive.replace(second=0, microsecond=0)
    while True:
        probe += timedelta(minutes=1)
        candidate = probe.replace(tzinfo=zone)
        if _exists(candidate):
            return candidate


def _exists(local: datetime) -> bool:
    """Whether an aware local time is a wall time the clock on the wall really shows."""
    assert local.tzinfo is not None
    return local.astimezone(UTC).astimezone(local.tzinfo).replace(fold=0) == local.replace(fold=0)


def _cron_instants(
    spec: ScheduleTriggerSpec, around: datetime, *, reverse: bool
) -> Iterator[datetime]:
    """Fire instants (in UTC) from near ``around``, forward or backward.

    Cron matches local wall times; each is mapped to an instant by the DST policy
    and repeats (several skipped wall times landing on one instant) are dropped.
    """
    assert spec.cron is not None
    zone = spec.zone
    wall = around.astimezone(zone).replace(tzinfo=None)
    begin = wall + _SLACK if reverse else wall - _SLACK
    previous: datetime | None = None
    try:
        for naive in CronSim(_expand(spec.cron), begin, reverse=reverse):
            instant = _local_instant(naive, zone).astimezone(UTC)
            if instant != previous:
                previous = instant
                yield instant
    except StopIteration:  # cronsim found nothing in 50 years
        return


# Aware datetimes that share a tzinfo compare by wall time, ignoring ``fold``: inside a
# fall-back hour that orders them wrongly. So all the math is done in UTC, and results
# are put in the schedule's timezone only on the way out.


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no UTC offset")
    return moment.astimezone(UTC)


def _every_index(spec: ScheduleTriggerSpec, moment: datetime) -> tuple[datetime, int, int]:
    """``(start, period_us, k)``: the last tick at or before ``moment`` is start + k periods."""
    assert spec.every is not None
    start = _utc(spec.start or EPOCH)
    period = round(spec.every * 1_000_000)
    elapsed = (moment - start) // timedelta(microseconds=1)
    return start, period, elapsed // period


def _every_tick(start: datetime, period: int, k: int) -> datetime:
    return start + timedelta(microseconds=period * k)


def _local(spec: ScheduleTriggerSpec, instants: list[datetime]) -> list[datetime]:
    zone = spec.zone
    return [t.astimezone(zone) for t in instants]


def next_fire_times(spec: ScheduleTriggerSpec, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire instants strictly after ``after``, in the spec's timezone."""
    after = _utc(after)
    if count <= 0:
        return []
    if spec.every is not None:
        start, period, k = _every_index(spec, after)
        return _local(spec, [_every_tick(start, period, k + i) for i in range(1, count + 1)])
    found: list[datetime] = []
    for instant in _cron_instants(spec, after, reverse=False):
        if instant > after:
            found.append(instant)
            if len(found) == count:
                break
    return _local(spec, found)


def fire_times(spec: ScheduleTriggerSpec, after: datetime, until: datetime) -> list[datetime]:
    """Every fire instant in ``(after, until]``, ascending, in the spec's timezone."""
    after, until = _utc(after), _utc(until)
    if until <= after:
        return []
    if spec.every is not None:
        start, period, k = _every_index(spec, after)
        _, _, last = _every_index(spec, until)
        return _local(spec, [_every_tick(start, period, i) for i in range(k + 1, last + 1)])
    found: list[datetime] = []
    for instant in _cron_instants(spec, after, reverse=False):
        if instant > until:
            break
        if instant > after:
            found.append(instant)
    return _local(spec, found)


def latest_fire_times(
    spec: ScheduleTriggerSpec, after: datetime, until: datetime, count: int
) -> list[datetime]:
    """The last ``count`` fire instants in ``(after, until]``, ascending (never all of them)."""
    after, until = _utc(after), _utc(until)
    if count <= 0 or until <= after:
        return []
    if spec.every is not None:
        start, period, k = _every_index(spec, after)
        _, _, last = _every_index(spec, until)
        first = max(k + 1, last - count + 1)
        return _local(spec, [_every_tick(start, period, i) for i in range(first, last + 1)])
    found: list[datetime] = []
    for instant in _cron_instants(spec, until, reverse=True):
        if instant <= after:
            break
        if instant <= until:
            found.append(instant)
            if len(found) == count:
                break
    return _local(spec, found[::-1])


def previous_fire_time(spec: ScheduleTriggerSpec, before: datetime) -> datetime | None:
    """The last fire instant strictly before ``before`` (``None``: none in 50 years)."""
    before = _utc(before)
    if spec.every is not None:
        start, period, k = _every_index(spec, before - timedelta(microseconds=1))
        return _every_tick(start, period, k).astimezone(spec.zone)
    for instant in _cron_instants(spec, before, reverse=True):
        if instant < before:
            return instant.astimezone(spec.zone)
    return None


def catchup_ticks(
    spec: ScheduleTriggerSpec, last: datetime | None, now: datetime
) -> list[datetime]:
    """Ticks missed between the last one emitted and ``now``, by the ``catchup`` policy.

    A first start (``last`` is ``None``) catches nothing up; ``none`` skips every missed
    tick, ``latest`` keeps the most recent, ``all`` at most ``max_catchup`` most recent.
    """
    if last is None or spec.catchup == "none":
        return []
    count = 1 if spec.catchup == "latest" else spec.max_catchup
    return latest_fire_times(spec, last, now, count)


def tick_event(spec: ScheduleTriggerSpec, source: str, tick: datetime) -> Event:
    """The event of one tick: its id is the tick's UTC instant, so it is emitted once."""
    utc = tick.astimezone(UTC)
    previous = previous_fire_time(spec, tick) or tick
    data: dict[str, Any] = {
        "logical_time": tick.isoformat(),
        "logical_start": previous.isoformat(),
        "logical_end": tick.isoformat(),
        "scheduled_timezone": spec.timezone,
    }
    return Event(type=SCHEDULE_TICK, source=source, id=utc.isoformat(), time=utc, data=data)


class ScheduleSensor:
    """Emits each tick of one schedule when its time comes, and missed ones on start.

    Where it left off comes from the store (the last tick event of this trigger), so
    a restart neither repeats a tick nor, beyond the catch-up policy, loses one.
    """

    def __init__(self, spec: ScheduleTriggerSpec) -> None:
        self.spec = spec

    async def _last_tick(self, ctx: SensorContext) -> datetime | None:
        stored = await ctx.last_event()
        if stored is None:
            return None
        data = stored.event.data
        if isinstance(data, dict) and isinstance(data.get("logical_time"), str):
            return datetime.fromisoformat(data["logical_time"])
        return stored.event.time

    async def _emit(self, ctx: SensorContext, tick: datetime) -> None:
        await ctx.emit(tick_event(self.spec, ctx.source, tick))

    async def run(self, ctx: SensorContext, *, task_status: TaskStatus[None]) -> None:
        task_status.started()
        last = await self._last_tick(ctx)
        now = ctx.clock.now()
        for tick in catchup_ticks(self.spec, last, now):
            await self._emit(ctx, tick)
        cursor = now if last is None else max(last.astimezone(UTC), now.astimezone(UTC))
        while True:
            upcoming = next_fire_times(self.spec, cursor, 1)
            if not upcoming:
                ctx.set_health("watching", "no fire time in the next 50 years")
                await ctx.clock.sleep(math.inf)
                continue
            tick = upcoming[0]
            ctx.set_health("watching", f"next tick {tick.isoformat()}")
            # A fake clock's float seconds can leave a hair of a second: that counts as due.
            while (left := (tick - ctx.clock.now()).total_seconds()) > 0.001:
                await ctx.clock.sleep(min(left, _MAX_SLEEP))
            await self._emit(ctx, tick)
            cursor = tick
