"""Runs one pipeline run: tasks start as soon as their needs are done, every change persisted."""

from __future__ import annotations

import json
import logging
import math
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

import anyio

from reactor.actions import ChildRuns, LogStream, TaskRequest
from reactor.admission import LocalPools, Pools, TaskSlots
from reactor.assets import AssetUse, asset_event
from reactor.checks import CHECK_TASK_KEY, check_events
from reactor.clock import Clock, run_with_timeout
from reactor.control import ForEachTaskSpec
from reactor.dag import FINAL_TASK_STATES, Walk, combined_status, run_status
from reactor.durations import format_duration
from reactor.errors import ActionError, ExpressionError, exception_names
from reactor.events import Event, logical_scope
from reactor.failpoints import hit
from reactor.lineage import TaskLineage
from reactor.logs import EVENT_ID, RUN_ID, TASK_ID
from reactor.pipelines import Pipeline, Task
from reactor.retry import Failure, RetryPolicy
from reactor.specs import TASK_EVENT_PREFIX, run_event_source
from reactor.store import AttemptRecord, LogLine, RunRecord, Store, TaskEvent, TaskRecord
from reactor.writes import TaskWriter

__all__ = [
    "DEFAULT_MAX_OUTPUT",
    "LineageSink",
    "RunExecutor",
    "RunObserver",
    "TaskEventSink",
    "task_event",
]

logger = logging.getLogger("reactor.executor")

_LOG_FLUSH_SECONDS = 0.2
#: A task output's largest JSON size unless ``limits.max_output`` says otherwise.
DEFAULT_MAX_OUTPUT = 1024 * 1024
#: Read once: a run's attempts record where they ran, and the name does not change.
_HOST = socket.gethostname()


def _take_over_crashed(record: TaskRecord, retries: int | None, now: datetime) -> None:
    """A record left ``running`` by a process that died: that attempt counts; it runs again
    (``pending``) while ``retries`` allow (``None``: always), else it has ``failed``."""
    record.error = "crashed: the process running it stopped"
    if retries is None or record.attempts <= retries:
        record.status = "pending"
    else:
        record.status = "failed"
        record.ended_at = now


def _loop_error(iterations: Sequence[TaskRecord]) -> str:
    """Why a loop failed: how many iterations did not succeed, and the first one's error."""
    bad = [r for r in iterations if r.status != "succeeded"]
    first = bad[0] if bad else None
    detail = f" (first: {first.task_id} {first.status}: {first.error})" if first else ""
    return f"{len(bad)} of {len(iterations)} iterations did not succeed{detail}"


class TaskEventSink(Protocol):
    """Where task state changes go as events (``reactor.task.<status>``)."""

    def listens(self, event: Event) -> bool:
        """Whether any trigger could match ``event`` (if not, it is stored as evaluated)."""
        ...

    async def task_events_stored(self, events: list[Event]) -> None:
        """``events`` are durable and new: evaluate them."""
        ...


def task_event(run: RunRecord, record: TaskRecord, at: datetime) -> Event:
    """``reactor.task.<status>``: one attempt of a task ended; its id names the attempt."""
    return Event(
        type=f"{TASK_EVENT_PREFIX}{record.status}",
        source=run_event_source(run.pipeline),
        id=f"{run.id}/{record.task_id}/{record.attempts}",
        time=record.ended_at or at,
        subject=f"{run.pipeline}/{record.task_id}",
        data={
            "pipeline": run.pipeline,
            "run_id": run.id,
            "task_id": record.task_id,
            "status": record.status,
            "attempts": record.attempts,
            "output": record.output,
            "error": record.error,
        },
    )


class LineageSink(Protocol):
    """Told when each task attempt starts and ends, with its assets (OpenLineage); must
    not wait."""

    def attempt_started(
        self, run: RunRecord, task_id: str, attempt: int, lineage: TaskLineage, at: datetime
    ) -> None: ...

    def attempt_ended(
        self,
        run: RunRecord,
        task_id: str,
        attempt: int,
        status: str,
        lineage: TaskLineage,
        at: datetime,
        error: str | None,
    ) -> None: ...


class RunObserver(Protocol):
    """Told about every run and task state change (the CLI prints them; the UI streams them)."""

    def run_changed(self, run: RunRecord) -> None: ...

    def task_changed(self, run: RunRecord, task: TaskRecord, note: str) -> None: ...


@dataclass
class _Logs:
    run_id: str
    clock: Clock
    lines: list[LogLine] = field(default_factory=list)

    def sink(self, task_id: str, attempt: int) -> Any:
        def log(stream: LogStream, line: str) -> None:
            self.lines.append(
                LogLine(self.run_id, task_id, attempt, stream, self.clock.now(), line)
            )

        return log

    def take(self) -> list[LogLine]:
        lines, self.lines = self.lines, []
        return lines


class RunExecutor:
    """Executes one run to a final state. Cancel its scope to cancel the run.

    Task state changes are group-committed through a :class:`TaskWriter`, and all
    of them are durable before the run's own end is recorded.
    """

    def __init__(
        self,
        run: RunRecord,
        pipeline: Pipeline,
        *,
        events: Sequence[Event],
        store: Store,
        clock: Clock,
        task_slots: TaskSlots,
        owner: str,
        env: Mapping[str, str],
        observers: Sequence[RunObserver] = (),
        resume: Sequence[TaskRecord] | None = None,
        task_events: TaskEventSink | None = None,
        connection: Callable[[str], str] | None = None,
        pools: Pools | None = None,
        max_output: int = DEFAULT_MAX_OUTPUT,
        children: ChildRuns | None = None,
        retry_base: Mapping[str, int] | None = None,
        lineage: LineageSink | None = None,
    ) -> None:
        self.run = run
        #: Told of every attempt's assets (OpenLineage); and the assets of open attempts.
        self._lineage_sink = lineage
        self._lineage: dict[tuple[str, int], TaskLineage] = {}
        #: ``reactor.asset.updated`` of a task that succeeded, sent with its new state.
        self._asset_events: dict[str, list[Event]] = {}
        #: Attempts made before a repair, per task: they do not use up its retries.
        self._retry_base = dict(retry_base or {})
        self.pipeline = pipeline
        self.events = list(events)
        self.store = store
        self.clock = clock
        self.task_slots = task_slots
        self.owner = owner
        self.env = env
        self.observers = observers
        self.connection = connection
        self.pools = pools or LocalPools({})
        self.max_output = max_output
        self.children = children
        self.records = {t: TaskRecord(run.id, t) for t in pipeline.order}
        #: Iterations of for_each tasks (``loop[3]``) found in the store when resuming.
        self._stored_iterations: dict[str, TaskRecord] = {}
        self._timed_out = False
        #: The iteration records of each for_each task that has started.
        self._loops: dict[str, list[TaskRecord]] = {}
        #: Tasks running now, to cancel one alone; and why those cancelled were.
        self._task_scopes: dict[str, anyio.CancelScope] = {}
        self._task_cancelled: dict[str, str] = {}
        self.cancel_scope = anyio.CancelScope()
        self._logs = _Logs(run.id, clock)
        self._cancel_reason: str | None = None
        self._open_attempts: dict[str, AttemptRecord] = {}
        self._resume = resume
        self._host = _HOST
        # What templates see as ``tasks``: filled in as tasks finish.
        self._finished: dict[str, dict[str, Any]] = {}
        self._task_events = task_events
        self._writes = TaskWriter(
            store, task_events.task_events_stored if task_events is not None else None
        )
        self._event_scope = self.events[0].scope() if self.events else None
        self._events_scope = [e.scope() for e in self.events]
        first = self.events[0] if self.events else None
        self._logical = logical_scope(first, run.created_at)

    # Notifications

    def _task_changed(self, record: TaskRecord, note: str = "") -> None:
        if record.status in FINAL_TASK_STATES and record.task_id in self.records:
            self._finished[record.task_id] = {"output": record.output, "status": record.status}
        for observer in self.observers:
            observer.task_changed(self.run, record, note)

    def _run_changed(self) -> None:
        for observer in self.observers:
            observer.run_changed(self.run)

    def cancel(self, reason: str) -> None:
        """Cancel the run; the first reason given is the one recorded."""
        if self._cancel_reason is None:
            self._cancel_reason = reason
        self.cancel_scope.cancel()

    # Writes

    def _write(
        self, tasks: Sequence[TaskRecord] = (), attempts: Sequence[AttemptRecord] = ()
    ) -> None:
        """Record task and attempt states as they are now, with the log lines so far."""
        self._writes.submit(tasks, attempts, self._logs.take(), self._events_of(tasks))

    def _events_of(self, tasks: Sequence[TaskRecord]) -> list[TaskEvent]:
        """The events of the tasks among ``tasks`` that just ended."""
        sink = self._task_events
        if sink is None:
            return []
        now = self.clock.now()
        events: list[Event] = []
        for record in tasks:
            events.extend(self._asset_events.pop(record.task_id, ()))
            if record.status not in FINAL_TASK_STATES or record.task_id not in self.records:
                continue
            events.append(task_event(self.run, record, now))
            if self.pipeline.tasks[record.task_id].spec.type_key == CHECK_TASK_KEY:
                events.extend(check_events(self.run, record, now))
        return [TaskEvent(e, sink.listens(e), now) for e in events]

    # The run

    def _scope(self) -> dict[str, Any]:
        return {
            "params": self.run.params,
            "tasks": self._finished,
            "run": {"id": self.run.id, "pipeline": self.run.pipeline, "trigger": self.run.trigger},
            "event": self._event_scope,
            "events": self._events_scope,
            "env": self.env,
            "logical": self._logical,
        }

    def _restore(self, stored: Sequence[TaskRecord], now: datetime) -> list[TaskRecord]:
        """Take over task states of a run whose process died; returns what changed.

        A task cut off while running counts that attempt (it is ``crashed``) and
        runs again if its retries allow; finished tasks are never run again. A loop
        cut off goes on with the iterations that had not finished.
        """
        changed = []
        for record in stored:
            if record.task_id not in self.records:
                loop, _, _ = record.task_id.partition("[")
                if loop in self.records and record.task_id.endswith("]"):
                    self._stored_iterations[record.task_id] = record
                continue
            self.records[record.task_id] = record
            if record.status in FINAL_TASK_STATES:
                self._finished[record.task_id] = {"output": record.output, "status": record.status}
            if record.status != "running":
                continue
            task = self.pipeline.tasks[record.task_id]
            # A loop goes on with its unfinished iterations whatever its own attempts.
            base = self._retry_base.get(record.task_id, 0)
            _take_over_crashed(record, None if task.inner else task.retries.max + base, now)
            changed.append(record)
        return changed

    async def execute(self) -> RunRecord:
        # The run's own task: what it and its tasks log names the run (and its event).
        RUN_ID.set(self.run.id)
        EVENT_ID.set(self.run.event_ids[0] if self.run.event_ids else None)
        now = self.clock.now()
        self.run.status = "running"
        self.run.started_at = self.run.started_at or now
        await self.store.set_run_status(self.run.id, "running", at=now, owner=self.owner)
        # The tasks' first rows ride the group commit with the first transitions; a run
        # recovered without them simply has every task pending.
        if self._resume is None:
            self._writes.submit(list(self.records.values()))
        elif changed := self._restore(self._resume, now):
            self._writes.submit(changed)
        self._run_changed()
        internal: str | None = None
        async with anyio.create_task_group() as writer:
            writer.start_soon(self._writes.run)
            with self.cancel_scope:
                try:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self._flush_logs_periodically)
                        try:
                            await run_with_timeout(self.clock, self.pipeline.timeout, self._drive)
                        except TimeoutError:
                            self._timed_out = True
                        tg.cancel_scope.cancel()
                except Exception as exc:
                    # A bug or a store outage: the run still ends, failed, and says why.
                    logger.exception("run %s failed inside Reactor", self.run.id)
                    internal = f"internal error: {type(exc).__name__}: {exc}"
            with anyio.CancelScope(shield=True):
                await self._finish(internal)
            writer.cancel_scope.cancel()
        return self.run

    async def _drive(self) -> None:
        done_send, done_receive = anyio.create_memory_object_stream[str](math.inf)
        walk = Walk(
            self.pipeline.needs,
            {t.id: t.spec.run_if for t in self.pipeline.tasks.values()},
            {t: r.status for t, r in self.records.items()},
            {t: r.output for t, r in self.records.items()},
        )
        running = 0
        steps = walk.start()
        async with anyio.create_task_group() as tg:
            while True:
                for task_id in steps.run:
                    # Its record stays pending until an attempt starts (it may wait for a pool).
                    running += 1
                    tg.start_soon(self._run_task, self.pipeline.tasks[task_id], done_send)
                self._mark_not_run(steps.skipped, "skipped")
                self._mark_not_run(steps.upstream_failed, "upstream_failed")
                if not running:
                    break
                finished = await done_receive.receive()
                running -= 1
                record = self.records[finished]
                steps = walk.finished(finished, record.status, record.output)

    def _mark_not_run(self, task_ids: list[str], status: str) -> None:
        now = self.clock.now()
        for task_id in task_ids:
            record = self.records[task_id]
            record.status = status
            record.ended_at = now
            self._write([record])
            self._task_changed(record)

    async def _run_task(self, task: Task, done: Any) -> None:
        record = self.records[task.id]
        scope = self._task_scopes[task.id] = anyio.CancelScope()
        try:
            with scope:
                if task.inner is not None:
                    await self._loop(task, task.inner, record)
                else:
                    await self._attempts(task, record)
            if scope.cancelled_caught:
                why = self._task_cancelled[task.id]
                unfinished = [record, *self._loops.get(task.id, ())]
                self._write(*self._cut_off(unfinished, "cancelled", why))
                record.error = why
                self._task_changed(record, why)
        finally:
            del self._task_scopes[task.id]
            done.send_nowait(task.id)

    def cancel_task(self, task_id: str, reason: str) -> bool:
        """Cancel one task that is running or waiting (for a pool, a slot or its next
        attempt); the run goes on, its dependants decided as after any failure.
        ``False`` if the task is not running now."""
        scope = self._task_scopes.get(task_id)
        if scope is None:
            return False
        self._task_cancelled.setdefault(task_id, reason)
        scope.cancel()
        return True

    # Attempts

    @asynccontextmanager
    async def _pool(self, task: Task, record: TaskRecord) -> AsyncIterator[None]:
        """A slot of the task's pool, if it names one; waiting is logged."""
        name = task.spec.pool
        if name is None:
            yield
            return
        if self.pools.full(name):
            in_use, size = self.pools.usage(name)
            note = f"waiting for pool {name} ({in_use} of {size} slots in use)"
            self._log(task.id, record.attempts + 1, note)
            self._task_changed(record, note)
        async with self.pools.slot(name, f"{self.run.id}/{record.task_id}"):
            yield

    def _log(self, task_id: str, attempt: int, line: str) -> None:
        self._logs.lines.append(
            LogLine(self.run.id, task_id, attempt, "system", self.clock.now(), line)
        )

    async def _attempts(
        self, task: Task, record: TaskRecord, extra: Mapping[str, Any] | None = None
    ) -> None:
        """Attempts of one task (or one iteration, with ``extra`` in its scope) to its end."""
        policy = task.retry
        TASK_ID.set(record.task_id)  # each task (each loop worker) runs in a task of its own
        while True:
            async with self._pool(task, record), self.task_slots.slot():
                attempt = self._start_attempt(record)
                hit("task.after_start")
                output, failure = await self._attempt(task, attempt, extra)
                hit("task.after_action")
                await self._attempt_assets(attempt, failure)
                del self._open_attempts[record.task_id]
            outcome = "succeeded" if failure is None else failure.outcome
            now = self._end_attempt(attempt, outcome, failure.error if failure else None)
            if failure is None:
                record.status = "succeeded"
                record.output = output
                record.ended_at = now
                self._write([record], [attempt])
                self._task_changed(record)
                return
            # Attempts before a repair are history: the repair has its own retries.
            tries = record.attempts - self._retry_base.get(record.task_id, 0)
            again, why = self._retry(policy, failure, tries, extra)
            if again:
                delay = policy.delay(tries)
                record.error = failure.error
                self._log(
                    record.task_id,
                    record.attempts,
                    f"attempt {record.attempts} {outcome}: {failure.error};"
                    f" retrying in {format_duration(delay)}",
                )
                self._write([record], [attempt])
                self._task_changed(record, f"{outcome}: {failure.error}; retrying")
                await self.clock.sleep(delay)
                continue
            if why:
                self._log(record.task_id, record.attempts, why)
            record.status = outcome
            record.error = failure.error
            record.output = failure.output
            record.ended_at = now
            self._write([record], [attempt])
            self._task_changed(record, failure.error)
            return

    def _start_attempt(self, record: TaskRecord) -> AttemptRecord:
        """A new attempt of ``record``'s task, recorded as running by this process."""
        record.attempts += 1
        now = self.clock.now()
        record.status = "running"
        record.started_at = record.started_at or now
        record.error = None
        attempt = AttemptRecord(
            self.run.id,
            record.task_id,
            record.attempts,
            "running",
            self.owner,
            now,
            now,
            host=self._host,
        )
        self._open_attempts[record.task_id] = attempt
        self._write([record], [attempt])
        self._task_changed(record, f"attempt {record.attempts}")
        return attempt

    def _end_attempt(self, attempt: AttemptRecord, status: str, error: str | None) -> datetime:
        now = self.clock.now()
        attempt.status = status
        attempt.ended_at = now
        attempt.heartbeat_at = now
        attempt.error = error
        return now

    def _retry(
        self, policy: RetryPolicy, failure: Failure, attempt: int, extra: Mapping[str, Any] | None
    ) -> tuple[bool, str]:
        """Whether to try again, and why not when retries were left."""
        if not policy.left(failure, attempt):
            return False, ""
        try:
            if policy.matches(failure, attempt, {**self._scope(), **(extra or {})}):
                return True, ""
        except ExpressionError as exc:
            return False, f"not retried: retry_on failed: {exc}"
        return False, "not retried: retry_on does not match this failure"

    async def _attempt(
        self, task: Task, attempt: AttemptRecord, extra: Mapping[str, Any] | None
    ) -> tuple[Any, Failure | None]:
        async def report_process(pid: int) -> None:
            attempt.pid = pid
            self._write(attempts=[attempt])

        scope = self._scope()
        if extra:
            scope.update(extra)
        try:
            lineage = TaskLineage(*task.assets.render(scope))
        except ValueError as exc:
            return None, Failure("failed", f"cannot render {exc}", permanent=True)
        self._lineage[(attempt.task_id, attempt.attempt)] = lineage
        if self._lineage_sink is not None:
            self._lineage_sink.attempt_started(
                self.run, attempt.task_id, attempt.attempt, lineage, self.clock.now()
            )
        request = TaskRequest(
            run_id=self.run.id,
            pipeline=self.pipeline.name,
            task_id=attempt.task_id,
            attempt=attempt.attempt,
            scope=scope,
            base_dir=self.pipeline.base_dir,
            log=self._logs.sink(attempt.task_id, attempt.attempt),
            report_process=report_process,
            connection=self.connection,
            children=self.children,
        )
        try:
            output = await run_with_timeout(
                self.clock,
                task.spec.timeout,
                lambda: lineage.run(lambda: task.action.execute(request)),
            )
        except TimeoutError:
            error = f"timed out after {format_duration(task.spec.timeout or 0)}"
            return None, Failure("timed_out", error)
        except ActionError as exc:
            failure = Failure("failed", str(exc), exc.exit_code, exc.exceptions)
            return None, replace(failure, output=exc.output, permanent=exc.permanent)
        except anyio.get_cancelled_exc_class():
            self._attempt_ended(attempt, "cancelled", None)
            raise
        except Exception as exc:
            logger.exception("task %s of run %s crashed", attempt.task_id, self.run.id)
            error = f"{type(exc).__name__}: {exc}"
            return None, Failure("failed", error, exceptions=exception_names(exc))
        if output is not None and (too_big := self._output_too_big(output)):
            return None, Failure("failed", too_big, permanent=True)
        return output, None

    def _attempt_ended(
        self, attempt: AttemptRecord, status: str, error: str | None
    ) -> TaskLineage | None:
        """The assets of an attempt that ended (``None`` if it never got to run); the
        lineage sink is told."""
        lineage = self._lineage.pop((attempt.task_id, attempt.attempt), None)
        if lineage is not None and self._lineage_sink is not None:
            self._lineage_sink.attempt_ended(
                self.run, attempt.task_id, attempt.attempt, status, lineage, self.clock.now(), error
            )
        return lineage

    async def _attempt_assets(self, attempt: AttemptRecord, failure: Failure | None) -> None:
        """Record what a successful attempt read and wrote, and queue an asset event per
        write (sent with the task's new state); a failed attempt's assets are not."""
        status = "succeeded" if failure is None else failure.outcome
        lineage = self._attempt_ended(attempt, status, failure.error if failure else None)
        if lineage is None or failure is not None:
            return
        now = self.clock.now()
        run, task_id, number = self.run, attempt.task_id, attempt.attempt
        uses = [
            *(
                AssetUse(a, "read", run.id, task_id, number, run.pipeline, now)
                for a in lineage.inputs
            ),
            *(
                AssetUse(a, "write", run.id, task_id, number, run.pipeline, now)
                for a in lineage.outputs
            ),
        ]
        if not uses:
            return
        try:
            await self.store.record_assets(uses)
        except Exception:
            # Lineage is a record of the work, not the work: the task still succeeded.
            logger.exception("recording the assets of task %s failed", attempt.task_id)
            return
        if self._task_events is not None and lineage.outputs:
            self._asset_events[attempt.task_id] = [
                asset_event(
                    a,
                    pipeline=self.run.pipeline,
                    run_id=self.run.id,
                    task_id=attempt.task_id,
                    attempt=attempt.attempt,
                    at=now,
                )
                for a in lineage.outputs
            ]

    def _output_too_big(self, output: Any) -> str | None:
        if isinstance(output, bool | int | float):
            return None
        size = len(json.dumps(output, default=str).encode())
        if size <= self.max_output:
            return None
        return (
            f"output is {size:,} bytes, over the limit of {self.max_output:,}"
            " (limits.max_output in reactor.yaml): write large results to a file or table"
            " and pass its name"
        )

    # Loops

    async def _loop(self, task: Task, inner: Task, record: TaskRecord) -> None:
        """A ``for_each:`` task: its items, then one iteration (own state, attempts and
        logs) per item, ``concurrency`` at a time; its output is their outputs in order."""
        spec = task.spec
        assert isinstance(spec, ForEachTaskSpec)
        TASK_ID.set(record.task_id)
        attempt = self._start_attempt(record)
        iterations: list[TaskRecord] = []
        status, error = "failed", None
        failure: Failure | None = None
        try:
            items, failure = await self._attempt(task, attempt, None)
            if failure is not None:
                status, error = failure.outcome, failure.error
            else:
                iterations = self._iterations(task.id, len(items), inner.retries.max)
                self._loops[task.id] = iterations
                self._log(task.id, record.attempts, f"{len(items)} items")
                await run_with_timeout(
                    self.clock,
                    spec.timeout,
                    lambda: self._run_iterations(inner, items, iterations, spec.concurrency),
                )
                status = combined_status(spec.succeed_if, [r.status for r in iterations])
                error = None if status == "succeeded" else _loop_error(iterations)
        except TimeoutError:
            status = "timed_out"
            error = f"timed out after {format_duration(spec.timeout or 0)}"
            self._write(*self._cut_off(iterations, "timed_out", error))
        del self._open_attempts[task.id]
        # The loop's own inputs:/outputs: count once, when all its iterations are done.
        ended = None if status == "succeeded" else Failure(status, error or status)
        await self._attempt_assets(attempt, ended)
        now = self._end_attempt(attempt, status, error)
        record.status = status
        record.error = error
        record.ended_at = now
        if failure is None and status != "timed_out":
            record.output = [r.output for r in iterations]
            if too_big := self._output_too_big(record.output):
                record.status, record.error, record.output = "failed", too_big, None
        self._write([record], [attempt])
        self._task_changed(record, error or "")

    def _iterations(self, loop_id: str, count: int, retries: int) -> list[TaskRecord]:
        """One record per item: those of an earlier attempt of the run are taken over."""
        records: list[TaskRecord] = []
        new: list[TaskRecord] = []
        for index in range(count):
            task_id = f"{loop_id}[{index}]"
            record = self._stored_iterations.pop(task_id, None)
            if record is None:
                record = TaskRecord(self.run.id, task_id)
                new.append(record)
            elif record.status == "running":
                base = self._retry_base.get(task_id, 0)
                _take_over_crashed(record, retries + base, self.clock.now())
                new.append(record)
            elif record.status not in FINAL_TASK_STATES:
                record.status = "pending"
            records.append(record)
        if new:
            self._write(new)
        return records

    async def _run_iterations(
        self, inner: Task, items: list[Any], records: list[TaskRecord], concurrency: int
    ) -> None:
        todo = iter([i for i, r in enumerate(records) if r.status not in FINAL_TASK_STATES])

        async def worker() -> None:
            for index in todo:
                await self._attempts(
                    inner, records[index], {"item": items[index], "item_index": index}
                )

        async with anyio.create_task_group() as tg:
            for _ in range(min(concurrency, len(records))):
                tg.start_soon(worker)

    def _unfinished_iterations(self) -> list[TaskRecord]:
        return [
            r
            for records in self._loops.values()
            for r in records
            if r.status not in FINAL_TASK_STATES
        ]

    def _cut_off(
        self, records: Iterable[TaskRecord], status: str, error: str, *, pending: str = "cancelled"
    ) -> tuple[list[TaskRecord], list[AttemptRecord]]:
        """End the unfinished ``records`` now: those with an open attempt (and the attempt)
        end ``status`` with ``error``; those that had not started end ``pending``."""
        now = self.clock.now()
        changed: list[TaskRecord] = []
        attempts: list[AttemptRecord] = []
        for record in records:
            if record.status in FINAL_TASK_STATES:
                continue
            attempt = self._open_attempts.pop(record.task_id, None)
            if attempt is not None:
                self._end_attempt(attempt, status, error)
                attempts.append(attempt)
                record.status, record.error = status, error
            else:
                record.status = pending
                if pending != "cancelled":
                    record.error = error
            record.ended_at = now
            changed.append(record)
        return changed, attempts

    async def _flush_logs_periodically(self) -> None:
        while True:
            await anyio.sleep(_LOG_FLUSH_SECONDS)
            if self._logs.lines:
                self._write()

    async def _finish(self, internal: str | None = None) -> None:
        try:
            await self._writes.drain()
        except Exception as exc:
            logger.exception("recording the tasks of run %s failed", self.run.id)
            internal = internal or f"internal error: {type(exc).__name__}: {exc}"
        now = self.clock.now()
        cancelled = self.cancel_scope.cancelled_caught or self._cancel_reason is not None
        timeout_note = None
        if self._timed_out:
            timeout_note = f"the run timed out after {format_duration(self.pipeline.timeout or 0)}"
        cut_off = "failed" if internal else "timed_out" if self._timed_out else "cancelled"
        why = internal or timeout_note or self._cancel_reason or "cancelled"
        unfinished = [*self.records.values(), *self._unfinished_iterations()]
        changed, attempts = self._cut_off(
            unfinished, cut_off, why, pending="failed" if internal else "cancelled"
        )
        statuses = [r.status for r in self.records.values()]
        reason: str | None
        if internal:
            status, reason = "failed", internal
        elif self._timed_out:
            status, reason = "failed", timeout_note
        elif cancelled:
            status, reason = "cancelled", self._cancel_reason or "cancelled"
        elif run_status(statuses) == "succeeded":
            status, reason = "succeeded", None
        elif self._task_cancelled and not {"failed", "timed_out"} & set(statuses):
            # Nothing failed: an operator stopped part of the run.
            status = "cancelled"
            reason = "; ".join(f"task {t} {why}" for t, why in self._task_cancelled.items())
        else:
            failed = [
                r.task_id for r in self.records.values() if r.status in ("failed", "timed_out")
            ]
            status, reason = "failed", f"task {', '.join(failed)} failed" if failed else "failed"
        lines = self._logs.take()
        if lines:
            await self.store.append_logs(lines)
        if changed:
            new = await self.store.save_tasks(changed, attempts, self._events_of(changed))
            if new and self._task_events is not None:
                await self._task_events.task_events_stored(new)
            for record in changed:
                self._task_changed(record)
        self.run.status = status
        self.run.ended_at = now
        self.run.reason = reason
        hit("run.before_finish")
        await self.store.set_run_status(self.run.id, status, at=now, reason=reason)
        self._run_changed()
