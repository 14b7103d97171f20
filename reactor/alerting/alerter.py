"""The alerter: watches runs, events and sensors through the service's observer hooks,
keeps incidents by the fatigue policy, stores them, and sends what the policy says."""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from reactor.alerting.anomaly import duration_anomaly, rate_drop
from reactor.alerting.deliver import DeliveryError, send
from reactor.alerting.fatigue import Fatigue, Incident, Message, QuietHours, Route
from reactor.alerting.specs import AlertingSpec, AlertSpec
from reactor.events import Event, new_id
from reactor.specs import TRIGGER_EVENT_PREFIX
from reactor.store.records import FINAL_RUN_STATES

if TYPE_CHECKING:
    import httpx

    from reactor.service import Reactor
    from reactor.store import RunRecord, TaskRecord

__all__ = ["ATTEMPTS", "CHECK_EVERY", "Alerter", "routes_of"]

logger = logging.getLogger("reactor.alerts")

#: How often running runs, triggers and sensors are looked at (service clock).
CHECK_EVERY = 5.0
#: Tries per message, and the delay before the second (then 4x each time).
ATTEMPTS = 4
FIRST_RETRY = 1.0
#: Incidents read back at a start (open ones, and the latest closed ones for cooldowns).
LOAD_LIMIT = 10_000
CORRELATION_TIMEOUT = f"{TRIGGER_EVENT_PREFIX}correlation_timeout"
#: Stored events read back at a start for the event rates of ``anomaly`` alerts.
COUNT_LIMIT = 100_000
#: Loop turns without sleeping before the loop suspects a bug and sleeps anyway.
_MAX_SPINS = 100


def _destination_id(alert: AlertSpec) -> str:
    target = alert.webhook or alert.slack or repr(alert.email)
    digest = hashlib.sha256(target.encode()).hexdigest()[:12]
    return f"{alert.destination}:{digest}"


def routes_of(
    pipelines: Mapping[str, Any], settings_alerts: list[AlertSpec], alerting: AlertingSpec
) -> dict[str, tuple[Route, AlertSpec]]:
    """Every pipeline's alerts (its own, else ``alerts:`` of ``reactor.yaml``) as routes."""
    routes: dict[str, tuple[Route, AlertSpec]] = {}
    for name, pipeline in sorted(pipelines.items()):
        own: list[AlertSpec] = pipeline.spec.alerts
        alerts, where = (own, "alerts") if own else (settings_alerts, "reactor.yaml alerts")
        for index, alert in enumerate(alerts):
            route = Route(
                id=f"{name}#{where}[{index}]",
                pipeline=name,
                on=alert.on,
                destination=_destination_id(alert),
                group_window=(
                    alert.group_window if alert.group_window is not None else alerting.group_window
                ),
                cooldown=alert.cooldown if alert.cooldown is not None else alerting.cooldown,
            )
            routes[route.id] = (route, alert)
    return routes


@dataclass
class _Watch:
    """What the timers look at, per route: runs over the limit, stale triggers, sensors."""

    over_runs: set[str]
    stale: set[str]
    failing: dict[str, int]


class Alerter:
    """A :class:`RunObserver` and event observer of one service; :meth:`run` is its loop."""

    def __init__(self, reactor: Reactor) -> None:
        self.reactor = reactor
        self.fatigue = Fatigue(None, new_id)
        self._routes: dict[str, tuple[Route, AlertSpec]] = {}
        #: The pipelines and settings the routes were made from (a reload replaces them).
        self._seen: tuple[Any, Any] | None = None
        self._wake = anyio.Event()
        self._outbox: list[Message] = []
        self._active: dict[str, RunRecord] = {}
        self._ended: deque[str] = deque(maxlen=1000)
        self._durations: dict[str, deque[float]] = {}
        self._fired: dict[str, datetime] = {}
        self._counts: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self._first_bucket: int | None = None
        self._checked_bucket: int | None = None
        self._watch: dict[str, _Watch] = defaultdict(lambda: _Watch(set(), set(), {}))
        self._started_at: datetime | None = None
        self._running = False
        #: Observer calls that came while stored incidents were read (handled after).
        self._early: list[Callable[[], None]] = []
        #: Messages handed to their destination, and messages given up on.
        self.delivered = 0
        self.failed = 0

    @property
    def settings(self) -> AlertingSpec:
        return self.reactor.config.spec.alerting

    # Routes

    def _refresh_routes(self) -> None:
        pipelines, config = self.reactor.pipelines, self.reactor.config
        if self._seen is not None and self._seen[0] is pipelines and self._seen[1] is config:
            return
        self._seen = (pipelines, config)
        settings = self.settings
        self._routes = routes_of(self.reactor.pipelines, self.reactor.config.spec.alerts, settings)
        quiet = settings.quiet_hours
        self.fatigue.quiet = (
            QuietHours(quiet.from_, quiet.to, quiet.timezone) if quiet is not None else None
        )
        self.fatigue.set_routes(route for route, _ in self._routes.values())
        for name in {route.pipeline for route, _ in self._routes.values() if route.on == "anomaly"}:
            self._durations.setdefault(name, deque(maxlen=settings.anomaly.runs))

    def _of(self, pipeline: str, *kinds: str) -> list[Route]:
        return [
            route
            for route, _ in self._routes.values()
            if route.pipeline == pipeline and route.on in kinds
        ]

    def _post(self, messages: list[Message]) -> None:
        """Queue messages from an observer call; wake the loop to store what changed and
        send them."""
        self._outbox.extend(messages)
        self._wake.set()

    # RunObserver

    def _ready(self, call: Callable[[], None]) -> bool:
        """Whether to handle an observer call now; while stored state is read it waits."""
        if self._running:
            return True
        if self._started_at is not None:
            self._early.append(call)
        return False

    def run_changed(self, run: RunRecord) -> None:
        if not self._running and not self._ready(lambda: self.run_changed(run)):
            return
        self._refresh_routes()
        if run.status == "running":
            self._active[run.id] = run
            return
        if run.status not in FINAL_RUN_STATES or run.id in self._ended:
            return
        self._ended.append(run.id)
        self._active.pop(run.id, None)
        now = self.reactor.clock.now()
        messages: list[Message] = []
        if run.status == "failed":
            for route in self._of(run.pipeline, "failure", "recovery"):
                messages += self.fatigue.occur(route, now, run_id=run.id, detail=run.reason or "")
        elif run.status == "succeeded":
            for route in self._of(run.pipeline, "failure", "recovery"):
                messages += self.fatigue.recover(route, now, detail=f"run {run.id} succeeded")
        for route in self._of(run.pipeline, "duration"):
            watch = self._watch[route.id]
            watch.over_runs.discard(run.id)
            if not watch.over_runs:
                messages += self.fatigue.recover(
                    route, now, detail=f"no run over {route_over(self._routes, route)} now"
                )
        messages += self._duration_anomaly(run, now)
        self._post(messages)

    def task_changed(self, run: RunRecord, task: TaskRecord, note: str) -> None:
        return None

    def _duration_anomaly(self, run: RunRecord, now: datetime) -> list[Message]:
        history = self._durations.get(run.pipeline)
        if history is None or run.status != "succeeded":
            return []
        if run.started_at is None or run.ended_at is None:
            return []
        seconds = (run.ended_at - run.started_at).total_seconds()
        anomaly = self.settings.anomaly
        why = duration_anomaly(
            list(history), seconds, min_runs=anomaly.runs, threshold=anomaly.threshold
        )
        history.append(seconds)
        if why is None:
            return []
        messages: list[Message] = []
        for route in self._of(run.pipeline, "anomaly"):
            messages += self.fatigue.occur(
                route, now, subject="duration", run_id=run.id, detail=f"run {run.id} {why}"
            )
        return messages

    # EventObserver

    def event_decided(self, event: Event, outcome: list[dict[str, Any]]) -> None:
        if not self._running and not self._ready(lambda: self.event_decided(event, outcome)):
            return
        self._refresh_routes()
        now = self.reactor.clock.now()
        bucket = self._bucket(now)
        messages: list[Message] = []
        for record in outcome:
            trigger = record.get("trigger")
            if not isinstance(trigger, str):
                continue
            self._counts[trigger][bucket] += 1
            if record.get("fired"):
                self._fired[trigger] = now
                pipeline, _, trigger_id = trigger.partition("/")
                for route in self._of(pipeline, "stale"):
                    if trigger_id in self._watch[route.id].stale:
                        self._watch[route.id].stale.discard(trigger_id)
                        messages += self.fatigue.recover(
                            route, now, subject=trigger_id, detail=f"fired at {now.isoformat()}"
                        )
        if event.type == CORRELATION_TIMEOUT and isinstance(event.data, dict):
            pipeline = str(event.data.get("pipeline", ""))
            trigger_id = str(event.data.get("trigger", "")).partition("/")[2]
            missing = ", ".join(map(str, event.data.get("missing", [])))
            detail = f"key {event.data.get('key')!r} waited in vain for {missing}"
            for route in self._of(pipeline, "correlation_timeout"):
                messages += self.fatigue.occur(route, now, subject=trigger_id, detail=detail)
        self._post(messages)

    # Timers

    def _bucket(self, now: datetime) -> int:
        return int(now.timestamp() // self.settings.anomaly.rate_window)

    def check(self, now: datetime) -> list[Message]:
        """Runs running too long, triggers gone quiet, failing sensors, event rates."""
        messages: list[Message] = []
        health = self.reactor.sensor_health()
        assert self._started_at is not None
        for route, alert in self._routes.values():
            watch = self._watch[route.id]
            if route.on == "duration":
                assert alert.over is not None
                limit = timedelta(seconds=alert.over)
                for run in list(self._active.values()):
                    if run.pipeline != route.pipeline or run.id in watch.over_runs:
                        continue
                    if run.started_at is not None and now - run.started_at > limit:
                        watch.over_runs.add(run.id)
                        messages += self.fatigue.occur(
                            route,
                            now,
                            run_id=run.id,
                            detail=f"run {run.id} running since {run.started_at.isoformat()}",
                        )
            elif route.on == "stale":
                assert alert.over is not None
                pipeline = self.reactor.pipelines.get(route.pipeline)
                for trigger in pipeline.triggers if pipeline is not None else ():
                    last = self._fired.get(trigger.key, self._started_at)
                    if trigger.id in watch.stale:
                        continue
                    if (now - last).total_seconds() > alert.over:
                        watch.stale.add(trigger.id)
                        messages += self.fatigue.occur(
                            route,
                            now,
                            subject=trigger.id,
                            detail=f"last fired {last.isoformat()}"
                            if trigger.key in self._fired
                            else f"not fired since the service started at {last.isoformat()}",
                        )
            elif route.on == "sensor_unhealthy":
                for key, state in health.items():
                    pipeline_name, _, trigger_id = key.partition("/")
                    if pipeline_name != route.pipeline:
                        continue
                    if state.state == "failing":
                        restarts = watch.failing.get(trigger_id)
                        if restarts is None or state.restarts > restarts:
                            watch.failing[trigger_id] = state.restarts
                            messages += self.fatigue.occur(
                                route, now, subject=trigger_id, detail=state.message
                            )
                    elif state.state == "watching" and trigger_id in watch.failing:
                        del watch.failing[trigger_id]
                        messages += self.fatigue.recover(
                            route, now, subject=trigger_id, detail="watching again"
                        )
        messages += self._rates(now)
        return messages

    def _rates(self, now: datetime) -> list[Message]:
        """At the end of each window, each trigger's count against its earlier windows."""
        bucket = self._bucket(now)
        if self._first_bucket is None:
            self._first_bucket = self._checked_bucket = bucket
        assert self._checked_bucket is not None
        if bucket <= self._checked_bucket:
            return []
        self._checked_bucket = bucket
        done = bucket - 1
        anomaly = self.settings.anomaly
        # Windows before the first whole one after the start are not known.
        earliest = max(self._first_bucket + 1, done - anomaly.rate_windows)
        messages: list[Message] = []
        for route, _ in self._routes.values():
            if route.on != "anomaly":
                continue
            pipeline = self.reactor.pipelines.get(route.pipeline)
            for trigger in pipeline.triggers if pipeline is not None else ():
                counts = self._counts.get(trigger.key, {})
                history = [counts.get(b, 0) for b in range(earliest, done)]
                why = rate_drop(
                    history,
                    counts.get(done, 0),
                    min_windows=max(anomaly.rate_windows // 2, 4),
                    threshold=anomaly.threshold,
                )
                if why is not None:
                    messages += self.fatigue.occur(
                        route, now, subject=f"{trigger.id}.rate", detail=why
                    )
        for counts in self._counts.values():
            for old in [b for b in counts if b < done - anomaly.rate_windows]:
                del counts[old]
        return messages

    # The loop

    async def _load(self) -> None:
        stored = await self.reactor.store.incidents(include_closed=True, limit=LOAD_LIMIT)
        self.fatigue.load(Incident.from_json(data) for data in stored)
        for name, history in self._durations.items():
            runs = await self.reactor.store.list_runs(
                pipeline=name, limit=history.maxlen or 20, before=None
            )
            for run in reversed(runs):
                if run.status == "succeeded" and run.started_at and run.ended_at:
                    history.append((run.ended_at - run.started_at).total_seconds())
        for run in await self.reactor.store.runs_with_status("running"):
            self._active[run.id] = run
        await self._load_counts()

    async def _load_counts(self) -> None:
        """Event counts per trigger and window from the stored events' outcomes, for the
        triggers an ``anomaly`` alert watches (at most :data:`COUNT_LIMIT` events)."""
        watched = {
            trigger.key
            for route, _ in self._routes.values()
            if route.on == "anomaly" and (pipeline := self.reactor.pipelines.get(route.pipeline))
            for trigger in pipeline.triggers
        }
        if not watched:
            return
        anomaly = self.settings.anomaly
        now = self.reactor.clock.now()
        since = now - timedelta(seconds=anomaly.rate_window * (anomaly.rate_windows + 1))
        after: tuple[datetime, int] | None = None
        read = 0
        while read < COUNT_LIMIT:
            page = await self.reactor.store.events_received(since, after=after, limit=1000)
            for stored in page:
                bucket = self._bucket(stored.received_at)
                for record in stored.outcome or ():
                    trigger = record.get("trigger")
                    if trigger in watched:
                        self._counts[trigger][bucket] += 1
            read += len(page)
            if len(page) < 1000:
                break
            after = (page[-1].received_at, page[-1].seq)
        else:
            logger.warning("alerts: event rates read from the last %d events only", read)
            return
        # The windows since ``since`` are known: the first whole one counts.
        self._first_bucket = self._bucket(since)
        # The last whole window is looked at by the first check.
        self._checked_bucket = self._bucket(now) - 1

    def wanted(self) -> bool:
        self._refresh_routes()
        return bool(self._routes)

    async def run(self) -> None:
        """Until cancelled: check, tick the policy, store incidents, send messages."""
        while not self.wanted():
            # No alerts configured: look again after a reload (not on the service clock,
            # which tests drive by hand).
            with anyio.move_on_after(1.0):
                await self._wake.wait()
            self._wake = anyio.Event()
        import httpx  # only where alerts are configured (``import reactor`` stays light)

        clock = self.reactor.clock
        self._started_at = clock.now()
        await self._load()
        self._running = True
        early, self._early = self._early, []
        for call in early:
            call()
        async with (
            httpx.AsyncClient(timeout=10.0) as http,
            anyio.create_task_group() as tg,
        ):
            spins = 0
            while True:
                self._refresh_routes()
                now = clock.now()
                self._outbox += self.check(now) + self.fatigue.tick(now)
                await self._flush(tg, http)
                # The time may have moved while storing and sending: what fell due since
                # is ticked at once (a fake clock is moved by hand, and only once).
                now = clock.now()
                due = self.fatigue.next_due(now)
                wake_at = now + timedelta(seconds=CHECK_EVERY)
                if due is not None and due <= now and spins < _MAX_SPINS:
                    spins += 1
                    await anyio.lowlevel.checkpoint()
                else:
                    if spins == _MAX_SPINS:
                        logger.error("alerts: something stays due at %s; checking slower", due)
                        due = None
                    spins = 0
                    await self._sleep_until(min(due, wake_at) if due is not None else wake_at)

    async def _sleep_until(self, deadline: datetime) -> None:
        """Until ``deadline`` on the service clock, or until an observer has news."""
        wake = self._wake
        if wake.is_set():
            self._wake = anyio.Event()
            return
        async with anyio.create_task_group() as tg:

            async def sleep() -> None:
                # The time left is taken when the sleep begins (a fake clock may have
                # moved since the deadline was set).
                clock = self.reactor.clock
                await clock.sleep((deadline - clock.now()).total_seconds())
                wake.set()

            tg.start_soon(sleep)
            await wake.wait()
            tg.cancel_scope.cancel()
        self._wake = anyio.Event()

    async def _flush(self, tg: TaskGroup, http: httpx.AsyncClient) -> None:
        """Store what changed, then send: a restart never sends a message twice."""
        changed = self.fatigue.take_changed()
        outbox, self._outbox = self._outbox, []
        try:
            await self.reactor.store.save_incidents([i.to_json() for i in changed])
        except Exception:
            logger.exception("storing %d incidents failed; sending anyway", len(changed))
        for message in outbox:
            alert = self._alert_for(message)
            if alert is not None:
                tg.start_soon(self._deliver, message, alert, http)

    def _alert_for(self, message: Message) -> AlertSpec | None:
        if message.route is not None and message.route in self._routes:
            return self._routes[message.route][1]
        for route, alert in self._routes.values():
            if route.destination == message.destination:
                return alert
        logger.warning("no alert sends to %s any more; message dropped", message.destination)
        return None

    async def _deliver(self, message: Message, alert: AlertSpec, http: httpx.AsyncClient) -> None:
        settings = self.settings
        delay = FIRST_RETRY
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await send(
                    message,
                    alert,
                    smtp=settings.smtp,
                    base_url=settings.base_url,
                    env=self.reactor.env,
                    http=http,
                )
            except DeliveryError as exc:
                problem = str(exc)
            except Exception as exc:
                logger.exception("sending a %s alert failed", alert.destination)
                problem = f"{type(exc).__name__}: {exc}"
            else:
                self.delivered += 1
                logger.info("alert sent (%s, %s)", message.kind, alert.destination)
                return
            if attempt == ATTEMPTS:
                break
            logger.warning(
                "sending a %s alert failed (try %d of %d), again in %gs: %s",
                alert.destination,
                attempt,
                ATTEMPTS,
                delay,
                problem,
            )
            await self.reactor.clock.sleep(delay)
            delay *= 4
        self.failed += 1
        logger.error("gave up sending a %s alert: %s", alert.destination, problem)


def route_over(routes: Mapping[str, tuple[Route, AlertSpec]], route: Route) -> str:
    from reactor.durations import format_duration

    over = routes[route.id][1].over
    return format_duration(over) if over is not None else "the limit"
