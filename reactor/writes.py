"""Group commit of one run's task transitions: written in order, without waiting on each.

State changes are queued and a single writer sends whatever is queued as one
store call (one transaction), keeping only the latest state of each task and
attempt. So a chain of quick tasks costs no commit round trip between one
task's end and the next one's start, a burst of parallel tasks shares a
commit, and the store never shows a task running without the upstream results
it ran on: they are in the same or an earlier transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

import anyio

from reactor.events import Event
from reactor.store import AttemptRecord, LogLine, Store, TaskEvent, TaskRecord

__all__ = ["TaskWriter"]


class TaskWriter:
    """Queues task, attempt and log writes of one run; :meth:`run` writes them in batches."""

    def __init__(
        self,
        store: Store,
        on_events: Callable[[list[Event]], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        #: Told the task events that were stored new and need the rule engine.
        self._on_events = on_events
        self._tasks: dict[str, TaskRecord] = {}
        self._attempts: dict[tuple[str, int], AttemptRecord] = {}
        self._logs: list[LogLine] = []
        self._events: list[TaskEvent] = []
        self._queued = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()
        self.failure: Exception | None = None

    def submit(
        self,
        tasks: Sequence[TaskRecord] = (),
        attempts: Sequence[AttemptRecord] = (),
        logs: Sequence[LogLine] = (),
        events: Sequence[TaskEvent] = (),
    ) -> None:
        """Queue the records as they are now (copied: the caller goes on changing them)."""
        for task in tasks:
            self._tasks[task.task_id] = replace(task)
        for attempt in attempts:
            self._attempts[(attempt.task_id, attempt.attempt)] = replace(attempt)
        self._logs.extend(logs)
        self._events.extend(events)
        self._idle = anyio.Event() if self._idle.is_set() else self._idle
        self._queued.set()

    def _pending(self) -> bool:
        return bool(self._tasks or self._attempts or self._logs or self._events)

    async def run(self) -> None:
        """Write batches until cancelled; a failure is kept for :meth:`drain` to raise."""
        while True:
            await self._queued.wait()
            self._queued = anyio.Event()
            while self._pending():
                tasks, self._tasks = list(self._tasks.values()), {}
                attempts, self._attempts = list(self._attempts.values()), {}
                logs, self._logs = self._logs, []
                events, self._events = self._events, []
                # A batch that started is finished even if its run is being cancelled.
                with anyio.CancelScope(shield=True):
                    try:
                        if logs:
                            await self._store.append_logs(logs)
                        if tasks or attempts or events:
                            new = await self._store.save_tasks(tasks, attempts, events)
                            if new and self._on_events is not None:
                                await self._on_events(new)
                    except Exception as exc:
                        self.failure = self.failure or exc
            self._idle.set()

    async def drain(self) -> None:
        """Wait until everything submitted is written; raise the first failure."""
        # Anything queued makes the writer busy until it is written (submit clears idle).
        while not self._idle.is_set():
            await self._idle.wait()
        if self.failure is not None:
            raise self.failure
