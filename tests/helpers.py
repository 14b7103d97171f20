"""Test helpers: wait on conditions (never on the clock) and record run/task changes."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from reactor.recovery import RUN_ID_VARIABLE
from reactor.store import RunRecord, TaskRecord
from reactor.store.records import FINAL_RUN_STATES


async def wait_for(
    condition: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout: float = 10.0,
    message: str = "condition",
) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    try:
        with anyio.fail_after(timeout):
            while True:
                result = condition()
                if not isinstance(result, bool):
                    result = await result
                if result:
                    return
                await anyio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {message}") from None


@dataclass
class Recorder:
    """A RunObserver that keeps every change and wakes waiters."""

    runs: dict[str, RunRecord] = field(default_factory=dict)
    changes: list[tuple[str, str, str]] = field(default_factory=list)
    tasks: list[tuple[str, str, str]] = field(default_factory=list)
    _changed: anyio.Event = field(default_factory=anyio.Event)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def run_changed(self, run: RunRecord) -> None:
        self.runs[run.id] = run
        self.changes.append((run.id, run.pipeline, run.status))
        self._wake()

    def task_changed(self, run: RunRecord, task: TaskRecord, note: str) -> None:
        self.tasks.append((run.id, task.task_id, task.status))
        self._wake()

    def finished(self) -> list[RunRecord]:
        """The runs whose end the observers were told of (a record's own status may be
        final a moment before that: the executor sets it, then writes, then tells)."""
        told = {run_id: status for run_id, _, status in self.changes}
        return [self.runs[r] for r, status in told.items() if status in FINAL_RUN_STATES]

    async def wait_finished(self, count: int = 1, *, timeout: float = 10.0) -> list[RunRecord]:
        """Wait until ``count`` runs reached a final state; returns them."""
        try:
            with anyio.fail_after(timeout):
                while len(self.finished()) < count:
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"timed out after {timeout}s: {len(self.finished())} of {count} runs finished;"
                f" changes: {self.changes}"
            ) from None
        return self.finished()


def imported(module: str, attribute: str) -> Any:
    """``module.attribute`` once a task's module has been imported far enough to have it,
    else ``None``: a module is in ``sys.modules`` while it is still being imported (in the
    task's thread), before its globals exist."""
    return getattr(sys.modules.get(module), attribute, None)


def processes_of(run_id: str) -> list[int]:
    """Live processes with this run's id in their environment (as crash recovery finds them)."""
    marker = f"{RUN_ID_VARIABLE}={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker in environ and state != "Z":
            found.append(int(entry.name))
    return found
