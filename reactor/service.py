"""Reactor: the service. One root task group owns sensors, the rule loop, runs and the API."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup, TaskStatus

from reactor.admission import (
    LocalPools,
    LocalRunSlots,
    LocalTaskSlots,
    RunSlots,
    TaskSlots,
    plan_admission,
)
from reactor.alerting.alerter import Alerter
from reactor.audit import AuditEntry
from reactor.backfill import (
    DEFAULT_CONCURRENCY,
    MAX_RUNS,
    BackfillError,
    BackfillPlan,
    ended_status,
    plan_backfill,
    run_key_prefix,
)
from reactor.bus import Bus
from reactor.clock import Clock, SystemClock
from reactor.config import SETTINGS_FILE, Config
from reactor.errors import AdmissionError, ConnectorError, ParamError, SpecErrorGroup, StoreError
from reactor.events import Event, new_id
from reactor.executor import RunExecutor, RunObserver
from reactor.failpoints import hit
from reactor.grouping import Fire, Windows
from reactor.logs import EVENT_ID
from reactor.metrics import Backlog, Metrics
from reactor.openlineage import OpenLineageEmitter
from reactor.params import check_params
from reactor.pauses import Pause, Resumed, pause_key, paused_triggers
from reactor.pipelines import (
    Pipeline,
    Trigger,
    chain_cycles,
    load_folder,
    load_pipeline,
    open_hooks,
)
from reactor.recovery import is_dead, kill_orphans
from reactor.redrive import (
    MAX_EVENTS,
    EventRedriven,
    RedriveError,
    Redriven,
    RedriveRequest,
    UnknownEvent,
)
from reactor.registry import Registry, default_registry
from reactor.repair import (
    RepairError,
    RepairPlan,
    plan_repair,
    repair_number,
    repair_reason,
    reset_records,
)
from reactor.retention import retention_loop
from reactor.rules import RuleEngine, run_key
from reactor.sensors import EmitResult, SensorContext, SensorHealth, sensor_source
from reactor.specs import HookReceiver, HttpIngress, TriggerSpec, run_event_source
from reactor.store import LogLine, RunRecord, Store, StoredEvent, TaskRecord
from reactor.store.base import Admitted, BackfillRow, OutcomeToRecord
from reactor.store.records import FINAL_RUN_STATES, DeadLetter, ProcessRecord, WindowRow
from reactor.tracing import tracing_from_env

__all__ = ["PublishResult", "Reactor", "Settings"]

logger = logging.getLogger("reactor")

#: At most this many queued events are evaluated and recorded together.
_RULE_BATCH = 256


@dataclass(frozen=True)
class Settings:
    """Service settings; each has a ``reactor.yaml`` key, a CLI flag or a ``REACTOR_*`` variable."""

    max_tasks: int = 64
    heartbeat: float = 5.0
    lease: float = 15.0
    grace: float = 30.0
    bus_capacity: int = 1024
    reload: bool = True
    sensors: bool = True
    #: Take over work a stopped process left (its runs, unevaluated events, queued runs).
    #: ``reactor run`` turns it off so it never picks up a running service's work.
    recover: bool = True
    #: Refuse to start when any pipeline file is broken (``serve``); ``reactor run``
    #: only needs the pipeline it runs.
    strict: bool = True
    #: Start chained pipelines (``on: pipeline``) when a run ends; ``reactor run`` turns it
    #: off (it runs the one pipeline asked for) and only records the run's end event.
    chain: bool = True
    http: tuple[str, int] | None = None


@dataclass(frozen=True)
class PublishResult:
    event_id: str
    duplicate: bool
    run_ids: list[str] = field(default_factory=list)


@dataclass
class _Decided:
    """What evaluating one event decided: its outcome, runs, window changes and notes."""

    outcome: list[dict[str, Any]] = field(default_factory=list)
    planned: list[tuple[RunRecord, str, list[Event]]] = field(default_factory=list)
    windows: list[WindowRow] = field(default_factory=list)
    notes: list[Event] = field(default_factory=list)


@dataclass
class _Envelope:
    event: Event
    done: anyio.Event | None = None
    run_ids: list[str] = field(default_factory=list)
    #: When the event reached the service (``time.perf_counter``), for the start latency.
    arrived: float = field(default_factory=time.perf_counter)
    error: BaseException | None = None
    #: A replay after a pause: only these triggers are decided again, and their records
    #: replace theirs in the event's ``previous`` outcome.
    only: frozenset[str] | None = None
    previous: list[dict[str, Any]] = field(default_factory=list)
    #: The records of the triggers decided (a re-drive answers with them), and the runs
    #: they name that existed already (their run key was taken: nothing new started).
    decided: list[dict[str, Any]] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)


def _outputs(records: Iterable[TaskRecord]) -> dict[str, Any]:
    return {r.task_id: r.output for r in records if r.status == "succeeded"}


def _run_event(run: RunRecord, outputs: dict[str, Any], repair: int | None = None) -> Event:
    """``reactor.run.<status>``: the end of ``run``; its id is the run's, so it dedupes
    (``RUN_ID/repair-N`` for the end of repair ``N``: a new end, heard again)."""
    return Event(
        type=f"reactor.run.{run.status}",
        source=run_event_source(run.pipeline),
        id=run.id if repair is None else f"{run.id}/repair-{repair}",
        time=run.ended_at or run.created_at,
        subject=run.pipeline,
        data={
            "pipeline": run.pipeline,
            "run_id": run.id,
            "status": run.status,
            "params": run.params,
            "outputs": outputs,
        },
    )


def _replaced(
    previous: list[dict[str, Any]], decided: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``previous`` (an event's recorded outcome) with the records of the triggers decided
    again replaced by their new ones."""
    again = {record["trigger"]: record for record in decided}
    merged = [again.pop(r.get("trigger"), r) if isinstance(r, dict) else r for r in previous]
    return merged + list(again.values())


def _held_by(stored: StoredEvent, pause: Pause) -> frozenset[str]:
    """The triggers whose recorded outcome for ``stored`` is ``pause``'s ``paused``."""
    since = pause.paused_at.isoformat()
    return frozenset(
        str(record["trigger"])
        for record in stored.outcome or []
        if isinstance(record, dict)
        and record.get("outcome") == "paused"
        and record.get("paused") == pause.key
        and record.get("paused_at") == since
    )


#: Events already in the bus when a pause begins are decided under it, though received
#: a little before: a resume looks this far back for them.
_PAUSE_SLACK = timedelta(minutes=5)
_PAUSE_PAGE = 1000


def _redact(url: str | None) -> str | None:
    """``url`` without a password, for showing which connection a sensor uses."""
    if url is None or "://" not in url:
        return url
    scheme, _, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    user, at, host = authority.rpartition("@")
    if at and ":" in user:
        user = user.partition(":")[0] + ":***"
    return f"{scheme}://{user}{at}{host}{slash}{path}"


def _what(pipeline_name: str, trigger_id: str | None) -> str:
    if trigger_id is None:
        return f"pipeline {pipeline_name}"
    return f"trigger {trigger_id} of pipeline {pipeline_name}"


#: The most runs one backfill keeps going at once.
MAX_CONCURRENCY = 1000


@dataclass
class _BackfillDriver:
    """The task driving one backfill: cancelled as a whole, ``done`` when it returned."""

    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)


class _OnceStatus:
    """Passes ``started()`` on once, however often a supervised sensor restarts."""

    def __init__(self, status: TaskStatus[None]) -> None:
        self._status = status
        self.done = False

    def started(self, value: None = None) -> None:
        if not self.done:
            self.done = True
            self._status.started()


@dataclass
class _SensorSlot:
    scope: anyio.CancelScope
    spec: TriggerSpec
    base_dir: Path
    health: SensorHealth
    #: The URL its ``connection:`` stood for when it started (a change restarts it).
    connection: str | None


class EventObserver(Protocol):
    """Told of each event once the rule engine's outcome for it is recorded."""

    def event_decided(self, event: Event, outcome: list[dict[str, Any]]) -> None: ...


class Reactor:
    """The service, as an async context manager.

    ``async with Reactor(folder, store) as reactor:`` loads the pipelines
    (raising :class:`SpecErrorGroup` before anything starts if one is
    broken), starts every sensor, and serves until the block ends, then stops
    in order: sensors, the bus, running runs (after ``grace``), the store.
    """

    def __init__(
        self,
        pipelines_dir: Path | None,
        store: Store,
        *,
        clock: Clock | None = None,
        registry: Registry | None = None,
        settings: Settings | None = None,
        observers: Sequence[RunObserver] = (),
        run_slots: RunSlots | None = None,
        task_slots: TaskSlots | None = None,
    ) -> None:
        self.pipelines_dir = pipelines_dir.resolve() if pipelines_dir else None
        self.store = store
        self.clock = clock or SystemClock()
        self.registry = registry or default_registry()
        self.settings = settings or Settings()
        self.observers = list(observers)
        #: Told of every event the rule engine decided, with its outcome (the UI's stream).
        self.event_observers: list[EventObserver] = []
        #: Alerts (docs/alerts.md): told of runs and events like any observer.
        self.alerter = Alerter(self)
        self.observers.append(self.alerter)
        self.event_observers.append(self.alerter)
        #: Called just before the HTTP server stops (the UI ends its live streams).
        self.before_http_stops: list[Callable[[], None]] = []
        self.host = socket.gethostname()
        self.owner = f"{self.host}:{os.getpid()}:{new_id()[-8:]}"
        self.env = dict(os.environ)
        #: Prometheus metrics (``GET /metrics``), and traces when OpenTelemetry is configured.
        self.metrics = Metrics()
        self.metrics.watch(self.backlog, self.sensor_health)
        self.metrics.time_store(store)
        self.tracing = tracing_from_env(self.env)
        for observer in (self.metrics, self.tracing):
            if observer is not None:
                self.observers.append(observer)
                self.event_observers.append(observer)
        self.pipelines: dict[str, Pipeline] = {}
        self.config = Config()
        #: Sends OpenLineage events when ``lineage.openlineage`` is set (read at start).
        self.lineage: OpenLineageEmitter | None = None
        self._hooks: dict[str, HookReceiver] = {}
        self._versions: dict[tuple[str, str], Pipeline] = {}
        self._rules = RuleEngine(())
        self._triggers_and_pipelines: dict[str, tuple[Trigger, Pipeline]] = {}
        #: Pauses by key (pipeline or trigger), and the pause holding each loaded trigger.
        self._pauses: dict[str, Pause] = {}
        self._paused: dict[str, Pause] = {}
        self._windows = Windows()
        self._windows_changed = anyio.Event()
        self._window_scope = anyio.CancelScope()
        self._run_slots = run_slots or LocalRunSlots()
        self._task_slots = task_slots or LocalTaskSlots(self.settings.max_tasks)
        self.pools = LocalPools({})
        self._queued: dict[str, deque[tuple[RunRecord, list[Event]]]] = defaultdict(deque)
        self._runs: dict[str, RunExecutor] = {}
        self._run_done: dict[str, anyio.Event] = {}
        #: Runs being repaired here: the repair's number, for the id of the run's end event.
        self._repairs: dict[str, int] = {}
        self._sensors: dict[str, _SensorSlot] = {}
        self._bus = Bus[_Envelope](self.settings.bus_capacity)
        self._rule_inbox = self._bus.subscribe()
        self._rule_loop_done = anyio.Event()
        self._tg: TaskGroup | None = None
        self._grace_over = anyio.Event()
        self._waiting_for_runs: anyio.CancelScope | None = None
        self._background = anyio.CancelScope()
        self._http_scope = anyio.CancelScope()
        self.http_port: int | None = None
        self._accepting = False
        self._stopping = False
        self._backfills: dict[str, _BackfillDriver] = {}
        self.started = anyio.Event()

    # Lifecycle

    async def __aenter__(self) -> Reactor:
        if self.pipelines_dir is not None:
            loaded = load_folder(self.pipelines_dir, registry=self.registry)
            if loaded.problems and self.settings.strict:
                raise SpecErrorGroup(loaded.problems)
            for problem in loaded.problems:
                logger.warning("pipeline not loaded: %s", problem)
            self.pipelines = loaded.pipelines
            self.config = loaded.config
            self.pools.resize(self.config.spec.pools)
            self.lineage = self._open_lineage()
            # Secrets are read now: a hook that could not check its requests must not start.
            self._hooks, unavailable = open_hooks(
                self.pipelines.values(), self.env, self.config.limits.webhook_max_body
            )
            if unavailable and self.settings.strict:
                raise SpecErrorGroup(unavailable)
            for problem in unavailable:
                # Only ``reactor run`` is not strict, and it serves no hooks.
                logger.debug("webhook not available: %s", problem)
        await self.store.open()
        try:
            self._pauses = {pause.key: pause for pause in await self.store.pauses()}
            await self._apply_pipelines(self.pipelines)
            self._tg = anyio.create_task_group()
            await self._tg.__aenter__()
        except BaseException:
            await self.store.close()
            raise
        try:
            self._tg.start_soon(self._rule_loop)
            await self._tg.start(self._background_loops)
            if self.settings.http is not None:
                self.http_port = await self._tg.start(self._serve_http, *self.settings.http)
            await self.store.register_process(
                ProcessRecord(
                    self.owner, self.host, os.getpid(), self.clock.now(), self.clock.now()
                )
            )
            self._accepting = True
            if self.settings.recover:
                await self._load_windows()
                self._tg.start_soon(self._window_loop)
                await self._recover_runs()
                await self._record_lost_run_events()
                await self._evaluate_pending_events()
                await self._resume_queued()
                await self._resume_backfills()
            await self._sync_sensors()
        except BaseException as exc:
            await self._stop(exc)
            raise
        self.started.set()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        await self._stop(exc)
        return None

    async def _stop(self, exc: BaseException | None) -> None:
        assert self._tg is not None
        self._accepting = False
        self._stopping = True
        try:
            with anyio.CancelScope(shield=True):
                # A backfill left running is resumed by the next start.
                for driver in self._backfills.values():
                    driver.scope.cancel()
                for slot in self._sensors.values():
                    slot.scope.cancel()
                    slot.health.state = "stopped"
                self._sensors.clear()
                # Windows closing now would only leave queued runs: the next start fires them.
                self._window_scope.cancel()
                self._bus.close()
                # What the sensors and the API handed in before is evaluated and recorded.
                await self._rule_loop_done.wait()
                with anyio.move_on_after(self.settings.grace) as waiting:
                    self._waiting_for_runs = waiting
                    while self._runs and not self._grace_over.is_set():
                        await next(iter(self._run_done_for_active())).wait()
                for executor in list(self._runs.values()):
                    executor.cancel("the service stopped before the run finished")
                self._background.cancel()
                for hook in self.before_http_stops:
                    hook()
                self._http_scope.cancel()
        finally:
            tg, self._tg = self._tg, None
            # An error of the caller's block (say, an unknown pipeline in run_now) must reach
            # the caller as itself, not wrapped in an ExceptionGroup; only cancellation is
            # the task group's business.
            passed = exc if exc is not None and not isinstance(exc, Exception) else None
            try:
                await tg.__aexit__(
                    type(passed) if passed else None,
                    passed,
                    passed.__traceback__ if passed else None,
                )
            finally:
                with anyio.CancelScope(shield=True):
                    await self.store.close()
                    if self.tracing is not None:
                        await self.tracing.close()

    @property
    def accepting(self) -> bool:
        """Whether new events and runs are admitted (not before start, not while stopping)."""
        return self._accepting

    def cancel_all(self) -> None:
        """Stop waiting for running tasks: cancel every run now (a second Ctrl-C)."""
        self._grace_over.set()
        if self._waiting_for_runs is not None:
            self._waiting_for_runs.cancel()
        for executor in list(self._runs.values()):
            executor.cancel("cancelled at once by a second stop request")

    def _run_done_for_active(self) -> list[anyio.Event]:
        return [self._run_done[run_id] for run_id in self._runs if run_id in self._run_done]

    async def _background_loops(self, *, task_status: TaskStatus[None]) -> None:
        with self._background:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._heartbeat_loop)
                if self.lineage is not None:
                    tg.start_soon(self.lineage.run)
                if self.settings.recover:  # not in ``reactor run``: it only runs its pipeline
                    tg.start_soon(retention_loop, self)
                    tg.start_soon(self.alerter.run)
                if self.settings.reload and self.pipelines_dir is not None:
                    tg.start_soon(self._watch_pipelines)
                task_status.started()

    def _open_lineage(self) -> OpenLineageEmitter | None:
        spec = self.config.spec.lineage.openlineage
        if spec is None:
            return None
        try:
            return OpenLineageEmitter(spec, self.env, self.clock)
        except ConnectorError as exc:
            # Lineage is a record of the work: its endpoint's key missing stops no pipeline.
            logger.warning("OpenLineage events are not sent: %s", exc)
            return None

    async def _serve_http(self, host: str, port: int, *, task_status: TaskStatus[int]) -> None:
        from reactor.api import create_app, serve_http

        with self._http_scope:
            await serve_http(create_app(self), host, port, task_status=task_status)

    async def _heartbeat_loop(self) -> None:
        while True:
            await self.clock.sleep(self.settings.heartbeat)
            await self.store.heartbeat(self.owner, self.clock.now())

    # Pipelines

    async def _apply_pipelines(self, pipelines: dict[str, Pipeline]) -> None:
        for pipeline in pipelines.values():
            if (pipeline.name, pipeline.version) not in self._versions:
                await self.store.save_pipeline_version(
                    pipeline.name,
                    pipeline.version,
                    str(pipeline.path),
                    pipeline.text,
                    self.clock.now(),
                )
                self._versions[(pipeline.name, pipeline.version)] = pipeline
        self.pipelines = pipelines
        self._rules = RuleEngine(pipelines.values())
        self._triggers_and_pipelines = {
            t.key: (t, p) for p in pipelines.values() for t in p.triggers
        }
        self._refresh_paused()

    async def reload(self) -> list[str]:
        """Re-read the pipelines folder; a broken file keeps its previous version in force."""
        assert self.pipelines_dir is not None
        loaded = load_folder(self.pipelines_dir, registry=self.registry)
        merged = dict(loaded.pipelines)
        for name, old in self.pipelines.items():
            if old.path in loaded.broken and name not in merged:
                merged[name] = old
        if loaded.config.path is not None or not (self.pipelines_dir / SETTINGS_FILE).exists():
            # A broken reactor.yaml keeps the settings in force (its problems are logged).
            self.config = loaded.config
            self.pools.resize(self.config.spec.pools)
        problems = [str(p) for p in loaded.problems]
        for problem in problems:
            logger.error("pipeline not reloaded: %s (the previous version stays in force)", problem)
        if cycles := chain_cycles(merged):
            # New versions chained to previous ones kept in force (their files broke):
            # a cycle would start runs without end, so nothing changes.
            for cycle, _ in cycles:
                logger.error("pipelines not reloaded: %s (the previous versions stay)", cycle)
            return problems + [str(cycle) for cycle, _ in cycles]
        changed = {
            name
            for name, p in merged.items()
            if name not in self.pipelines or self.pipelines[name].version != p.version
        }
        removed = set(self.pipelines) - set(merged)
        hooks, unavailable = open_hooks(
            merged.values(), self.env, self.config.limits.webhook_max_body
        )
        for hook_problem in unavailable:
            logger.error("webhook not reloaded: %s (its previous settings stay)", hook_problem)
        wanted = {
            t.spec.hook_name
            for p in merged.values()
            for t in p.triggers
            if isinstance(t.spec, HttpIngress)
        }
        kept = {n: self._hooks[n] for n in wanted - hooks.keys() if n in self._hooks}
        self._hooks = hooks | kept
        await self._apply_pipelines(merged)
        await self._sync_sensors()
        for name in sorted(changed):
            logger.info("pipeline %s loaded (version %s)", name, merged[name].version)
        for name in sorted(removed):
            logger.info("pipeline %s removed", name)
        return problems

    async def _watch_pipelines(self) -> None:
        from watchfiles import awatch

        assert self.pipelines_dir is not None

        def is_pipeline_file(_change: object, path: str) -> bool:
            return path.endswith((".yaml", ".yml"))

        # rust_timeout: awatch's thread notices cancellation only when it returns (after
        # 5 s by default), which held every shutdown up that long.
        async for _changes in awatch(
            self.pipelines_dir,
            debounce=300,
            step=50,
            watch_filter=is_pipeline_file,
            rust_timeout=250,
        ):
            if self._tg is None:
                return
            try:
                await self.reload()
            except Exception:
                logger.exception("reloading %s failed", self.pipelines_dir)

    # Sensors

    def sensor_health(self) -> dict[str, SensorHealth]:
        return {key: slot.health for key, slot in self._sensors.items()}

    def sensors(self) -> list[dict[str, Any]]:
        """Every running sensor with its trigger and health, by trigger key."""
        return [
            {
                "trigger": key,
                "pipeline": key.partition("/")[0],
                "on": slot.spec.on,
                "connection": _redact(slot.connection),
            }
            | slot.health.to_json()
            for key, slot in sorted(self._sensors.items())
        ]

    async def _sync_sensors(self) -> None:
        assert self._tg is not None
        wanted: dict[str, tuple[Trigger, Pipeline]] = {
            trigger.key: (trigger, pipeline)
            for pipeline in self.pipelines.values()
            for trigger in pipeline.triggers
            if trigger.spec.has_sensor and self.settings.sensors
        }
        for key, slot in list(self._sensors.items()):
            trigger_pipeline = wanted.get(key)
            if (
                trigger_pipeline is None
                or trigger_pipeline[0].spec != slot.spec
                or trigger_pipeline[1].base_dir != slot.base_dir
                or self._connection_of(trigger_pipeline[0].spec) != slot.connection
            ):
                slot.scope.cancel()
                slot.health.state = "stopped"
                del self._sensors[key]
        for key, (trigger, pipeline) in wanted.items():
            if key not in self._sensors:
                await self._tg.start(self._supervise_sensor, trigger, pipeline)

    async def _supervise_sensor(
        self, trigger: Trigger, pipeline: Pipeline, *, task_status: TaskStatus[None]
    ) -> None:
        kind = self.registry.triggers[trigger.spec.on]
        assert kind.sensor is not None
        ctx = SensorContext(trigger.key, pipeline.base_dir, self.clock, self, self.env)
        ctx.set_health("starting")
        status = _OnceStatus(task_status)
        delay = 1.0
        with anyio.CancelScope() as scope:
            self._sensors[trigger.key] = _SensorSlot(
                scope,
                trigger.spec,
                pipeline.base_dir,
                ctx.health,
                self._connection_of(trigger.spec),
            )
            while True:
                try:
                    await kind.sensor(trigger.spec).run(ctx, task_status=status)
                    message = "sensor stopped by itself"
                except Exception as exc:
                    message = f"{type(exc).__name__}: {exc}"
                    logger.warning(
                        "sensor %s failed: %s; restarting in %gs", trigger.key, message, delay
                    )
                status.started()
                ctx.set_health("failing", message)
                ctx.health.restarts += 1
                await self.clock.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _connection_of(self, spec: TriggerSpec) -> str | None:
        ref = getattr(spec, "connection", None)
        if not isinstance(ref, str):
            return None
        try:
            return self.connection(ref)
        except ConnectorError as exc:
            return f"unresolved: {exc}"

    # What sensors ask of the service (reactor.sensors.SensorHost)

    def connection(self, ref: str) -> str:
        """The URL of a ``connection:`` (inline, or named under ``connections:``)."""
        return self.config.connections.resolve(ref, self.env)

    async def emit_many(
        self, trigger_key: str, events: Sequence[Event], cursor: Any = None
    ) -> list[EmitResult]:
        """Persist ``events`` (and ``cursor``) in one transaction, then hand the new ones on."""
        arrived = time.perf_counter()
        stored = await self.store.ingest_many(
            events, self.clock.now(), (trigger_key, cursor) if cursor is not None else None
        )
        hit("ingest.after_persist")
        results = []
        for event, (event_id, new) in zip(events, stored, strict=True):
            self.metrics.ingested(event, new)
            if new:
                await self._bus.publish(_Envelope(event, arrived=arrived))
            results.append(EmitResult(event_id, new))
        return results

    async def load_cursor(self, trigger_key: str) -> Any | None:
        return await self.store.get_cursor(trigger_key)

    async def save_cursor(self, trigger_key: str, cursor: Any) -> None:
        await self.store.save_cursor(trigger_key, cursor, self.clock.now())

    async def dead_letter(self, letter: DeadLetter) -> None:
        logger.warning(
            "sensor %s: dead letter %s: %s", letter.trigger_key, letter.ref, letter.reason
        )
        await self.store.add_dead_letter(letter)
        self.metrics.dead_letter(letter.trigger_key)

    async def last_event(self, source: str) -> StoredEvent | None:
        return await self.store.last_event(source)

    # Events

    async def _ingest(self, event: Event, *, evaluated: bool = False) -> tuple[str, bool]:
        result = await self.store.ingest(event, self.clock.now(), evaluated=evaluated)
        hit("ingest.after_persist")
        if evaluated and result[1]:
            # Stored as decided (no trigger listens): the rule loop never sees it.
            for observer in self.event_observers:
                observer.event_decided(event, [])
        self.metrics.ingested(event, result[1])
        return result

    async def emit(self, event: Event) -> EmitResult:
        """For sensors: persist ``event``, then hand it to the rule engine (not waiting)."""
        arrived = time.perf_counter()
        event_id, new = await self._ingest(event)
        if new:
            await self._bus.publish(_Envelope(event, arrived=arrived))
        return EmitResult(event_id, new)

    async def publish(self, event: Event) -> PublishResult:
        """Persist ``event`` and wait until its runs are admitted; duplicates start nothing."""
        if not self._accepting:
            raise AdmissionError("the service is stopping and does not accept events")
        arrived = time.perf_counter()
        event_id, new = await self._ingest(event)
        if not new:
            stored = await self.store.get_event(event.source, event.id)
            run_ids = (
                [d["run_id"] for d in (stored.outcome or []) if stored and d.get("run_id")]
                if stored
                else []
            )
            return PublishResult(event_id, True, run_ids)
        envelope = _Envelope(event, anyio.Event(), arrived=arrived)
        await self._bus.publish(envelope)
        assert envelope.done is not None
        await envelope.done.wait()
        if envelope.error is not None:
            raise envelope.error
        return PublishResult(event_id, False, envelope.run_ids)

    async def _rule_loop(self) -> None:
        try:
            await self._rule_loop_body()
        finally:
            self._rule_loop_done.set()

    async def _rule_loop_body(self) -> None:
        async with self._rule_inbox:
            while True:
                try:
                    batch = [await self._rule_inbox.receive()]
                except anyio.EndOfStream:
                    return
                # Whatever else is queued is evaluated with it, and their outcomes are
                # written at once (the store commits them together), so a burst of events
                # costs a few commits, not one round trip each in turn.
                while len(batch) < _RULE_BATCH:
                    try:
                        batch.append(self._rule_inbox.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                await self._evaluate_batch(batch)

    async def _evaluate(self, event: Event) -> list[str]:
        envelope = _Envelope(event)
        await self._evaluate_batch([envelope])
        if envelope.error is not None:
            raise envelope.error
        return envelope.run_ids

    async def _evaluate_batch(self, batch: list[_Envelope]) -> None:
        """Decide for each event in order, record every outcome at once, then admit in order."""
        now = self.clock.now()
        planned_here: Counter[str] = Counter()
        decided = [
            self._decide(envelope.event, planned_here, now, envelope.only) for envelope in batch
        ]
        outcomes = [
            OutcomeToRecord(
                envelope.event,
                decision.outcome
                if envelope.only is None
                else _replaced(envelope.previous, decision.outcome),
                [run for run, _, _ in decision.planned],
                decision.windows,
            )
            for envelope, decision in zip(batch, decided, strict=True)
        ]
        admitted = await self.store.record_outcomes(outcomes, now)
        await self._name_existing_runs(batch, decided, outcomes, admitted, now)
        for envelope, result in zip(batch, admitted, strict=True):
            if isinstance(result, Exception):
                logger.error(
                    "evaluating event %s failed: %s", envelope.event.id, result, exc_info=result
                )
            else:
                hit("rules.after_outcome")
                for observer in self.event_observers:
                    observer.event_decided(envelope.event, envelope.decided)
        for envelope, decision, result in zip(batch, decided, admitted, strict=True):
            if isinstance(result, Exception):
                envelope.error = result
            else:
                for (_, plan, events), run in zip(decision.planned, result, strict=True):
                    if run.new:
                        self.metrics.run_admitted(run.run.id, envelope.arrived)
                        self._admit(run.run, plan, events)
                envelope.run_ids = [run.run.id for run in result]
            if envelope.done is not None:
                envelope.done.set()
        for decision in decided:
            for note in decision.notes:
                await self._note(note)
        if any(decision.windows for decision in decided):
            self._windows_changed.set()
        for name in planned_here:
            self._start_queued(name)

    async def _name_existing_runs(
        self,
        batch: list[_Envelope],
        decided: list[_Decided],
        outcomes: list[OutcomeToRecord],
        admitted: list[list[Admitted] | Exception],
        now: datetime,
    ) -> None:
        """Where a run key was taken already (an event decided again: a re-drive, a
        recovery), the outcome names the run that exists, not the one planned in vain."""
        fixed: list[OutcomeToRecord] = []
        for envelope, decision, outcome, result in zip(
            batch, decided, outcomes, admitted, strict=True
        ):
            envelope.decided = decision.outcome
            if isinstance(result, Exception):
                continue
            existing = {
                planned.id: run.run.id
                for (planned, _, _), run in zip(decision.planned, result, strict=True)
                if not run.new
            }
            if not existing:
                continue
            envelope.existing = list(existing.values())
            for record in decision.outcome:
                if record.get("run_id") in existing:
                    record["run_id"] = existing[record["run_id"]]
                    record["reason"] = f"{record['reason']}; run {record['run_id']} existed already"
            fixed.append(OutcomeToRecord(outcome.event, outcome.decisions, []))
        if fixed:
            for problem in await self.store.record_outcomes(fixed, now):
                if isinstance(problem, Exception):
                    logger.error("naming the existing runs in an outcome failed: %s", problem)

    def _decide(
        self,
        event: Event,
        planned_here: Counter[str],
        now: datetime,
        only: frozenset[str] | None = None,
    ) -> _Decided:
        """The event's outcome, the runs it starts and the windows it changes;
        ``planned_here`` counts the runs planned earlier in the same batch, so limits hold
        across it. ``only``: decide for these triggers alone (a replay after a pause)."""
        decided = _Decided()
        paused = self._paused
        # Lines logged while deciding name the event (reset below: no ``try``, a failure
        # here fails the whole batch anyway).
        event_token = EVENT_ID.set(event.id)
        for decision in self._rules.evaluate(event, self.env):
            if only is not None and decision.trigger not in only:
                continue
            record = decision.to_json()
            decided.outcome.append(record)
            if paused and (pause := paused.get(decision.trigger)) is not None:
                # Recorded, not fired, and no window fed: a resume may replay it.
                record.pop("values", None)
                record.update(
                    fired=False,
                    outcome="paused",
                    reason=pause.reason,
                    params=None,
                    paused=pause.key,
                    paused_at=pause.paused_at.isoformat(),
                )
                continue
            if not decision.fired:
                if decision.reason.startswith("params:"):
                    # The trigger matched but its params are bad: say so where the user looks.
                    logger.warning(
                        "trigger %s did not fire for event %s: %s",
                        decision.trigger,
                        event.id,
                        decision.reason,
                    )
                continue
            pipeline = self.pipelines[decision.pipeline]
            pair = self._triggers_and_pipelines.get(decision.trigger)
            trigger = pair[0] if pair is not None else None
            if trigger is not None and trigger.grouping is not None:
                step = self._windows.offer(trigger, pipeline, event, decision.params, self.env, now)
                decided.windows.extend(step.rows)
                decided.notes.extend(step.notes)
                record["outcome"], record["reason"] = step.outcome, step.reason
                record["fired"] = bool(step.fires)
                if step.window is not None:
                    record["window"] = step.window
                fires = step.fires
            else:
                fires = [Fire(decision.trigger, pipeline.name, "", [event], decision.params or {})]
            for fire in fires:
                run = self._plan_fire(fire, planned_here)
                if run is None:
                    record["fired"] = False
                    record["outcome"] = "skipped"
                    record["reason"] = (
                        f"skipped: {pipeline.spec.concurrency.max_active_runs} runs active"
                        " (on_overlap: skip)"
                    )
                    continue
                record["run_id"] = run[0].id
                decided.planned.append(run)
        EVENT_ID.reset(event_token)
        return decided

    def _plan_fire(
        self, fire: Fire, planned_here: Counter[str]
    ) -> tuple[RunRecord, str, list[Event]] | None:
        """The run ``fire`` starts and its admission plan; ``None`` if skipped."""
        pipeline = self.pipelines[fire.pipeline]
        plan = self._plan(pipeline, planned_here[pipeline.name])
        if plan == "skip":
            return None
        planned_here[pipeline.name] += 1
        run = self._new_run(
            pipeline,
            fire.params,
            trigger=fire.trigger,
            key=fire.run_key or run_key(fire.trigger, fire.events[0]),
            event_ids=[e.id for e in fire.events],
        )
        return run, plan, fire.events

    async def _note(self, event: Event) -> None:
        """Record what a trigger says about itself (a correlation timed out) as an event."""
        try:
            _, new = await self._ingest(event)
            if new and not self._stopping:
                await self._bus.publish(_Envelope(event))
        except anyio.ClosedResourceError:
            pass
        except Exception:
            logger.exception("recording %s of trigger %s failed", event.type, event.subject)

    # Trigger windows

    async def _load_windows(self) -> None:
        """Take over the windows saved by earlier runs of the service."""
        await self.store.prune_windows(self.clock.now())
        rows = await self.store.open_windows()
        events: dict[tuple[str, str], Event] = {}
        for source, event_id in set(self._windows.refs(rows)):
            stored = await self.store.get_event(source, event_id)
            if stored is not None:
                events[(source, event_id)] = stored.event
        for source, event_id in self._windows.load(rows, events):
            logger.warning("trigger windows hold event %s from %s, which is gone", event_id, source)

    async def _window_loop(self) -> None:
        """Fire the windows whose time is up: batches, debounces, held runs, timeouts."""
        with self._window_scope:
            await self._window_loop_body()

    async def _window_loop_body(self) -> None:
        while True:
            deadline = self._windows.next_deadline()
            now = self.clock.now()
            if deadline is None or deadline > now:
                await self._sleep_until_window(deadline)
                continue
            for trigger_key, key in self._windows.due(now):
                await self._expire_window(trigger_key, key, now)

    async def _sleep_until_window(self, deadline: datetime | None) -> None:
        """Sleep until ``deadline`` (forever if ``None``) or until a window changes."""
        wake = self._windows_changed = anyio.Event()

        async def sleep() -> None:
            assert deadline is not None
            # The time left is taken when the sleep begins, not when it was asked for.
            await self.clock.sleep((deadline - self.clock.now()).total_seconds())
            wake.set()

        async with anyio.create_task_group() as tg:
            if deadline is not None:
                tg.start_soon(sleep)
            await wake.wait()
            tg.cancel_scope.cancel()

    async def _expire_window(self, trigger_key: str, key: str, now: datetime) -> None:
        pair = self._triggers_and_pipelines.get(trigger_key)
        trigger, pipeline = pair if pair is not None else (None, None)
        step = self._windows.expire(trigger_key, key, trigger, pipeline, self.env, now)
        planned_here: Counter[str] = Counter()
        planned = [p for fire in step.fires if (p := self._plan_fire(fire, planned_here))]
        try:
            admitted = await self.store.save_windows(step.rows, [p[0] for p in planned], now)
        except Exception:
            logger.exception("closing window %s of trigger %s failed", key, trigger_key)
            return
        for (_, plan, events), run in zip(planned, admitted, strict=True):
            if run.new:
                self._admit(run.run, plan, events)
        for note in step.notes:
            await self._note(note)
        for name in planned_here:
            self._start_queued(name)

    # Runs

    def _plan(self, pipeline: Pipeline, pending: int = 0) -> str:
        """Start, queue, skip or cancel the running ones; ``pending`` runs are about to queue."""
        concurrency = pipeline.spec.concurrency
        return plan_admission(
            active=self._run_slots.active(pipeline.name),
            queued=len(self._queued[pipeline.name]) + pending,
            max_active_runs=concurrency.max_active_runs,
            on_overlap=concurrency.on_overlap,
        )

    def _new_run(
        self,
        pipeline: Pipeline,
        params: dict[str, Any],
        *,
        trigger: str | None,
        key: str,
        event_ids: list[str],
    ) -> RunRecord:
        return RunRecord(
            id=new_id(),
            run_key=key,
            pipeline=pipeline.name,
            version=pipeline.version,
            status="queued",
            params=params,
            trigger=trigger,
            event_ids=event_ids,
            created_at=self.clock.now(),
        )

    def _admit(self, run: RunRecord, plan: str, events: list[Event]) -> None:
        for observer in self.observers:
            observer.run_changed(run)
        if self._stopping:
            # Events drained while stopping: the run stays queued in the store and the
            # next start runs it (a run started now would only be cut off).
            return
        self._run_done[run.id] = anyio.Event()
        if plan == "start":
            self._start(run, events)
            return
        if plan == "cancel_running":
            for run_id in self._run_slots.running(run.pipeline):
                executor = self._runs.get(run_id)
                if executor is not None:
                    executor.cancel(
                        f"cancelled for newer run {run.id} (on_overlap: cancel_running)"
                    )
        self._queued[run.pipeline].append((run, events))

    def _start(
        self,
        run: RunRecord,
        events: list[Event],
        resume: list[TaskRecord] | None = None,
        retry_base: Mapping[str, int] | None = None,
    ) -> None:
        assert self._tg is not None
        pipeline = self._versions.get((run.pipeline, run.version)) or self.pipelines[run.pipeline]
        executor = RunExecutor(
            run,
            pipeline,
            events=events,
            store=self.store,
            clock=self.clock,
            task_slots=self._task_slots,
            owner=self.owner,
            env=self.env,
            observers=self.observers,
            resume=resume,
            task_events=self,
            connection=self.connection,
            pools=self.pools,
            max_output=self.config.limits.max_output,
            children=self,
            retry_base=retry_base,
            lineage=self.lineage,
        )
        self._runs[run.id] = executor
        self._run_slots.acquire(run.pipeline, run.id)
        self._tg.start_soon(self._execute, executor, name=f"run {run.id}")

    async def _execute(self, executor: RunExecutor) -> None:
        run = executor.run
        try:
            await executor.execute()
        except Exception as exc:
            # Even recording the failure failed (the store is down): try once more, and
            # tell the observers, so nobody waits for this run forever.
            logger.exception("run %s failed inside Reactor", run.id)
            run.status, run.reason = "failed", f"internal error: {type(exc).__name__}: {exc}"
            run.ended_at = self.clock.now()
            with anyio.CancelScope(shield=True):
                try:
                    await self.store.set_run_status(
                        run.id, "failed", at=run.ended_at, reason=run.reason
                    )
                except Exception:
                    logger.exception("recording the failure of run %s failed", run.id)
            for observer in self.observers:
                observer.run_changed(run)
        finally:
            self._runs.pop(run.id, None)
            self._run_slots.release(run.pipeline, run.id)
            self._start_queued(run.pipeline)
            # After the run's end is recorded and its slot is free: the run's own time is
            # over, and downstream runs are admitted by the rule loop, not awaited here.
            hit("run.after_finish")
            with anyio.CancelScope(shield=True):
                await self._emit_run_event(run, _outputs(executor.records.values()))
            done = self._run_done.pop(run.id, None)
            if done is not None:
                done.set()

    # Task events (reactor.executor.TaskEventSink)

    def listens(self, event: Event) -> bool:
        return self.settings.chain and any(
            trigger.spec.accepts(event) for trigger, _ in self._rules.candidates(event)
        )

    async def task_events_stored(self, events: list[Event]) -> None:
        """Hand new task events to the rule loop; while stopping they wait for the next start."""
        if self._stopping:
            return
        try:
            for event in events:
                await self._bus.publish(_Envelope(event))
        except anyio.ClosedResourceError:
            pass

    async def _emit_run_event(self, run: RunRecord, outputs: dict[str, Any]) -> None:
        """Make the end of ``run`` an event (for ``on: pipeline``); logs, never raises.

        A lost event (the store failed, the process died) is made again at the next start.
        """
        repair = self._repairs.pop(run.id, None)
        if run.status not in FINAL_RUN_STATES:
            return  # cut off before its end was recorded: the next start takes it over
        event = _run_event(run, outputs, repair)
        try:
            # A run end no trigger can match is stored as evaluated: no rule-loop pass.
            unheard = not self._rules.candidates(event)
            _, new = await self._ingest(event, evaluated=unheard)
            if not new or unheard:
                return
            if not self.settings.chain:
                await self._record_unchained(event)
            elif not self._stopping:
                await self._bus.publish(_Envelope(event))
            # While stopping the bus is closed: the event stays unevaluated in the store
            # and the next start evaluates it.
        except anyio.ClosedResourceError:
            pass
        except Exception:
            logger.exception("recording the end of run %s as an event failed", run.id)

    async def _record_unchained(self, event: Event) -> None:
        """Record why a run's end started nothing here: this process does not chain."""
        outcome = []
        for decision in self._rules.evaluate(event, self.env):
            record = decision.to_json()
            if decision.fired:
                record["fired"] = False
                record["outcome"] = "not_started"
                record["reason"] = "not started: reactor run starts only the pipeline it runs"
            outcome.append(record)
        await self.store.record_outcome(event, outcome, [], self.clock.now())

    async def _record_lost_run_events(self) -> None:
        """Make the end events of runs that ended just before a crash lost them."""
        source_prefix = run_event_source("")
        while runs := await self.store.runs_without_event(source_prefix, 500):
            for run in runs:
                outputs = _outputs(await self.store.task_runs(run.id))
                await self._ingest(_run_event(run, outputs))
            if len(runs) < 500:
                return

    def _start_queued(self, pipeline_name: str) -> None:
        queue = self._queued[pipeline_name]
        pipeline = self.pipelines.get(pipeline_name)
        while queue and self._accepting:
            limit = pipeline.spec.concurrency.max_active_runs if pipeline else 1
            allow = pipeline is not None and pipeline.spec.concurrency.on_overlap == "allow"
            if not allow and self._run_slots.active(pipeline_name) >= limit:
                return
            run, events = queue.popleft()
            self._start(run, events)

    async def pipeline_of(self, run: RunRecord) -> Pipeline | None:
        """The pipeline version ``run`` was admitted with, for the pages that show it."""
        return await self._version_of(run)

    async def _version_of(self, run: RunRecord) -> Pipeline | None:
        """The pipeline version ``run`` was admitted with (from the store if not loaded)."""
        known = self._versions.get((run.pipeline, run.version))
        if known is not None:
            return known
        current = self.pipelines.get(run.pipeline)
        if current is None:
            return None
        text = await self.store.pipeline_version(run.pipeline, run.version)
        if text is not None:
            try:
                pipeline = load_pipeline(current.path, registry=self.registry, text=text)
            except SpecErrorGroup:
                logger.warning(
                    "run %s: its pipeline version no longer loads; using the current one", run.id
                )
            else:
                self._versions[(run.pipeline, run.version)] = pipeline
                return pipeline
        return current

    async def _events_of(self, run: RunRecord) -> list[Event]:
        events = []
        for event_id in run.event_ids:
            stored = await self.store.find_event(event_id)
            if stored is not None:
                events.append(stored.event)
        return events

    async def _recover_runs(self) -> None:
        """Take over runs left running by a process that is gone (crash recovery)."""
        now = self.clock.now()
        processes = {p.owner: p for p in await self.store.processes()}
        for run in await self.store.runs_with_status("running"):
            dead = is_dead(
                run.owner,
                me=self.owner,
                processes=processes,
                host=self.host,
                now=now,
                lease=self.settings.lease,
            )
            if not dead or not await self.store.claim_run(run.id, run.owner, self.owner):
                continue
            crashed = [a for a in await self.store.attempts(run.id) if a.status == "running"]
            if any(a.host in (self.host, None) for a in crashed):
                # By the run id in their environment: the crash may have come before a
                # task's process id was recorded.
                kill_orphans(run.id)
            for attempt in crashed:
                attempt.status = "crashed"
                attempt.ended_at = now
                attempt.error = f"the process running it ({attempt.owner}) stopped"
            if crashed:
                await self.store.save_tasks([], crashed)
            pipeline = await self._version_of(run)
            if pipeline is None:
                reason = f"crashed, and pipeline {run.pipeline!r} no longer exists"
                await self.store.set_run_status(run.id, "failed", at=now, reason=reason)
                continue
            logger.warning(
                "recovering run %s of %s (its process %s stopped)", run.id, run.pipeline, run.owner
            )
            self._run_done[run.id] = anyio.Event()
            self._versions[(run.pipeline, run.version)] = pipeline
            base: Counter[str] = Counter()
            if (repair := repair_number(run.reason)) is not None:
                # A repair started the run again at ``started_at``: the attempts before are
                # history and do not use up the repaired tasks' retries.
                self._repairs[run.id] = repair
                base.update(
                    a.task_id
                    for a in await self.store.attempts(run.id)
                    if run.started_at is not None and a.started_at < run.started_at
                )
            tasks = await self.store.task_runs(run.id)
            self._start(run, await self._events_of(run), tasks, base)

    async def _evaluate_pending_events(self) -> None:
        """Evaluate events that were stored but never evaluated (a crash in between)."""
        done: set[int] = set()
        while True:
            batch = [s for s in await self.store.unevaluated_events(500) if s.seq not in done]
            if not batch:
                return
            for stored in batch:
                done.add(stored.seq)
                try:
                    await self._evaluate(stored.event)
                except Exception:
                    logger.exception("evaluating stored event %s failed", stored.event.id)

    async def _resume_queued(self) -> None:
        for run in await self.store.runs_with_status("queued"):
            if run.pipeline not in self.pipelines or run.id in self._run_done:
                continue
            await self._version_of(run)
            self._run_done[run.id] = anyio.Event()
            self._queued[run.pipeline].append((run, await self._events_of(run)))
        for name in list(self._queued):
            self._start_queued(name)

    async def run_now(
        self, pipeline_name: str, params: dict[str, Any] | None = None, *, actor: str = "api"
    ) -> RunRecord:
        """Start a run of a pipeline on demand (CLI, API, UI); ``actor`` is who asked."""
        key = f"{pipeline_name}/manual@{new_id()}"
        run = await self._run_on_demand(pipeline_name, params or {}, key)
        # As admitted: the executor changes the record it runs while the audit is written.
        admitted = replace(run)
        await self._audit(actor, "run", pipeline_name, run_id=run.id, params=run.params)
        return admitted

    async def _run_on_demand(
        self, pipeline_name: str, params: Mapping[str, Any], key: str
    ) -> RunRecord:
        """Admit a run under ``key``; a key that exists already gives its run, started once."""
        if not self._accepting:
            raise AdmissionError("the service is stopping and does not accept runs")
        pipeline = self.pipelines.get(pipeline_name)
        if pipeline is None:
            known = ", ".join(sorted(self.pipelines)) or "none"
            raise AdmissionError(f"unknown pipeline {pipeline_name!r} (known: {known})")
        try:
            checked = check_params(pipeline.params, params)
        except ParamError as exc:
            raise AdmissionError(f"{pipeline_name}: {exc}") from exc
        plan = self._plan(pipeline)
        if plan == "skip":
            raise AdmissionError(
                f"{pipeline_name} already has {pipeline.spec.concurrency.max_active_runs}"
                " active runs (on_overlap: skip)"
            )
        run = self._new_run(pipeline, checked, trigger=None, key=key, event_ids=[])
        admitted = await self.store.create_run(run)
        if admitted.new:
            self._admit(admitted.run, plan, [])
        return admitted.run

    # Child runs (``run_pipeline:`` tasks): see reactor.actions.ChildRuns.

    async def start_child(self, pipeline: str, params: Mapping[str, Any], key: str) -> RunRecord:
        return await self._run_on_demand(pipeline, params, key)

    async def wait_child(self, run_id: str) -> tuple[RunRecord, dict[str, Any]]:
        run = await self.wait_run(run_id)
        return run, _outputs(await self.store.task_runs(run_id))

    async def cancel_child(self, run_id: str, reason: str) -> None:
        await self._cancel(run_id, reason)

    # Operators' actions: each records who asked (``actor``) in the run's reason and log.

    async def cancel_run(self, run_id: str, *, actor: str) -> RunRecord:
        """Cancel a queued or running run and return it once it has ended.

        Raises :class:`AdmissionError` for an unknown or finished run.
        """
        run = await self.store.get_run(run_id)
        if run is None:
            raise AdmissionError(f"no run {run_id!r}")
        if run.status in FINAL_RUN_STATES:
            raise AdmissionError(f"run {run_id} has ended already ({run.status})")
        reason = f"cancelled by {actor}"
        await self._audit(actor, "cancel", run_id)
        if not await self._cancel(run_id, reason) and run.status == "queued":
            # Queued in the store but not here (left by a stopped process): nothing runs it.
            run.status, run.reason, run.ended_at = "cancelled", reason, self.clock.now()
            await self.store.set_run_status(run.id, "cancelled", at=run.ended_at, reason=reason)
            return run
        return await self.wait_run(run_id)

    async def repair(
        self,
        run_id: str,
        *,
        tasks: Sequence[str] | None = None,
        params: Mapping[str, Any] | None = None,
        latest: bool = False,
        actor: str = "api",
    ) -> tuple[RunRecord, RepairPlan]:
        """Run again the not-succeeded tasks of a finished run (or ``tasks``) and all their
        descendants, keeping the other tasks' outputs: a new attempt of the same run, with
        the version it used (the current one with ``latest``) and ``params`` changed.

        Raises :class:`AdmissionError` for an unknown run, :class:`RepairError` when the
        repair is refused (``UnknownTaskError`` for a task the pipeline does not have).
        """
        if not self._accepting:
            raise AdmissionError("the service is stopping and does not accept repairs")
        run = await self.store.get_run(run_id)
        if run is None:
            raise AdmissionError(f"no run {run_id!r}")
        current = self.pipelines.get(run.pipeline)
        if current is None:
            raise RepairError(f"run {run_id}: pipeline {run.pipeline!r} no longer exists")
        pipeline = current if latest else (await self._version_of(run)) or current
        stored = await self.store.task_runs(run_id)
        statuses = {r.task_id: r.status for r in stored}
        try:
            plan = plan_repair(run.status, pipeline.order, pipeline.needs, statuses, tasks)
        except RepairError as exc:
            raise type(exc)(f"run {run_id}: {exc}") from exc
        kept = {k: v for k, v in run.params.items() if k in pipeline.params}
        try:
            checked = check_params(pipeline.params, {**kept, **(params or {})})
        except ParamError as exc:
            raise RepairError(f"run {run_id}: {exc}") from exc
        if self._plan(pipeline) != "start":
            limit = pipeline.spec.concurrency.max_active_runs
            raise RepairError(
                f"run {run_id}: {run.pipeline} already has {limit} active runs;"
                " repair it when one has ended"
            )
        number = (repair_number(run.reason) or 0) + 1
        source = run_event_source(run.pipeline)
        while await self.store.get_event(source, f"{run.id}/repair-{number}") is not None:
            number += 1
        reason = repair_reason(number, actor, plan)
        now = self.clock.now()
        reopened = await self.store.reopen_run(
            run.id,
            version=pipeline.version,
            params=checked,
            reason=reason,
            owner=self.owner,
            at=now,
        )
        if not reopened:
            raise RepairError(f"run {run_id} is no longer finished (repaired already?)")
        changed = reset_records(stored, plan)
        await self.store.save_tasks(changed)
        await self.store.append_logs(
            [
                LogLine(run.id, r.task_id, r.attempts + 1, "system", now, f"{reason} (was {s})")
                for r in changed
                if r.task_id in plan.reset
                for s in [statuses[r.task_id]]
            ]
        )
        run = await self.store.get_run(run_id)
        assert run is not None
        logger.info("run %s of %s: %s", run.id, run.pipeline, reason)
        await self._audit(actor, "repair", run.id, number=number, tasks=sorted(plan.reset))
        self._versions[(pipeline.name, pipeline.version)] = pipeline
        self._run_done[run.id] = anyio.Event()
        self._repairs[run.id] = number
        base = {r.task_id: r.attempts for r in changed}
        self._start(run, await self._events_of(run), await self.store.task_runs(run.id), base)
        return run, plan

    async def cancel_task(self, run_id: str, task_id: str, *, actor: str) -> None:
        """Cancel one running (or waiting) task of a run this process runs; the rest of the
        run goes on. Raises :class:`AdmissionError` when there is no such task running."""
        executor = self._runs.get(run_id)
        if executor is None:
            raise AdmissionError(f"run {run_id} is not running here")
        if task_id not in executor.records:
            known = ", ".join(executor.records)
            raise AdmissionError(f"run {run_id} has no task {task_id!r} (tasks: {known})")
        if not executor.cancel_task(task_id, f"cancelled by {actor}"):
            status = executor.records[task_id].status
            raise AdmissionError(f"task {task_id} of run {run_id} is not running ({status})")
        await self._audit(actor, "cancel_task", run_id, task=task_id)

    async def _audit(self, actor: str, action: str, target: str, **detail: Any) -> None:
        """Record who did what (the audit a governance layer reads); a store that fails
        here is logged: the action itself is done or under way."""
        entry = AuditEntry(self.clock.now(), actor, action, target, detail or None)
        try:
            await self.store.add_audit(entry)
        except StoreError:
            logger.exception("recording %s of %s by %s failed", action, target, actor)

    def pause_of(self, pipeline_name: str, trigger_id: str | None = None) -> Pause | None:
        """The pause of a pipeline (or of one of its triggers), if it is paused."""
        return self._pauses.get(pause_key(pipeline_name, trigger_id))

    async def pause(
        self, pipeline_name: str, trigger_id: str | None = None, *, actor: str
    ) -> Pause:
        """Pause a pipeline or one of its triggers: events are still stored and decided, as
        ``paused``, and start nothing until :meth:`resume`. Survives restarts.

        Raises :class:`AdmissionError` for an unknown pipeline or trigger, or one paused
        already.
        """
        key = self._pause_target(pipeline_name, trigger_id)
        pause = Pause(key, self.clock.now(), actor)
        if not await self.store.add_pause(pause):
            held = self._pauses.get(key) or next(
                (p for p in await self.store.pauses() if p.key == key), pause
            )
            raise AdmissionError(
                f"{_what(pipeline_name, trigger_id)} is paused already ({held.reason})"
            )
        self._pauses[key] = pause
        self._refresh_paused()
        logger.info("%s paused by %s", _what(pipeline_name, trigger_id), actor)
        await self._audit(actor, "pause", key)
        return pause

    async def resume(
        self,
        pipeline_name: str,
        trigger_id: str | None = None,
        *,
        replay: bool | None,
        actor: str,
    ) -> Resumed:
        """Resume a paused pipeline or trigger, replaying the events it held (``replay``
        true: each is decided again for the triggers it was paused for, in the order
        received) or dropping them (their outcome stays ``paused``). ``None``: the caller
        made no choice, fine only if no event was held.

        Raises :class:`AdmissionError` for an unknown pipeline or trigger, one not paused,
        or no choice made while events wait.
        """
        key = pause_key(pipeline_name, trigger_id)
        what = _what(pipeline_name, trigger_id)
        pause = self._pauses.get(key)
        if pause is None:
            self._pause_target(pipeline_name, trigger_id)
            hint = ""
            if trigger_id is not None and pipeline_name in self._pauses:
                hint = f" (its pipeline is: resume pipeline {pipeline_name})"
            raise AdmissionError(f"{what} is not paused{hint}")
        if replay is None and (held := await self._held_events(pause)):
            raise AdmissionError(
                f"{len(held)} event(s) were received while {what} was paused ({pause.reason}):"
                " choose to replay them or to drop them (reactor resume --replay or --drop;"
                ' "replay": true or false)'
            )
        await self.store.remove_pause(key)
        self._pauses.pop(key, None)
        self._refresh_paused()
        held = await self._held_events(pause)
        logger.info(
            "%s resumed by %s (%s %d held events)",
            what,
            actor,
            "replaying" if replay else "dropping",
            len(held),
        )
        await self._audit(actor, "resume", pause.key, held=len(held), replay=bool(replay))
        if not replay:
            return Resumed(pause, dropped=len(held))
        run_ids: list[str] = []
        for start in range(0, len(held), _RULE_BATCH):
            batch = [
                _Envelope(stored.event, only=triggers, previous=list(stored.outcome or []))
                for stored, triggers in held[start : start + _RULE_BATCH]
            ]
            await self._evaluate_batch(batch)
            for envelope in batch:
                if envelope.error is not None:
                    raise envelope.error
                run_ids.extend(envelope.run_ids)
        return Resumed(pause, replayed=len(held), run_ids=run_ids)

    def _pause_target(self, pipeline_name: str, trigger_id: str | None) -> str:
        """The pause key of a loaded pipeline or trigger; :class:`AdmissionError` if unknown."""
        pipeline = self.pipelines.get(pipeline_name)
        if pipeline is None:
            known = ", ".join(sorted(self.pipelines)) or "none"
            raise AdmissionError(f"unknown pipeline {pipeline_name!r} (known: {known})")
        if trigger_id is not None and all(t.id != trigger_id for t in pipeline.triggers):
            known = ", ".join(t.id for t in pipeline.triggers) or "none"
            raise AdmissionError(
                f"pipeline {pipeline_name} has no trigger {trigger_id!r} (its triggers: {known})"
            )
        return pause_key(pipeline_name, trigger_id)

    def _refresh_paused(self) -> None:
        self._paused = paused_triggers(
            ((p.name, t.key) for p in self.pipelines.values() for t in p.triggers), self._pauses
        )

    async def _held_events(self, pause: Pause) -> list[tuple[StoredEvent, frozenset[str]]]:
        """The events ``pause`` held, in the order received, with the triggers it held."""
        held: list[tuple[StoredEvent, frozenset[str]]] = []
        after: tuple[datetime, int] | None = None
        since = pause.paused_at - _PAUSE_SLACK
        while page := await self.store.events_received(since, after=after, limit=_PAUSE_PAGE):
            for stored in page:
                if triggers := _held_by(stored, pause):
                    held.append((stored, triggers))
            if len(page) < _PAUSE_PAGE:
                break
            after = (page[-1].received_at, page[-1].seq)
        return held

    async def _cancel(self, run_id: str, reason: str) -> bool:
        """Cancel a run running or queued here; ``False`` if this process has no such run."""
        executor = self._runs.get(run_id)
        if executor is not None:
            executor.cancel(reason)
            return True
        for queue in self._queued.values():
            for item in list(queue):
                run = item[0]
                if run.id != run_id:
                    continue
                queue.remove(item)
                run.status, run.reason, run.ended_at = "cancelled", reason, self.clock.now()
                await self.store.set_run_status(run.id, "cancelled", at=run.ended_at, reason=reason)
                for observer in self.observers:
                    observer.run_changed(run)
                await self._emit_run_event(run, {})
                done = self._run_done.pop(run.id, None)
                if done is not None:
                    done.set()
                return True
        return False

    async def wait_run(self, run_id: str) -> RunRecord:
        """Wait until the run reaches a final state and return it."""
        done = self._run_done.get(run_id)
        if done is not None:
            await done.wait()
        run = await self.store.get_run(run_id)
        if run is None:
            raise AdmissionError(f"unknown run {run_id!r}")
        if run.status not in FINAL_RUN_STATES:
            raise AdmissionError(f"run {run_id} is {run.status} and not handled by this process")
        return run

    # Re-drive (reactor/redrive.py): stored events decided again, through the pause-replay
    # path; run keys (trigger + event) make a second re-drive start nothing.

    async def redrive(self, request: RedriveRequest, *, actor: str) -> Redriven:
        """Decide the events ``request`` selects again for today's triggers (those of
        ``request.pipeline``/``trigger`` alone if given); their new records replace the old
        ones in each event's outcome. A trigger that started a run for an event before
        starts nothing and names that run.

        Raises :class:`UnknownEvent` for an event not stored, :class:`RedriveError` for an
        unknown pipeline or trigger or more than ``request.limit`` events.
        """
        if not request.dry_run and not self._accepting:
            raise AdmissionError("the service is stopping and does not re-drive events")
        triggers = self._redrive_triggers(request.pipeline, request.trigger)
        selected = await self._redrive_events(request)
        logger.info(
            "%s %d event(s) for %s, asked by %s",
            "dry run of re-driving" if request.dry_run else "re-driving",
            len(selected),
            _what(request.pipeline, request.trigger) if request.pipeline else "every trigger",
            actor,
        )
        if request.dry_run:
            return Redriven(True, actor, [await self._redrive_dry(s, triggers) for s in selected])
        await self._audit(
            actor,
            "redrive",
            request.pipeline or "*",
            events=[s.event.id for s in selected[:100]],
            count=len(selected),
        )
        done: list[EventRedriven] = []
        for start in range(0, len(selected), _RULE_BATCH):
            page = selected[start : start + _RULE_BATCH]
            batch = [
                _Envelope(stored.event, only=triggers, previous=list(stored.outcome or []))
                for stored in page
            ]
            await self._evaluate_batch(batch)
            for stored, envelope in zip(page, batch, strict=True):
                if envelope.error is not None:
                    raise envelope.error
                new = [r for r in envelope.run_ids if r not in envelope.existing]
                done.append(EventRedriven(stored, envelope.decided, new, envelope.existing))
        return Redriven(False, actor, done)

    def _redrive_triggers(
        self, pipeline_name: str | None, trigger_id: str | None
    ) -> frozenset[str]:
        """The keys of the triggers a re-drive decides again."""
        if pipeline_name is None:
            return frozenset(t.key for p in self.pipelines.values() for t in p.triggers)
        try:
            self._pause_target(pipeline_name, trigger_id)
        except AdmissionError as exc:
            raise RedriveError(str(exc)) from None
        pipeline = self.pipelines[pipeline_name]
        return frozenset(
            t.key for t in pipeline.triggers if trigger_id is None or t.id == trigger_id
        )

    async def _redrive_events(self, request: RedriveRequest) -> list[StoredEvent]:
        if request.dead_letter is not None:
            return [await self._redrive_letter(request.dead_letter, request.decode)]
        if request.event_id is not None:
            if request.source is not None:
                one = await self.store.get_event(request.source, request.event_id)
                if one is None:
                    raise UnknownEvent(
                        f"no event {request.event_id!r} from source {request.source!r}"
                    )
                return [one]
            same = await self.store.find_events(request.event_id, 11)
            if not same:
                raise UnknownEvent(f"no event {request.event_id!r}")
            if len(same) > 1:
                sources = ", ".join(s.event.source for s in same[:10])
                raise RedriveError(
                    f"{len(same) if len(same) <= 10 else 'more than 10'} events have id"
                    f" {request.event_id!r} (sources: {sources}): give the source too"
                )
            return same
        assert request.start is not None
        selected: list[StoredEvent] = []
        after: tuple[datetime, int] | None = None
        while page := await self.store.events_received(
            request.start, after=after, limit=_PAUSE_PAGE
        ):
            for stored in page:
                if request.end is not None and stored.received_at >= request.end:
                    return selected
                if not request.selects(stored):
                    continue
                if len(selected) == request.limit:
                    raise RedriveError(
                        f"more than {request.limit} events match; narrow the type or the time"
                        f" window (one re-drive takes at most {MAX_EVENTS})"
                    )
                selected.append(stored)
            if len(page) < _PAUSE_PAGE:
                break
            after = (page[-1].received_at, page[-1].seq)
        return selected

    async def _redrive_letter(self, seq: int, decode: str | None) -> StoredEvent:
        """Rebuild dead letter ``seq``'s event as its trigger's sensor would and store it
        under the usual id and source (stored already: a duplicate, kept as it was)."""
        found = await self.store.dead_letters(limit=1, before=seq + 1)
        if not found or found[0].seq != seq:
            raise UnknownEvent(f"no dead letter {seq}")
        letter = found[0]
        trigger = next(
            (t for p in self.pipelines.values() for t in p.triggers if t.key == letter.trigger_key),
            None,
        )
        if trigger is None:
            raise RedriveError(
                f"this dead letter cannot be re-driven: its trigger {letter.trigger_key!r}"
                " is not loaded any more"
            )
        source = sensor_source(letter.trigger_key)
        try:
            event = trigger.spec.letter_event(letter.payload, source, decode)
        except ValueError as exc:
            raise RedriveError(f"dead letter {seq} ({letter.trigger_key}): {exc}") from None
        if event is None:
            raise RedriveError(
                f"this dead letter cannot be re-driven: it is from trigger"
                f" {letter.trigger_key!r} (on: {trigger.spec.on}), whose letters cannot be"
                " rebuilt into events"
            )
        # Stored unevaluated: a crash before the decision below has recovery decide it.
        await self._ingest(event)
        stored = await self.store.get_event(event.source, event.id)
        assert stored is not None
        return stored

    async def _redrive_dry(self, stored: StoredEvent, triggers: frozenset[str]) -> EventRedriven:
        """What re-driving ``stored`` would decide; nothing is recorded or started."""
        shown = EventRedriven(stored, [])
        for decision in self._rules.evaluate(stored.event, self.env):
            if decision.trigger not in triggers:
                continue
            record = decision.to_json()
            shown.decisions.append(record)
            if (pause := self._paused.get(decision.trigger)) is not None:
                record.update(fired=False, outcome="paused", reason=pause.reason)
            elif decision.fired:
                key = run_key(decision.trigger, stored.event)
                found = await self.store.runs_with_key_prefix(decision.pipeline, key)
                if existing := [run.id for run in found if run.run_key == key]:
                    record["run_id"] = existing[0]
                    record["reason"] = f"{record['reason']}; run {existing[0]} existed already"
                    shown.existing_run_ids.extend(existing)
                else:
                    shown.would_start += 1
        return shown

    # Backfills (reactor/backfill.py): one run per logical time, ``concurrency`` at a time.

    async def start_backfill(
        self,
        pipeline_name: str,
        start: datetime,
        end: datetime,
        *,
        step: float | None = None,
        params: Mapping[str, Any] | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        actor: str = "api",
    ) -> tuple[BackfillRow, bool]:
        """Start a backfill; ``(backfill, new)``. The same pipeline, range, step and params
        again give the backfill stored already (``new`` is ``False``) and start nothing.

        Raises :class:`AdmissionError` for an unknown pipeline or while stopping, and
        :class:`BackfillError` for a range, step, concurrency or params that do not plan.
        """
        if not self._accepting:
            raise AdmissionError("the service is stopping and does not accept backfills")
        pipeline = self.pipelines.get(pipeline_name)
        if pipeline is None:
            known = ", ".join(sorted(self.pipelines)) or "none"
            raise AdmissionError(f"unknown pipeline {pipeline_name!r} (known: {known})")
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise BackfillError(
                f"concurrency must be between 1 and {MAX_CONCURRENCY}, got {concurrency}"
            )
        given = dict(params or {})
        plan = plan_backfill(pipeline, start, end, step, given, self.env)
        backfill = BackfillRow(
            id=plan.id,
            pipeline=pipeline.name,
            start=start,
            end=end,
            step=step,
            params=given,
            concurrency=concurrency,
            total=len(plan.keys),
            status="running",
            created_at=self.clock.now(),
            actor=actor,
        )
        stored, new = await self.store.create_backfill(backfill)
        if new:
            logger.info("backfill %s of %s started by %s", stored.id, stored.pipeline, actor)
            await self._audit(actor, "backfill", stored.pipeline, backfill_id=stored.id)
            self._drive_backfill(stored)
        return stored, new

    async def backfill_runs(self, backfill: BackfillRow) -> list[RunRecord]:
        """The runs a backfill has created so far, oldest first."""
        prefix = run_key_prefix(backfill.pipeline, backfill.id)
        return await self.store.runs_with_key_prefix(backfill.pipeline, prefix)

    async def cancel_backfill(self, backfill_id: str, *, actor: str) -> BackfillRow:
        """Cancel a running backfill: it starts no more runs, its queued and running runs
        are cancelled; returns it once they have ended. Raises :class:`AdmissionError` for
        an unknown or ended backfill."""
        backfill = await self.store.get_backfill(backfill_id)
        if backfill is None:
            raise AdmissionError(f"no backfill {backfill_id!r}")
        if backfill.status != "running":
            raise AdmissionError(f"backfill {backfill_id} has ended already ({backfill.status})")
        reason = f"cancelled by {actor}"
        now = self.clock.now()
        await self._audit(actor, "cancel_backfill", backfill_id)
        await self.store.set_backfill_status(backfill_id, "cancelled", at=now, reason=reason)
        driver = self._backfills.get(backfill_id)
        if driver is not None:
            driver.scope.cancel()
            await driver.done.wait()
        for run in await self.backfill_runs(backfill):
            if run.status not in FINAL_RUN_STATES:
                with contextlib.suppress(AdmissionError):  # it ended in the meantime
                    await self.cancel_run(run.id, actor=actor)
        backfill.status, backfill.ended_at, backfill.reason = "cancelled", now, reason
        return backfill

    async def _resume_backfills(self) -> None:
        """Go on with the backfills a stopped process was driving (their runs keep their
        keys, so none is started twice)."""
        for backfill in await self.store.list_backfills(status="running", limit=MAX_RUNS):
            if backfill.id not in self._backfills:
                logger.info("resuming backfill %s of %s", backfill.id, backfill.pipeline)
                self._drive_backfill(backfill)

    def _drive_backfill(self, backfill: BackfillRow) -> None:
        assert self._tg is not None
        driver = _BackfillDriver()
        self._backfills[backfill.id] = driver
        self._tg.start_soon(self._run_backfill, backfill, driver, name=f"backfill {backfill.id}")

    async def _run_backfill(self, backfill: BackfillRow, driver: _BackfillDriver) -> None:
        try:
            with driver.scope:
                await self._backfill_body(backfill)
        except Exception as exc:
            logger.exception("backfill %s failed inside Reactor", backfill.id)
            with anyio.CancelScope(shield=True):
                try:
                    await self._end_backfill(
                        backfill.id, "failed", f"internal error: {type(exc).__name__}: {exc}"
                    )
                except Exception:
                    logger.exception("recording the failure of backfill %s failed", backfill.id)
        finally:
            self._backfills.pop(backfill.id, None)
            driver.done.set()

    async def _backfill_body(self, backfill: BackfillRow) -> None:
        pipeline = self.pipelines.get(backfill.pipeline)
        if pipeline is None:
            reason = f"pipeline {backfill.pipeline!r} no longer exists"
            await self._end_backfill(backfill.id, "failed", reason)
            return
        try:
            plan = plan_backfill(
                pipeline, backfill.start, backfill.end, backfill.step, backfill.params, self.env
            )
        except BackfillError as exc:
            await self._end_backfill(backfill.id, "failed", str(exc))
            return
        # Its own limit, on top of the pipeline's max_active_runs: a slot is held from a
        # run's creation to its end, and runs are created in logical-time order.
        slots = anyio.Semaphore(backfill.concurrency)
        async with anyio.create_task_group() as tg:
            for index in range(len(plan.keys)):
                await slots.acquire()
                try:
                    run_id = await self._admit_backfill_run(pipeline, plan, index)
                except BaseException:
                    slots.release()
                    raise
                tg.start_soon(self._backfill_run_ends, run_id, slots)
        status, why = ended_status(await self.backfill_runs(backfill))
        await self._end_backfill(backfill.id, status, why)

    async def _admit_backfill_run(self, pipeline: Pipeline, plan: BackfillPlan, index: int) -> str:
        """Create (or find, when resuming) the run of one logical time and admit it."""
        event = plan.events[index]
        # Created and admitted whole or not at all: a cancel in between would leave a
        # queued run that nothing here runs.
        with anyio.CancelScope(shield=True):
            await self._ingest(event, evaluated=True)
            run = self._new_run(
                pipeline,
                plan.params[index],
                trigger=None,
                key=plan.keys[index],
                event_ids=[event.id],
            )
            admitted = await self.store.create_run(run)
            if admitted.new:
                # Never skipped nor cancelling others: a backfill's runs wait their turn.
                how = self._plan(pipeline)
                self._admit(admitted.run, how if how == "start" else "queue", [event])
        return admitted.run.id

    async def _backfill_run_ends(self, run_id: str, slots: anyio.Semaphore) -> None:
        try:
            await self._wait_backfill_run(run_id)
        finally:
            slots.release()

    async def _wait_backfill_run(self, run_id: str) -> None:
        while run_id not in self._run_done:
            found = await self.store.get_run(run_id)
            if found is None or found.status in FINAL_RUN_STATES:
                return
            # Queued or running in another process: look again in a while.
            await self.clock.sleep(1.0)
        await self.wait_run(run_id)

    async def _end_backfill(self, backfill_id: str, status: str, reason: str | None) -> None:
        current = await self.store.get_backfill(backfill_id)
        if current is None or current.status != "running":
            return  # cancelled meanwhile: that is its end
        await self.store.set_backfill_status(
            backfill_id, status, at=self.clock.now(), reason=reason
        )
        logger.info("backfill %s %s%s", backfill_id, status, f": {reason}" if reason else "")

    def hook(self, name: str) -> HookReceiver | None:
        """The receiver of ``POST /hooks/{name}``, if a loaded pipeline has that hook."""
        return self._hooks.get(name)

    def backlog(self) -> Backlog:
        """Runs queued and running here by pipeline, and events the rule engine has not
        taken yet (read by ``GET /metrics`` when scraped)."""
        running = Counter(executor.run.pipeline for executor in self._runs.values())
        return Backlog(
            queued={name: len(queue) for name, queue in self._queued.items() if queue},
            running=dict(running),
            inbox=self._rule_inbox.statistics().current_buffer_used,
        )

    def health(self) -> dict[str, Any]:
        sensors = {
            key: {"state": h.state, "message": h.message, "events": h.events}
            for key, h in self.sensor_health().items()
        }
        starting = any(s["state"] == "starting" for s in sensors.values())
        failing = any(s["state"] == "failing" for s in sensors.values())
        return {
            "status": "stopping"
            if self._stopping
            else "starting"
            if starting or not self.started.is_set()
            else "degraded"
            if failing
            else "ok",
            "pipelines": len(self.pipelines),
            "active_runs": len(self._runs),
            "queued_runs": sum(len(q) for q in self._queued.values()),
            "sensors": sensors,
        }
