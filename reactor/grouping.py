"""Trigger windows: batches, debounce, correlation groups, dedupe keys and rate limits.

The service keeps every open window in memory (:class:`Windows`) and writes each change
as a :class:`~reactor.store.records.WindowRow` in the same transaction as the event's
outcome, so a restart loads exactly what was decided and nothing fires twice. Deciding is
synchronous and does no I/O: the service persists what a step returns.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from reactor.durations import format_duration
from reactor.errors import ExpressionError, ParamError
from reactor.events import Event, logical_scope, new_id
from reactor.expressions import Expression, Template, compile_expression, compile_template
from reactor.params import check_params
from reactor.specs import (
    TRIGGER_EVENT_PREFIX,
    BatchSpec,
    DebounceSpec,
    EventFilter,
    EventTriggerSpec,
    RateSpec,
    TriggerSpec,
)
from reactor.store.records import WindowRow

if TYPE_CHECKING:
    from reactor.pipelines import Pipeline, Trigger

__all__ = [
    "Correlation",
    "Fire",
    "Grouping",
    "Step",
    "Windows",
    "compile_grouping",
    "trigger_event_source",
]

Ref = tuple[str, str]


def trigger_event_source(trigger_key: str) -> str:
    """The source of what a trigger itself records (a correlation that timed out, ...)."""
    return f"reactor/triggers/{trigger_key}"


@dataclass(frozen=True)
class Correlation:
    patterns: tuple[tuple[EventFilter, Expression | None], ...]
    key: Template
    within: float


@dataclass(frozen=True)
class Grouping:
    """A trigger's grouping and limits, compiled from its spec."""

    batch: BatchSpec | None = None
    debounce: DebounceSpec | None = None
    correlation: Correlation | None = None
    dedupe_key: Template | None = None
    dedupe_for: float = 0.0
    rate: RateSpec | None = None

    @property
    def groups_events(self) -> bool:
        return self.batch is not None or self.debounce is not None or self.correlation is not None


def compile_grouping(spec: TriggerSpec) -> Grouping | None:
    """The compiled grouping of ``spec``, or ``None``; :class:`ExpressionError` carries the
    field (``loc``) of a template that does not compile."""
    correlation = None
    if isinstance(spec, EventTriggerSpec) and spec.all_of is not None:
        assert spec.key is not None and spec.within is not None
        patterns = []
        for index, pattern in enumerate(spec.all_of):
            try:
                when = compile_expression(pattern.when) if pattern.when else None
            except ExpressionError as exc:
                raise ExpressionError(str(exc), ("all_of", index, "when")) from exc
            patterns.append((pattern.filter, when))
        try:
            key = compile_template(spec.key)
        except ExpressionError as exc:
            raise ExpressionError(str(exc), ("key",)) from exc
        correlation = Correlation(tuple(patterns), key, spec.within)
    dedupe_key = None
    if spec.dedupe is not None:
        try:
            dedupe_key = compile_template(spec.dedupe.key)
        except ExpressionError as exc:
            raise ExpressionError(str(exc), ("dedupe", "key")) from exc
    grouping = Grouping(
        batch=spec.batch,
        debounce=spec.debounce,
        correlation=correlation,
        dedupe_key=dedupe_key,
        dedupe_for=spec.dedupe.for_ if spec.dedupe is not None else 0.0,
        rate=spec.rate,
    )
    if grouping == Grouping():
        return None
    return grouping


@dataclass
class Window:
    """One open window of one trigger."""

    trigger: str
    key: str
    #: This window's own id: a run it starts has the key ``trigger@key#group``.
    group: str
    opened_at: datetime
    deadline: datetime | None = None
    #: Batch and debounce: in arrival order. Correlation: one slot per pattern.
    events: list[Ref | None] = field(default_factory=list)
    #: Rate: when the runs of the current period fired, and the runs held back.
    fires: list[datetime] = field(default_factory=list)
    held: list[dict[str, Any]] = field(default_factory=list)

    def state(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "opened_at": self.opened_at.isoformat(),
            "events": [list(ref) if ref else None for ref in self.events],
            "fires": [t.isoformat() for t in self.fires],
            "held": self.held,
        }

    @classmethod
    def from_row(cls, row: WindowRow) -> Window:
        state = row.state or {}
        return cls(
            trigger=row.trigger_key,
            key=row.window_key,
            group=state.get("group", new_id()),
            opened_at=datetime.fromisoformat(state["opened_at"]),
            deadline=row.deadline,
            events=[(ref[0], ref[1]) if ref else None for ref in state.get("events", [])],
            fires=[datetime.fromisoformat(t) for t in state.get("fires", [])],
            held=list(state.get("held", [])),
        )

    def refs(self) -> list[Ref]:
        """The events this window needs to start its run (a dedupe key needs none: its
        event is named in messages only, so a restart reads no events for it)."""
        if self.key.startswith("dedupe:"):
            return []
        found = [ref for ref in self.events if ref is not None]
        for held in self.held:
            found.extend((ref[0], ref[1]) for ref in held["events"])
        return found


@dataclass
class Fire:
    """A run to start: for ``trigger``, with these events and params."""

    trigger: str
    pipeline: str
    run_key: str
    events: list[Event]
    params: dict[str, Any]


@dataclass
class Step:
    """What one event did at one trigger: the outcome to record, runs, window changes."""

    outcome: str
    reason: str
    fires: list[Fire] = field(default_factory=list)
    rows: list[WindowRow] = field(default_factory=list)
    #: Events the trigger records about itself (a timed-out correlation).
    notes: list[Event] = field(default_factory=list)
    window: str | None = None


def _scope(events: Sequence[Event], env: Mapping[str, str]) -> dict[str, Any]:
    first, last = events[0], events[-1]
    return {
        "event": last.scope(),
        "events": [e.scope() for e in events],
        "env": env,
        "logical": logical_scope(first, first.time),
    }


class Windows:
    """Every open window of every trigger, and the events they hold."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], Window] = {}
        self._events: dict[Ref, Event] = {}
        self._holders: Counter[Ref] = Counter()
        self._version = 0

    # Loading

    def load(self, rows: Sequence[WindowRow], events: Mapping[Ref, Event]) -> list[Ref]:
        """Take over saved windows; returns the event refs that could not be found."""
        missing: list[Ref] = []
        for row in rows:
            if row.state is None:
                continue
            window = Window.from_row(row)
            self._version = max(self._version, row.version)
            for ref in window.refs():
                if ref in events:
                    self._events[ref] = events[ref]
                else:
                    missing.append(ref)
            self._hold(window)
            self._open[(window.trigger, window.key)] = window
        return missing

    def refs(self, rows: Sequence[WindowRow]) -> list[Ref]:
        """The events saved windows hold (to read from the store before :meth:`load`)."""
        return [ref for row in rows if row.state is not None for ref in Window.from_row(row).refs()]

    # Reading

    def __len__(self) -> int:
        return len(self._open)

    def get(self, trigger: str, key: str) -> Window | None:
        return self._open.get((trigger, key))

    def next_deadline(self) -> datetime | None:
        deadlines = [
            w.deadline
            for w in self._open.values()
            if w.deadline is not None and not w.key.startswith("dedupe:")
        ]
        return min(deadlines, default=None)

    def due(self, now: datetime) -> list[tuple[str, str]]:
        return [
            key
            for key, w in self._open.items()
            if w.deadline is not None and w.deadline <= now and not w.key.startswith("dedupe:")
        ]

    # Deciding

    def offer(
        self,
        trigger: Trigger,
        pipeline: Pipeline,
        event: Event,
        params: dict[str, Any] | None,
        env: Mapping[str, str],
        now: datetime,
    ) -> Step:
        """Decide what ``event`` (which matched ``trigger``) does to its windows."""
        grouping = trigger.grouping
        assert grouping is not None
        rows: list[WindowRow] = []
        if grouping.dedupe_key is not None:
            seen = self._dedupe(trigger, event, grouping, now, rows)
            if seen is not None:
                return Step("deduplicated", seen, rows=rows)
        if grouping.correlation is not None:
            step = self._correlate(trigger, pipeline, event, grouping.correlation, env, now)
        elif grouping.batch is not None or grouping.debounce is not None:
            step = self._collect(trigger, pipeline, event, grouping, env, now)
        else:
            assert params is not None
            fire = Fire(trigger.key, pipeline.name, "", [event], params)
            step = Step("fired", "matched", fires=[fire])
        step.rows[:0] = rows
        if step.fires and grouping.rate is not None:
            self._limit(trigger, grouping.rate, step, now)
        return step

    def expire(
        self,
        trigger_key: str,
        key: str,
        trigger: Trigger | None,
        pipeline: Pipeline | None,
        env: Mapping[str, str],
        now: datetime,
    ) -> Step:
        """A window's deadline passed: fire its batch, time its group out, release held runs."""
        window = self._open[(trigger_key, key)]
        if trigger is None or pipeline is None or trigger.grouping is None:
            return Step(
                "closed", "the trigger is gone or groups no more", rows=[self._close(window)]
            )
        grouping = trigger.grouping
        if key == "rate":
            if grouping.rate is None:
                return Step(
                    "closed", "the trigger has no rate limit now", rows=[self._close(window)]
                )
            step = Step("released", "rate limit period over")
            self._release(trigger, grouping.rate, window, step, now)
            return step
        if key.startswith("all_of:"):
            step = Step("timed_out", "correlation incomplete within its period")
            if grouping.correlation is not None:
                step.notes.append(self._timeout_note(trigger, window, now))
            step.rows.append(self._close(window))
            return step
        step = self._fire_window(trigger, pipeline, window, env, now, "window closed")
        if step.fires and grouping.rate is not None:
            self._limit(trigger, grouping.rate, step, now)
        return step

    def drop(self, trigger_key: str, key: str) -> WindowRow:
        """Close a window whose trigger is gone."""
        return self._close(self._open[(trigger_key, key)])

    # Windows

    def _dedupe(
        self,
        trigger: Trigger,
        event: Event,
        grouping: Grouping,
        now: datetime,
        rows: list[WindowRow],
    ) -> str | None:
        assert grouping.dedupe_key is not None
        try:
            value = grouping.dedupe_key.render(_scope([event], {}))
        except ExpressionError as exc:
            return f"dedupe key: {exc}"
        key = f"dedupe:{value}"
        window = self._open.get((trigger.key, key))
        if window is not None and window.deadline is not None and window.deadline > now:
            first = window.events[0] if window.events else None
            by = f" by event {first[1]}" if first else ""
            return (
                f"dedupe key {value!r} already seen{by} at {window.opened_at.isoformat()}"
                f" (for {format_duration(grouping.dedupe_for)})"
            )
        window = Window(
            trigger.key,
            key,
            new_id(),
            now,
            now + timedelta(seconds=grouping.dedupe_for),
            [(event.source, event.id)],
        )
        self._open[(trigger.key, key)] = window
        rows.append(self._row(window))
        return None

    def _collect(
        self,
        trigger: Trigger,
        pipeline: Pipeline,
        event: Event,
        grouping: Grouping,
        env: Mapping[str, str],
        now: datetime,
    ) -> Step:
        key = "batch" if grouping.batch is not None else "debounce"
        window = self._open.get((trigger.key, key))
        if window is None:
            window = Window(trigger.key, key, new_id(), now)
            self._open[(trigger.key, key)] = window
        self._add(window, (event.source, event.id), event)
        if grouping.batch is not None:
            window.deadline = window.opened_at + timedelta(seconds=grouping.batch.window)
            if len(window.events) >= grouping.batch.max:
                return self._fire_window(
                    trigger, pipeline, window, env, now, f"batch full ({grouping.batch.max})"
                )
            reason = (
                f"waiting in batch {window.group} ({len(window.events)}/{grouping.batch.max}"
                f" events, closes at {window.deadline.isoformat()})"
            )
        else:
            debounce = grouping.debounce
            assert debounce is not None
            deadline = now + timedelta(seconds=debounce.quiet)
            if debounce.max_wait is not None:
                deadline = min(deadline, window.opened_at + timedelta(seconds=debounce.max_wait))
            window.deadline = deadline
            reason = (
                f"waiting for quiet in {window.group} ({len(window.events)} events,"
                f" runs at {deadline.isoformat()} unless more arrive)"
            )
        return Step("waiting", reason, rows=[self._row(window)], window=window.group)

    def _correlate(
        self,
        trigger: Trigger,
        pipeline: Pipeline,
        event: Event,
        correlation: Correlation,
        env: Mapping[str, str],
        now: datetime,
    ) -> Step:
        scope = _scope([event], env)
        slot = None
        for index, (filter_, when) in enumerate(correlation.patterns):
            if not filter_.matches(event):
                continue
            try:
                if when is None or when.evaluate(scope):
                    slot = index
                    break
            except ExpressionError:
                continue
        if slot is None:
            return Step("condition_false", "no all_of pattern (with its when:) matches")
        try:
            value = correlation.key.render(scope)
        except ExpressionError as exc:
            return Step("condition_error", f"key: {exc}")
        key = f"all_of:{value}"
        window = self._open.get((trigger.key, key))
        if window is None:
            window = Window(
                trigger.key,
                key,
                new_id(),
                now,
                now + timedelta(seconds=correlation.within),
                [None] * len(correlation.patterns),
            )
            self._open[(trigger.key, key)] = window
        if window.events[slot] is not None:
            return Step(
                "waiting",
                f"group {value!r} already has an event for all_of[{slot}]; this one is ignored",
                window=window.group,
            )
        window.events[slot] = (event.source, event.id)
        self._holders[(event.source, event.id)] += 1
        self._events[(event.source, event.id)] = event
        if all(ref is not None for ref in window.events):
            return self._fire_window(
                trigger, pipeline, window, env, now, f"group {value!r} complete"
            )
        waiting_for = [
            correlation_type(trigger, i) for i, ref in enumerate(window.events) if ref is None
        ]
        assert window.deadline is not None
        reason = (
            f"waiting in group {value!r} for {', '.join(waiting_for)}"
            f" until {window.deadline.isoformat()}"
        )
        return Step("waiting", reason, rows=[self._row(window)], window=window.group)

    def _fire_window(
        self,
        trigger: Trigger,
        pipeline: Pipeline,
        window: Window,
        env: Mapping[str, str],
        now: datetime,
        why: str,
    ) -> Step:
        # An event the store no longer has (pruned) is left out rather than block the rest.
        events = [self._events[ref] for ref in window.events if ref in self._events]
        rows = [self._close(window)]
        if not events:
            return Step("closed", "empty window", rows=rows)
        try:
            rendered = trigger.params.render(_scope(events, env))
            params = check_params(pipeline.params, rendered)
        except (ExpressionError, ParamError) as exc:
            step = Step("params_invalid", f"params: {exc}", rows=rows, window=window.group)
            step.notes.append(
                self._note(
                    trigger,
                    "params_invalid",
                    window,
                    now,
                    {"error": str(exc), "events": [e.id for e in events]},
                )
            )
            return step
        run_key = f"{trigger.key}@{window.key}#{window.group}"
        fire = Fire(trigger.key, pipeline.name, run_key, events, params)
        return Step(
            "fired", f"{why}: {len(events)} events", fires=[fire], rows=rows, window=window.group
        )

    def _limit(self, trigger: Trigger, rate: RateSpec, step: Step, now: datetime) -> None:
        """Let the fires of ``step`` through the trigger's rate limit, or hold or drop them."""
        window = self._open.get((trigger.key, "rate"))
        if window is None:
            window = Window(trigger.key, "rate", new_id(), now)
            self._open[(trigger.key, "rate")] = window
        period = timedelta(seconds=rate.per)
        window.fires = [t for t in window.fires if t > now - period]
        allowed: list[Fire] = []
        for fire in step.fires:
            if len(window.fires) < rate.max and not window.held:
                window.fires.append(now)
                allowed.append(fire)
                continue
            limit = f"{rate.max} runs per {format_duration(rate.per)}"
            if rate.over_limit == "drop":
                step.outcome, step.reason = "dropped", f"rate limit: {limit} (over_limit: drop)"
                continue
            held = {
                "run_key": fire.run_key,
                "pipeline": fire.pipeline,
                "events": [[e.source, e.id] for e in fire.events],
                "params": fire.params,
            }
            window.held.append(held)
            for event in fire.events:
                self._holders[(event.source, event.id)] += 1
                self._events[(event.source, event.id)] = event
            step.outcome = "rate_limited"
            step.reason = f"rate limit: {limit}; queued ({len(window.held)} waiting)"
        step.fires = allowed
        window.deadline = min(window.fires) + period if window.held and window.fires else None
        if window.held and window.deadline is None:
            window.deadline = now
        step.rows.append(self._row(window))

    def _release(
        self, trigger: Trigger, rate: RateSpec, window: Window, step: Step, now: datetime
    ) -> None:
        period = timedelta(seconds=rate.per)
        window.fires = [t for t in window.fires if t > now - period]
        while window.held and len(window.fires) < rate.max:
            held = window.held.pop(0)
            refs = [(ref[0], ref[1]) for ref in held["events"]]
            events = [self._events[ref] for ref in refs if ref in self._events]
            for ref in refs:
                self._unhold(ref)
            if not events:
                # Its events are gone from the store (pruned): nothing left to run it with.
                continue
            window.fires.append(now)
            step.fires.append(
                Fire(trigger.key, held["pipeline"], held["run_key"], events, held["params"])
            )
        window.deadline = min(window.fires) + period if window.held and window.fires else None
        step.rows.append(self._row(window))

    # Bookkeeping

    def _add(self, window: Window, ref: Ref, event: Event) -> None:
        window.events.append(ref)
        self._holders[ref] += 1
        self._events[ref] = event

    def _hold(self, window: Window) -> None:
        for ref in window.refs():
            self._holders[ref] += 1

    def _unhold(self, ref: Ref) -> None:
        self._holders[ref] -= 1
        if self._holders[ref] <= 0:
            del self._holders[ref]
            self._events.pop(ref, None)

    def _close(self, window: Window) -> WindowRow:
        self._open.pop((window.trigger, window.key), None)
        for ref in window.refs():
            self._unhold(ref)
        return WindowRow(window.trigger, window.key, self._next_version(), None, None)

    def _row(self, window: Window) -> WindowRow:
        return WindowRow(
            window.trigger, window.key, self._next_version(), window.state(), window.deadline
        )

    def _next_version(self) -> int:
        # Increasing across restarts as well: a saved row is replaced only by a higher one.
        self._version = max(self._version + 1, time.time_ns())
        return self._version

    def _timeout_note(self, trigger: Trigger, window: Window, now: datetime) -> Event:
        assert trigger.grouping is not None and trigger.grouping.correlation is not None
        missing = [
            correlation_type(trigger, i) for i, ref in enumerate(window.events) if ref is None
        ]
        return self._note(
            trigger,
            "correlation_timeout",
            window,
            now,
            {
                "key": window.key.removeprefix("all_of:"),
                "events": [ref[1] for ref in window.events if ref is not None],
                "missing": missing,
                "opened_at": window.opened_at.isoformat(),
            },
        )

    def _note(
        self, trigger: Trigger, what: str, window: Window, now: datetime, data: dict[str, Any]
    ) -> Event:
        return Event(
            type=f"{TRIGGER_EVENT_PREFIX}{what}",
            source=trigger_event_source(trigger.key),
            id=window.group,
            time=now,
            subject=trigger.key,
            data={"trigger": trigger.key, "pipeline": trigger.pipeline, **data},
        )


def correlation_type(trigger: Trigger, index: int) -> str:
    """How a correlation pattern is named in messages: its type (and source)."""
    assert trigger.grouping is not None and trigger.grouping.correlation is not None
    filter_ = trigger.grouping.correlation.patterns[index][0]
    return filter_.type + (f" from {filter_.source}" if filter_.source else "")
