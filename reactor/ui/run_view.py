"""What the run page shows: tasks with their states, the graph's layout, the attempts'
timeline, and one task's details; built from the store and the run's pipeline version."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from reactor.dag import FINAL_TASK_STATES
from reactor.store.records import AttemptRecord, LogLine, RunRecord, TaskRecord
from reactor.ui.layout import Layout, layered

if TYPE_CHECKING:
    from reactor.pipelines import Pipeline

__all__ = ["RunView", "TaskRow", "TaskView", "iteration_of", "run_view", "task_view"]

_ITERATION = re.compile(r"^(?P<loop>.+)\[(?P<index>\d+)\]$")
#: Iterations listed in a loop's panel; the rest are counted.
ITERATIONS_SHOWN = 200
#: Log lines shown at once in a task's panel (the newest), before the live tail.
LOG_LINES_SHOWN = 2000
#: A run with more tasks than this lists the first ``ROWS_FIRST`` in its table and
#: timeline (and every running or failed one); the rest come when asked for. The graph
#: always shows them all.
ROWS_AT_ONCE = 150
ROWS_FIRST = 100
NOTABLE = frozenset({"running", "failed", "timed_out", "cancelled"})


def iteration_of(task_id: str) -> tuple[str, int] | None:
    """``(loop, index)`` for a for_each iteration's id ``loop[index]``."""
    found = _ITERATION.match(task_id)
    return (found["loop"], int(found["index"])) if found else None


@dataclass
class TaskRow:
    id: str
    type: str
    status: str
    attempts: int = 0
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: str | None = None
    needs: tuple[str, ...] = ()
    #: For a loop: how many iterations ended in each state.
    iterations: Counter[str] | None = None


@dataclass(frozen=True, slots=True)
class Bar:
    """One attempt on the timeline, as percentages of the run's span."""

    attempt: int
    status: str
    left: float
    width: float
    started_at: datetime
    ended_at: datetime | None


@dataclass
class RunView:
    run: RunRecord
    pipeline: Pipeline | None
    tasks: list[TaskRow]
    timeline: list[tuple[str, list[Bar]]]
    span: tuple[datetime | None, datetime | None]
    now: datetime
    counts: Counter[str] = field(default_factory=Counter)
    #: The tasks listed in the table and the timeline (all of them, or the first ones).
    listed: list[TaskRow] = field(default_factory=list)
    all_rows: bool = True

    @property
    def unlisted(self) -> int:
        return len(self.tasks) - len(self.listed)

    @cached_property
    def layout(self) -> Layout:
        """The graph's layout, made only for the pages that draw it (the header, the
        timeline and the table are refreshed often and need none)."""
        edges = [(need, row.id) for row in self.tasks for need in row.needs]
        return layered([row.id for row in self.tasks], edges)

    @property
    def final(self) -> bool:
        return self.run.status in ("succeeded", "failed", "cancelled")


def _rows(pipeline: Pipeline | None, records: list[TaskRecord]) -> list[TaskRow]:
    by_id = {r.task_id: r for r in records}
    loops: dict[str, Counter[str]] = {}
    for record in records:
        found = iteration_of(record.task_id)
        if found is not None:
            loops.setdefault(found[0], Counter())[record.status] += 1
    order: list[str] = list(pipeline.order) if pipeline is not None else []
    known = set(order)
    order += [r.task_id for r in records if r.task_id not in known and not iteration_of(r.task_id)]
    rows = []
    for task_id in order:
        task = pipeline.tasks.get(task_id) if pipeline is not None else None
        saved = by_id.get(task_id)
        row = TaskRow(
            task_id,
            task.spec.type_key if task is not None else "",
            saved.status if saved is not None else "pending",
            needs=task.need_ids if task is not None else (),
        )
        if saved is not None:
            row.attempts = saved.attempts
            row.started_at, row.ended_at = saved.started_at, saved.ended_at
            row.error = saved.error
        if task is not None and task.inner is not None:
            row.iterations = loops.get(task_id, Counter())
        rows.append(row)
    return rows


def _timeline(
    rows: list[TaskRow], attempts: list[AttemptRecord], run: RunRecord, now: datetime
) -> tuple[list[tuple[str, list[Bar]]], tuple[datetime | None, datetime | None]]:
    mine = [a for a in attempts if iteration_of(a.task_id) is None]
    starts = [a.started_at for a in mine]
    start = min([run.started_at, *starts] if run.started_at else starts, default=None)
    if start is None:
        return [], (None, None)
    ends = [a.ended_at or now for a in mine]
    end = run.ended_at or max([now, *ends])
    span = max((end - start).total_seconds(), 1e-3)
    by_task: dict[str, list[Bar]] = {}
    for a in sorted(mine, key=lambda a: (a.started_at, a.attempt)):
        finish = a.ended_at or now
        left = (a.started_at - start).total_seconds() / span * 100
        width = max((finish - a.started_at).total_seconds() / span * 100, 0.3)
        by_task.setdefault(a.task_id, []).append(
            Bar(
                a.attempt,
                a.status,
                round(left, 3),
                round(min(width, 100 - left), 3),
                a.started_at,
                a.ended_at,
            )
        )
    lines = [(row.id, by_task[row.id]) for row in rows if row.id in by_task]
    return lines, (start, end)


def run_view(
    run: RunRecord,
    pipeline: Pipeline | None,
    records: list[TaskRecord],
    attempts: list[AttemptRecord],
    now: datetime,
    *,
    all_rows: bool = False,
) -> RunView:
    """The run page's content; ``all_rows``: list every task even in a big run."""
    rows = _rows(pipeline, records)
    listed = rows
    if not all_rows and len(rows) > ROWS_AT_ONCE:
        listed = [r for i, r in enumerate(rows) if i < ROWS_FIRST or r.status in NOTABLE]
    timeline, span = _timeline(listed, attempts, run, now)
    counts = Counter(row.status for row in rows)
    return RunView(
        run, pipeline, rows, timeline, span, now, counts, listed, len(listed) == len(rows)
    )


@dataclass
class TaskView:
    run: RunRecord
    task_id: str
    record: TaskRecord | None
    spec: dict[str, Any] | None
    type: str
    attempts: list[AttemptRecord]
    logs: list[LogLine]
    logs_cut: bool
    iterations: list[TaskRecord]
    iterations_total: int
    now: datetime

    @property
    def live(self) -> bool:
        status = self.record.status if self.record is not None else "pending"
        return status not in FINAL_TASK_STATES and self.run.status not in (
            "succeeded",
            "failed",
            "cancelled",
        )

    @property
    def last_log(self) -> int:
        return max((line.seq or 0 for line in self.logs), default=0)


def task_view(
    run: RunRecord,
    pipeline: Pipeline | None,
    task_id: str,
    records: list[TaskRecord],
    attempts: list[AttemptRecord],
    logs: list[LogLine],
    now: datetime,
) -> TaskView | None:
    """One task's details, or ``None`` if the run has no such task."""
    task = pipeline.tasks.get(task_id) if pipeline is not None else None
    record = next((r for r in records if r.task_id == task_id), None)
    if task is None and record is None:
        return None
    spec = task.spec.model_dump(mode="json", exclude_defaults=True) if task is not None else None
    iterations = [r for r in records if (found := iteration_of(r.task_id)) and found[0] == task_id]
    iterations.sort(key=lambda r: iteration_of(r.task_id) or ("", 0))
    return TaskView(
        run,
        task_id,
        record,
        spec,
        task.spec.type_key if task is not None else "",
        [a for a in attempts if a.task_id == task_id],
        logs[-LOG_LINES_SHOWN:],
        len(logs) > LOG_LINES_SHOWN,
        iterations[:ITERATIONS_SHOWN],
        len(iterations),
        now,
    )
