"""Runs one pipeline run: tasks start as soon as their needs are done, every change persisted."""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import anyio

from reactor.actions import LogStream, TaskRequest
from reactor.admission import TaskSlots
from reactor.clock import Clock, run_with_timeout
from reactor.dag import FINAL_TASK_STATES, next_steps
from reactor.durations import format_duration
from reactor.errors import ActionError
from reactor.events import Event, logical_scope
from reactor.failpoints import hit
from reactor.pipelines import Pipeline, Task
from reactor.specs import TASK_EVENT_PREFIX, run_event_source
from reactor.store import AttemptRecord, LogLine, RunRecord, Store, TaskEvent, TaskRecord
from reactor.writes import TaskWriter

__all__ = ["RunExecutor", "RunObserver", "TaskEventSink", "task_event"]

logger = logging.getLogger("reactor.executor")

_LOG_FLUSH_SECONDS = 0.2
#: Read once: a run's attempts record where they ran, and the name does not change.
_HOST = socket.gethostname()


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
    ) -> None:
        self.run = run
        self.pipeline = pipeline
        self.events = list(events)
        self.store = store
        self.clock = clock
        self.task_slots = task_slots
        self.owner = owner
        self.env = env
        self.observers = observers
        self.connection = connection
        self.records = {t: TaskRecord(run.id, t) for t in pipeline.order}
        self.cancel_scope = anyio.CancelScope()
        self._logs = _Logs(run.id, clock)
        self._cancel_reason: str | None = None
        self._open_attempts: dict[str, AttemptRecord] = {}
        self._resume = resume
        self._host = _HOST
        self._needs = pipeline.needs
        self._dependants: dict[str, list[str]] = {t: [] for t in pipeline.order}
        for task_id in pipeline.order:
            for need in self._needs[task_id]:
                self._dependants[need].append(task_id)
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
        if record.status in FINAL_TASK_STATES:
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
        events = [task_event(self.run, t, now) for t in tasks if t.status in FINAL_TASK_STATES]
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
        runs again if its retries allow; finished tasks are never run again.
        """
        changed = []
        for record in stored:
            if record.task_id not in self.records:
                continue
            self.records[record.task_id] = record
            if record.status in FINAL_TASK_STATES:
                self._finished[record.task_id] = {"output": record.output, "status": record.status}
            if record.status != "running":
                continue
            retries = self.pipeline.tasks[record.task_id].retries
            if record.attempts <= retries.max:
                record.status = "pending"
            else:
                record.status = "failed"
                record.ended_at = now
            record.error = "crashed: the process running it stopped"
            changed.append(record)
        return changed

    async def execute(self) -> RunRecord:
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
                        await self._drive()
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
        running: set[str] = set()
        # Only tasks whose needs just changed are looked at again, so a run's cost grows
        # with its edges, not with its tasks squared.
        check = list(self.pipeline.order)
        async with anyio.create_task_group() as tg:
            while True:
                while check:
                    relevant = {t: self._needs[t] for t in check}
                    states = {
                        x: self.records[x].status for t in check for x in (t, *self._needs[t])
                    }
                    ready, blocked = next_steps(relevant, states)
                    for task_id in ready:
                        running.add(task_id)
                        self.records[task_id].status = "running"
                        tg.start_soon(self._run_task, self.pipeline.tasks[task_id], done_send)
                    self._mark_upstream_failed(blocked)
                    check = [d for b in blocked for d in self._dependants[b]]
                if not running:
                    break
                finished = await done_receive.receive()
                running.discard(finished)
                check = self._dependants[finished]

    def _mark_upstream_failed(self, task_ids: list[str]) -> None:
        now = self.clock.now()
        for task_id in task_ids:
            record = self.records[task_id]
            record.status = "upstream_failed"
            record.ended_at = now
            self._write([record])
            self._task_changed(record)

    async def _run_task(self, task: Task, done: Any) -> None:
        record = self.records[task.id]
        try:
            await self._attempts(task, record)
        finally:
            done.send_nowait(task.id)

    async def _attempts(self, task: Task, record: TaskRecord) -> None:
        retries = task.retries
        while True:
            async with self.task_slots.slot():
                record.attempts += 1
                now = self.clock.now()
                record.status = "running"
                record.started_at = record.started_at or now
                record.error = None
                attempt = AttemptRecord(
                    self.run.id,
                    task.id,
                    record.attempts,
                    "running",
                    self.owner,
                    now,
                    now,
                    host=self._host,
                )
                self._open_attempts[task.id] = attempt
                self._write([record], [attempt])
                hit("task.after_start")
                self._task_changed(record, f"attempt {record.attempts}")
                outcome, output, error = await self._attempt(task, attempt)
                hit("task.after_action")
                del self._open_attempts[task.id]
            now = self.clock.now()
            attempt.status = outcome
            attempt.ended_at = now
            attempt.heartbeat_at = now
            attempt.error = error
            if outcome == "succeeded":
                record.status = "succeeded"
                record.output = output
                record.ended_at = now
                self._write([record], [attempt])
                self._task_changed(record)
                return
            if record.attempts <= retries.max:
                record.error = error
                self._logs.lines.append(
                    LogLine(
                        self.run.id,
                        task.id,
                        record.attempts,
                        "system",
                        now,
                        f"attempt {record.attempts} {outcome}: {error};"
                        f" retrying in {format_duration(retries.delay)}",
                    )
                )
                self._write([record], [attempt])
                self._task_changed(record, f"{outcome}: {error}; retrying")
                await self.clock.sleep(retries.delay)
                continue
            record.status = outcome
            record.error = error
            record.ended_at = now
            self._write([record], [attempt])
            self._task_changed(record, error or "")
            return

    async def _attempt(self, task: Task, attempt: AttemptRecord) -> tuple[str, Any, str | None]:
        async def report_process(pid: int) -> None:
            attempt.pid = pid
            self._write(attempts=[attempt])

        request = TaskRequest(
            run_id=self.run.id,
            pipeline=self.pipeline.name,
            task_id=task.id,
            attempt=attempt.attempt,
            scope=self._scope(),
            base_dir=self.pipeline.base_dir,
            log=self._logs.sink(task.id, attempt.attempt),
            report_process=report_process,
            connection=self.connection,
        )
        try:
            output = await run_with_timeout(
                self.clock, task.spec.timeout, lambda: task.action.execute(request)
            )
        except TimeoutError:
            return "timed_out", None, f"timed out after {format_duration(task.spec.timeout or 0)}"
        except ActionError as exc:
            return "failed", None, str(exc)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            logger.exception("task %s of run %s crashed", task.id, self.run.id)
            return "failed", None, f"{type(exc).__name__}: {exc}"
        return "succeeded", output, None

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
        cut_off = "failed" if internal else "cancelled"
        changed = []
        attempts = list(self._open_attempts.values())
        for attempt in attempts:
            attempt.status = cut_off
            attempt.ended_at = now
            attempt.error = internal or self._cancel_reason or "cancelled"
        for record in self.records.values():
            if record.status not in FINAL_TASK_STATES:
                record.status = cut_off
                record.ended_at = now
                record.error = internal or record.error
                changed.append(record)
        states = {r.status for r in self.records.values()}
        if internal:
            status, reason = "failed", internal
        elif cancelled:
            status, reason = "cancelled", self._cancel_reason or "cancelled"
        elif states <= {"succeeded", "skipped"}:
            status, reason = "succeeded", None
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
