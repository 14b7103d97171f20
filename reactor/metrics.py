"""Prometheus metrics of one Reactor: every metric it exposes on ``GET /metrics``, in its own
registry, and the small functions the service calls to count."""

from __future__ import annotations

import functools
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from reactor.dag import FINAL_TASK_STATES
from reactor.events import Event
from reactor.specs import HOOK_ATTRIBUTE
from reactor.store.records import FINAL_RUN_STATES

if TYPE_CHECKING:
    from reactor.sensors import SensorHealth
    from reactor.store import RunRecord, Store, TaskRecord

__all__ = [
    "CONTENT_TYPE",
    "MAX_EVENT_SOURCES",
    "MAX_EVENT_TYPES",
    "STORE_OPERATIONS",
    "Backlog",
    "Metrics",
    "event_source_label",
]

#: The content type of :meth:`Metrics.exposition` (Prometheus text format 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Distinct event types counted under their own name; any further type is ``other``
#: (types published through the API are the publisher's choice and must not grow the
#: number of series without end).
MAX_EVENT_TYPES = 200
#: The same for sources: a trigger key or a hook name is bounded by the pipelines loaded,
#: but a publisher could send an event whose ``source`` looks like a sensor's.
MAX_EVENT_SOURCES = 1000
OTHER = "other"

#: The store calls timed by ``reactor_store_operation_seconds``: those of the hot path.
STORE_OPERATIONS = (
    "ingest",
    "ingest_many",
    "record_outcomes",
    "save_windows",
    "create_run",
    "set_run_status",
    "save_tasks",
    "append_logs",
)

_SENSOR_PREFIX = "reactor/sensors/"
_HOOK_PREFIX = "reactor/hooks/"
_API_SOURCE = "reactor/api"
_RUN_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
)
_STORE_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
)
#: Runs admitted but not started yet whose event's arrival is remembered, at most.
_MAX_PENDING_STARTS = 100_000


def event_source_label(event: Event) -> str:
    """The ``source`` label of an event: where it came in, from a bounded set.

    A trigger's own sensor: its trigger key (``pipeline/trigger``). A webhook:
    ``hook:NAME``. Run and task ends, backfill ticks and other events Reactor makes
    itself: ``reactor``. Anything else came through ``POST /api/events`` (or
    ``Reactor.publish``), whose ``source`` is the publisher's: ``api``.
    """
    source = event.source
    if source.startswith(_SENSOR_PREFIX):
        return source[len(_SENSOR_PREFIX) :]
    hook = event.extensions.get(HOOK_ATTRIBUTE) if event.extensions else None
    if isinstance(hook, str):
        return f"hook:{hook}"
    if source.startswith(_HOOK_PREFIX):
        return f"hook:{source[len(_HOOK_PREFIX) :]}"
    if source == _API_SOURCE or not source.startswith("reactor/"):
        return "api"
    return "reactor"


@dataclass(frozen=True)
class Backlog:
    """What waits in one service: runs queued and running by pipeline, events not decided."""

    queued: Mapping[str, int] = field(default_factory=dict)
    running: Mapping[str, int] = field(default_factory=dict)
    inbox: int = 0


class _StateCollector(Collector):
    """Gauges read from the service when scraped, never updated on the hot path."""

    def __init__(
        self,
        backlog: Callable[[], Backlog],
        sensors: Callable[[], Mapping[str, SensorHealth]],
    ) -> None:
        self._backlog = backlog
        self._sensors = sensors

    def collect(self) -> Iterator[Metric]:
        backlog = self._backlog()
        queued = GaugeMetricFamily(
            "reactor_runs_queued", "Runs admitted and waiting to start.", labels=["pipeline"]
        )
        for name, count in sorted(backlog.queued.items()):
            queued.add_metric([name], count)
        yield queued
        running = GaugeMetricFamily(
            "reactor_runs_running", "Runs running in this process.", labels=["pipeline"]
        )
        for name, count in sorted(backlog.running.items()):
            running.add_metric([name], count)
        yield running
        yield GaugeMetricFamily(
            "reactor_rule_inbox_events",
            "Events stored and waiting for the rule engine.",
            value=backlog.inbox,
        )
        sensors = self._sensors()
        lag = GaugeMetricFamily(
            "reactor_sensor_lag",
            "How far a sensor is behind its source, as it reports it (Kafka: messages not"
            " consumed yet); absent for sensors that do not report a lag.",
            labels=["trigger"],
        )
        up = GaugeMetricFamily(
            "reactor_sensor_up",
            "1 while a sensor is watching its source, 0 while starting, failing or stopped.",
            labels=["trigger"],
        )
        for key, health in sorted(sensors.items()):
            if health.lag is not None:
                lag.add_metric([key], health.lag)
            up.add_metric([key], 1 if health.state == "watching" else 0)
        yield lag
        yield up


class _Counter:
    """A counter family kept as plain numbers by label values.

    prometheus-client's own metrics take a lock on every change (they may be changed from
    any thread); here only the service's event loop changes them and the scrape reads them
    on the same loop, so a dictionary does, at a fraction of the cost on the hot path.
    """

    def __init__(self, name: str, doc: str, labels: tuple[str, ...]) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, *values: str) -> None:
        counts = self.values
        counts[values] = counts.get(values, 0) + 1

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for values, count in sorted(self.values.items()):
            family.add_metric(values, count)
        return family


class _Histogram:
    """A histogram family kept as plain numbers (see :class:`_Counter`): for each label
    values, the count per bucket and, last, the sum."""

    def __init__(
        self, name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]
    ) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.bounds = (*buckets, float("inf"))
        # As prometheus-client writes ``le`` (Go's float format for these bounds).
        self._les = (*(repr(float(b)) for b in buckets), "+Inf")
        self.values: dict[tuple[str, ...], list[float]] = {}

    def observe(self, amount: float, *values: str) -> None:
        row = self.values.get(values)
        if row is None:
            row = self.values[values] = [0.0] * (len(self.bounds) + 1)
        row[bisect_left(self.bounds, amount)] += 1
        row[-1] += amount

    def family(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for values, row in sorted(self.values.items()):
            buckets, seen = [], 0.0
            for le, count in zip(self._les, row, strict=False):
                seen += count
                buckets.append((le, seen))
            family.add_metric(values, buckets, row[-1])
        return family


class _Collected(Collector):
    """The counters and histograms, read when scraped."""

    def __init__(self, metrics: list[_Counter | _Histogram]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        for metric in self._metrics:
            yield metric.family()


class Metrics:
    """Every metric of one service, in a registry of its own (several services may run in
    one process). It is a run observer and an event observer of the service; the service
    also calls :meth:`ingested`, :meth:`dead_letter` and :meth:`run_admitted`. Only the
    service's event loop may call it (nothing here takes a lock)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._events = _Counter(
            "reactor_events",
            "Events stored, by where they came in and their type.",
            ("source", "type"),
        )
        self._duplicates = _Counter(
            "reactor_event_duplicates",
            "Events received again (same source and id) and dropped.",
            ("source",),
        )
        self._dead_letters = _Counter(
            "reactor_dead_letters",
            "Things a sensor received that could not become events.",
            ("trigger",),
        )
        self._evaluations = _Counter(
            "reactor_trigger_evaluations",
            "Trigger evaluations of events, by outcome (fired, condition_false, paused, ...).",
            ("pipeline", "trigger", "outcome"),
        )
        self._runs = _Counter("reactor_runs", "Runs ended, by final state.", ("pipeline", "status"))
        self._tasks = _Counter(
            "reactor_tasks",
            "Tasks ended, by final state (loop iterations are not counted).",
            ("pipeline", "status"),
        )
        self._run_seconds = _Histogram(
            "reactor_run_duration_seconds",
            "Time from a run's start to its end.",
            ("pipeline",),
            _RUN_BUCKETS,
        )
        self._task_seconds = _Histogram(
            "reactor_task_duration_seconds",
            "Time from a task's first attempt's start to its end (retries included).",
            ("pipeline",),
            _RUN_BUCKETS,
        )
        self._start_latency = _Histogram(
            "reactor_event_to_run_seconds",
            "Time from an event's arrival to the start of the run it fired.",
            ("pipeline",),
            _LATENCY_BUCKETS,
        )
        self._store_seconds = _Histogram(
            "reactor_store_operation_seconds",
            "Time taken by the store's hot-path operations.",
            ("operation",),
            _STORE_BUCKETS,
        )
        self.registry.register(
            _Collected(
                [
                    self._events,
                    self._duplicates,
                    self._dead_letters,
                    self._evaluations,
                    self._runs,
                    self._tasks,
                    self._run_seconds,
                    self._task_seconds,
                    self._start_latency,
                    self._store_seconds,
                ]
            )
        )
        self._event_types: set[str] = set()
        self._event_sources: set[str] = set()
        self._arrivals: dict[str, float] = {}

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)

    def watch(
        self,
        backlog: Callable[[], Backlog],
        sensors: Callable[[], Mapping[str, SensorHealth]],
    ) -> None:
        """Read ``backlog`` and ``sensors`` at each scrape for the gauges."""
        self.registry.register(_StateCollector(backlog, sensors))

    def time_store(self, store: Store) -> None:
        """Time the :data:`STORE_OPERATIONS` of ``store`` (into these metrics alone, even
        if another service timed it before: the methods are taken from its class)."""
        for name in STORE_OPERATIONS:
            method = getattr(type(store), name, None)
            if method is not None:
                setattr(store, name, _timed(method.__get__(store), self._store_seconds, name))

    # What the service calls

    def ingested(self, event: Event, new: bool) -> None:
        """One event handed to the store: stored (``new``) or a duplicate."""
        source = _bounded(self._event_sources, event_source_label(event), MAX_EVENT_SOURCES)
        if not new:
            self._duplicates.inc(source)
            return
        self._events.inc(source, _bounded(self._event_types, event.type, MAX_EVENT_TYPES))

    def dead_letter(self, trigger_key: str) -> None:
        self._dead_letters.inc(trigger_key)

    def run_admitted(self, run_id: str, arrived: float) -> None:
        """Run ``run_id`` was admitted for an event that arrived at ``arrived``
        (:func:`time.perf_counter`): its start is measured from then."""
        if len(self._arrivals) >= _MAX_PENDING_STARTS:
            # Runs admitted but never started here (left queued by a stop): forget the oldest.
            del self._arrivals[next(iter(self._arrivals))]
        self._arrivals[run_id] = arrived

    # EventObserver

    def event_decided(self, event: Event, outcome: list[dict[str, Any]]) -> None:
        for record in outcome:
            self._evaluations.inc(
                str(record.get("pipeline")), str(record.get("trigger")), str(record.get("outcome"))
            )

    # RunObserver

    def run_changed(self, run: RunRecord) -> None:
        if run.status == "running":
            arrived = self._arrivals.pop(run.id, None)
            if arrived is not None:
                self._start_latency.observe(time.perf_counter() - arrived, run.pipeline)
            return
        if run.status not in FINAL_RUN_STATES:
            return
        self._arrivals.pop(run.id, None)
        self._runs.inc(run.pipeline, run.status)
        if run.started_at is not None and run.ended_at is not None:
            took = (run.ended_at - run.started_at).total_seconds()
            self._run_seconds.observe(max(took, 0.0), run.pipeline)

    def task_changed(self, run: RunRecord, task: TaskRecord, note: str) -> None:
        if task.status not in FINAL_TASK_STATES or "[" in task.task_id:
            return
        self._tasks.inc(run.pipeline, task.status)
        if task.started_at is not None and task.ended_at is not None:
            took = (task.ended_at - task.started_at).total_seconds()
            self._task_seconds.observe(max(took, 0.0), run.pipeline)


def _bounded(seen: set[str], value: str, limit: int) -> str:
    """``value``, or ``other`` once ``limit`` other values have been seen."""
    if value in seen:
        return value
    if len(seen) >= limit:
        return OTHER
    seen.add(value)
    return value


def _timed(
    method: Callable[..., Awaitable[Any]], histogram: _Histogram, operation: str
) -> Callable[..., Awaitable[Any]]:
    observe = histogram.observe
    clock = time.perf_counter

    @functools.wraps(method)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            return await method(*args, **kwargs)
        finally:
            observe(clock() - started, operation)

    return timed
