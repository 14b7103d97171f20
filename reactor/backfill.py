"""Backfills: one run of a pipeline per logical time of a past range, as if scheduled then."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from reactor.durations import parse_duration
from reactor.errors import ExpressionError, ParamError, ReactorError
from reactor.events import Event, content_id
from reactor.params import check_params
from reactor.pipelines import Pipeline, Trigger
from reactor.rules import event_scope
from reactor.specs import Schedule
from reactor.store.base import BackfillRow
from reactor.store.records import FINAL_RUN_STATES, RunRecord

__all__ = [
    "BACKFILL_TICK",
    "DEFAULT_CONCURRENCY",
    "MAX_RUNS",
    "RUN_STATES",
    "BackfillError",
    "BackfillPlan",
    "BackfillRequest",
    "LogicalTime",
    "backfill_id",
    "backfill_json",
    "backfill_of",
    "backfill_source",
    "count_states",
    "ended_status",
    "logical_times",
    "parse_instant",
    "parse_request",
    "plan_backfill",
    "run_key_prefix",
    "schedule_trigger",
]

#: A backfill asks for at most this many runs: a range that gives more is refused.
MAX_RUNS = 10_000
#: The type of the event each backfill run is started with (its ``logical`` values).
BACKFILL_TICK = "reactor.backfill.tick"
#: The states a backfill's runs are counted by; ``pending``: not created yet.
RUN_STATES = ("pending", "queued", "running", "succeeded", "failed", "cancelled")

_SCHEDULE = "schedule"
#: How far back the tick before the first is looked for (a cron that fires once in years).
_LOOK_BACK = timedelta(days=366 * 50)


class BackfillError(ReactorError):
    """A backfill cannot be planned as asked (its range, step, schedule or params)."""


@dataclass(frozen=True, slots=True)
class LogicalTime:
    """What one run stands for: ``time`` and the interval ``[start, end]`` it closes."""

    time: datetime
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class BackfillPlan:
    """The runs of one backfill, in logical-time order: run key, event and params each."""

    id: str
    pipeline: str
    times: tuple[LogicalTime, ...]
    events: tuple[Event, ...]
    params: tuple[dict[str, Any], ...]
    keys: tuple[str, ...]


def parse_instant(text: str, name: str) -> datetime:
    """``2026-01-01`` or an ISO 8601 time; without a UTC offset it is read as UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise BackfillError(
            f"{name} {text!r} is not a date or time; write it like 2026-01-01 or"
            " 2026-01-01T06:00:00+01:00"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def backfill_id(
    pipeline: str,
    start: datetime,
    end: datetime,
    step: float | None,
    params: Mapping[str, Any],
) -> str:
    """The same pipeline, range, step and params always give the same id (idempotence)."""
    return content_id(
        "backfill",
        pipeline,
        _utc_text(start),
        _utc_text(end),
        "" if step is None else repr(float(step)),
        json.dumps(dict(params), sort_keys=True, default=str),
    )


def backfill_source(backfill: str) -> str:
    """The source of the events a backfill's runs are started with."""
    return f"reactor/backfills/{backfill}"


def run_key_prefix(pipeline: str, backfill: str) -> str:
    """What the run keys of a backfill's runs start with; each ends in its logical time."""
    return f"{pipeline}/backfill:{backfill}/"


def backfill_of(run_key: str) -> str | None:
    """The backfill id named in a backfill run's key (see :func:`run_key_prefix`)."""
    _, sep, rest = run_key.partition("/backfill:")
    backfill, slash, _ = rest.partition("/")
    return backfill if sep and slash and backfill else None


def schedule_trigger(pipeline: Pipeline) -> Trigger | None:
    """The pipeline's one ``on: schedule`` trigger, ``None`` if it has none or several."""
    found = [t for t in pipeline.triggers if t.spec.on == _SCHEDULE]
    return found[0] if len(found) == 1 and isinstance(found[0].spec, Schedule) else None


def _too_many(pipeline: str, start: datetime, end: datetime) -> BackfillError:
    return BackfillError(
        f"{pipeline}: {start.isoformat()} to {end.isoformat()} gives more than {MAX_RUNS}"
        " runs; backfill a shorter range (or a longer --step) at a time"
    )


def _stepped(pipeline: str, start: datetime, end: datetime, step: float) -> list[LogicalTime]:
    if step <= 0:
        raise BackfillError(f"step must be longer than 0, got {step}s")
    width = timedelta(seconds=step)
    count = -(-(end - start) // width)
    if count > MAX_RUNS:
        raise _too_many(pipeline, start, end)
    # Like ``every: STEP`` starting at ``from``: each tick closes the interval before it.
    ticks = [start + i * width for i in range(count)]
    return [LogicalTime(t, t - width, t) for t in ticks]


def _previous_tick(schedule: Schedule, first: datetime, gap: timedelta) -> datetime | None:
    """The schedule's last tick before ``first``, found with ``upcoming`` only."""
    back = max(gap, timedelta(seconds=1))
    while back <= _LOOK_BACK:
        earlier = schedule.upcoming(first - back, 1)
        if earlier and earlier[0] < first:
            tick = earlier[0]
            while (following := schedule.upcoming(tick, 1)) and following[0] < first:
                tick = following[0]
            return tick
        back *= 2
    return None


def _scheduled(
    pipeline: str, schedule: Schedule, start: datetime, end: datetime
) -> list[LogicalTime]:
    ticks: list[datetime] = []
    after = start - timedelta(microseconds=1)
    batch = 64
    while True:
        found = schedule.upcoming(after, batch)
        ticks.extend(t for t in found if t < end)
        if len(ticks) > MAX_RUNS:
            raise _too_many(pipeline, start, end)
        if len(found) < batch or found[-1] >= end:
            break
        after = found[-1]
        batch = min(batch * 2, MAX_RUNS + 1)
    if not ticks:
        return []
    gap = ticks[1] - ticks[0] if len(ticks) > 1 else timedelta(days=1)
    before = _previous_tick(schedule, ticks[0], gap) or ticks[0]
    starts = [before, *ticks[:-1]]
    return [LogicalTime(t, s, t) for t, s in zip(ticks, starts, strict=True)]


def logical_times(
    pipeline: Pipeline, start: datetime, end: datetime, step: float | None
) -> list[LogicalTime]:
    """The logical times of a backfill of ``[start, end)``, oldest first.

    With ``step``: ``start``, ``start + step``, ... (each closing the step before it, as
    ``every:`` does). Without: the ticks of the pipeline's one ``on: schedule`` trigger.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise BackfillError("from and to need a UTC offset")
    if start >= end:
        raise BackfillError(f"from ({start.isoformat()}) must be before to ({end.isoformat()})")
    if step is not None:
        return _stepped(pipeline.name, start, end, step)
    schedules = [t for t in pipeline.triggers if t.spec.on == _SCHEDULE]
    if len(schedules) != 1:
        has = (
            "no on: schedule trigger"
            if not schedules
            else f"{len(schedules)} on: schedule triggers ({', '.join(t.id for t in schedules)})"
        )
        raise BackfillError(
            f"{pipeline.name} has {has}, so its logical times are not known; give --step"
            " (step in the API), like --step 1d"
        )
    spec = schedules[0].spec
    if not isinstance(spec, Schedule):
        raise BackfillError(f"{schedules[0].key} cannot list its fire times; give --step")
    return _scheduled(pipeline.name, spec, start, end)


def _tick_event(backfill: str, logical: LogicalTime, timezone: str) -> Event:
    # The data a schedule tick of that time carries, so ``logical`` reads the same.
    utc = logical.time.astimezone(UTC)
    data = {
        "logical_time": logical.time.isoformat(),
        "logical_start": logical.start.isoformat(),
        "logical_end": logical.end.isoformat(),
        "scheduled_timezone": timezone,
        "backfill": backfill,
    }
    return Event(
        type=BACKFILL_TICK,
        source=backfill_source(backfill),
        id=f"{backfill}@{utc.isoformat()}",
        time=utc,
        data=data,
    )


def plan_backfill(
    pipeline: Pipeline,
    start: datetime,
    end: datetime,
    step: float | None,
    params: Mapping[str, Any],
    env: Mapping[str, str],
) -> BackfillPlan:
    """Every run of a backfill with the params a scheduled run of its time gets.

    The schedule trigger's ``params:`` are rendered with each tick's event (``logical``,
    ``event``, ``env``), ``params`` override them, and the pipeline's ``params:`` check
    the result. Raises :class:`BackfillError` saying what is wrong.
    """
    times = logical_times(pipeline, start, end, step)
    if not times:
        raise BackfillError(
            f"{pipeline.name} has no logical time in [{start.isoformat()}, {end.isoformat()})"
        )
    ident = backfill_id(pipeline.name, start, end, step, params)
    trigger = schedule_trigger(pipeline)
    timezone = "UTC"
    if trigger is not None and step is None and isinstance(trigger.spec, Schedule):
        timezone = trigger.spec.timezone
    prefix = run_key_prefix(pipeline.name, ident)
    events: list[Event] = []
    rendered: list[dict[str, Any]] = []
    for logical in times:
        event = _tick_event(ident, logical, timezone)
        try:
            base = trigger.params.render(event_scope(event, env)) if trigger else {}
            merged = {**(base if isinstance(base, dict) else {}), **params}
            rendered.append(check_params(pipeline.params, merged))
        except (ExpressionError, ParamError) as exc:
            raise BackfillError(
                f"{pipeline.name}: params for logical time {logical.time.isoformat()}: {exc}"
            ) from exc
        events.append(event)
    return BackfillPlan(
        id=ident,
        pipeline=pipeline.name,
        times=tuple(times),
        events=tuple(events),
        params=tuple(rendered),
        keys=tuple(prefix + _utc_text(t.time) for t in times),
    )


def count_states(runs: Iterable[RunRecord], total: int) -> dict[str, int]:
    """How many of a backfill's ``total`` runs are in each of :data:`RUN_STATES`."""
    counted = Counter(run.status for run in runs)
    counts = {state: counted.get(state, 0) for state in RUN_STATES if state != "pending"}
    counts["pending"] = max(total - sum(counted.values()), 0)
    return {state: counts.get(state, 0) for state in RUN_STATES}


def ended_status(runs: Sequence[RunRecord]) -> tuple[str, str | None]:
    """A finished backfill's status and reason: ``succeeded`` only if every run did."""
    unfinished = [r for r in runs if r.status not in FINAL_RUN_STATES]
    if unfinished:
        raise ValueError(f"{len(unfinished)} runs have not ended")
    bad = Counter(r.status for r in runs if r.status != "succeeded")
    if not bad:
        return "succeeded", None
    return "failed", ", ".join(f"{n} run{'s' * (n != 1)} {s}" for s, n in sorted(bad.items()))


@dataclass(frozen=True, slots=True)
class BackfillRequest:
    """``POST /api/backfills``'s body, checked: ``step`` in seconds."""

    pipeline: str
    start: datetime
    end: datetime
    step: float | None
    params: dict[str, Any]
    concurrency: int


_REQUEST_FIELDS = ("pipeline", "from", "to", "step", "params", "concurrency")
DEFAULT_CONCURRENCY = 4


def parse_request(body: Any) -> BackfillRequest:
    """Read ``{pipeline, from, to, step?, params?, concurrency?}``; :class:`BackfillError`
    names the first field that is wrong."""
    if not isinstance(body, dict):
        raise BackfillError('body must be an object like {"pipeline": ..., "from": ..., "to": ...}')
    unknown = sorted(set(body) - set(_REQUEST_FIELDS))
    if unknown:
        raise BackfillError(
            f"unknown field {unknown[0]!r}; a backfill takes {', '.join(_REQUEST_FIELDS)}"
        )
    for name in ("pipeline", "from", "to"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise BackfillError(f"{name} is required (a string)")
    step: float | None = None
    if body.get("step") is not None:
        try:
            step = parse_duration(body["step"])
        except ValueError as exc:
            raise BackfillError(f"step: {exc}") from None
        if step <= 0:
            raise BackfillError("step must be longer than 0")
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise BackfillError("params must be an object of param names and values")
    concurrency = body.get("concurrency", DEFAULT_CONCURRENCY)
    if not isinstance(concurrency, int) or isinstance(concurrency, bool):
        raise BackfillError(f"concurrency must be a whole number, got {concurrency!r}")
    return BackfillRequest(
        pipeline=body["pipeline"],
        start=parse_instant(body["from"], "from"),
        end=parse_instant(body["to"], "to"),
        step=step,
        params=params,
        concurrency=concurrency,
    )


def backfill_json(
    backfill: BackfillRow, runs: Sequence[RunRecord], *, with_runs: bool
) -> dict[str, Any]:
    """A backfill as the API shows it: with counts of its runs per state (and the runs)."""
    shown: dict[str, Any] = {
        "id": backfill.id,
        "pipeline": backfill.pipeline,
        "from": backfill.start.isoformat(),
        "to": backfill.end.isoformat(),
        "step": backfill.step,
        "params": backfill.params,
        "concurrency": backfill.concurrency,
        "status": backfill.status,
        "created_at": backfill.created_at.isoformat(),
        "ended_at": backfill.ended_at.isoformat() if backfill.ended_at else None,
        "reason": backfill.reason,
        "actor": backfill.actor,
        "total": backfill.total,
        "counts": count_states(runs, backfill.total),
    }
    if with_runs:
        shown["runs"] = [run.to_json() for run in runs]
    return shown
