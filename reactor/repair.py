"""Planning a repair: which tasks of a finished run run again, and which keep their outputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reactor.dag import Need
from reactor.errors import AdmissionError
from reactor.store.records import FINAL_RUN_STATES, TaskRecord

__all__ = [
    "NOT_SUCCEEDED",
    "RepairError",
    "RepairPlan",
    "UnknownTaskError",
    "plan_repair",
    "repair_number",
    "repair_reason",
    "reset_records",
]

#: Task ends a repair reruns unless ``--tasks`` names others.
NOT_SUCCEEDED: frozenset[str] = frozenset(
    {"failed", "timed_out", "cancelled", "upstream_failed", "pending", "running"}
)
_REASON_PREFIX = "repair "


class RepairError(AdmissionError):
    """A repair was refused: the run is not finished or there is nothing to repair."""


class UnknownTaskError(RepairError):
    """A repair named a task the pipeline does not have."""


@dataclass(frozen=True, slots=True)
class RepairPlan:
    """The tasks asked for (``chosen``) and every task that runs again (``reset``: the
    chosen ones and all their descendants, in pipeline order)."""

    chosen: tuple[str, ...]
    reset: tuple[str, ...]


def plan_repair(
    run_status: str,
    order: Sequence[str],
    needs: Mapping[str, Sequence[Need]],
    statuses: Mapping[str, str],
    tasks: Sequence[str] | None = None,
) -> RepairPlan:
    """What a repair of a run in ``run_status`` reruns.

    ``order`` and ``needs`` are the pipeline version the repair runs; ``statuses`` the
    run's stored task ends (a task missing there, new in that version, has not run).
    ``tasks`` forces those tasks (succeeded or not); without it the not-succeeded ones
    are chosen. Raises :class:`RepairError` (``UnknownTaskError`` for a bad name).
    """
    if run_status not in FINAL_RUN_STATES:
        raise RepairError(f"the run is {run_status}: only a finished run can be repaired")
    if tasks is not None:
        unknown = [t for t in tasks if t not in needs]
        if unknown:
            raise UnknownTaskError(
                f"no task {', '.join(repr(t) for t in unknown)} in the pipeline"
                f" (tasks: {', '.join(order)})"
            )
        if not tasks:
            raise RepairError("--tasks names no task")
        chosen = [t for t in order if t in tasks]
    else:
        chosen = [t for t in order if statuses.get(t, "pending") in NOT_SUCCEEDED]
        if not chosen:
            raise RepairError(
                "nothing to repair: every task succeeded or was skipped"
                " (name tasks to run again with --tasks)"
            )
    dependants: dict[str, list[str]] = {t: [] for t in needs}
    for task, edges in needs.items():
        for need in edges:
            dependants[need.task].append(task)
    reset = set(chosen)
    todo = list(chosen)
    while todo:
        for dependant in dependants[todo.pop()]:
            if dependant not in reset:
                reset.add(dependant)
                todo.append(dependant)
    return RepairPlan(tuple(chosen), tuple(t for t in order if t in reset))


def reset_records(stored: Sequence[TaskRecord], plan: RepairPlan) -> list[TaskRecord]:
    """The stored records of the tasks ``plan`` reruns (and of their loop iterations, named
    ``task[i]``), set back to ``pending``; their ``attempts`` counts are kept so new
    attempts get new numbers and the old ones stay in the history."""
    reset = set(plan.reset)
    changed = []
    for record in stored:
        loop, bracket, _ = record.task_id.partition("[")
        if record.task_id not in reset and not (bracket and loop in reset):
            continue
        record.status = "pending"
        record.ended_at = None
        record.output = None
        record.error = None
        changed.append(record)
    return changed


def repair_reason(number: int, actor: str, plan: RepairPlan) -> str:
    """The run's reason while repair ``number`` runs (and after it, if it succeeds)."""
    return f"{_REASON_PREFIX}{number} by {actor}: tasks {', '.join(plan.chosen)}"


def repair_number(reason: str | None) -> int | None:
    """The number of the repair a run's ``reason`` names (see :func:`repair_reason`)."""
    if reason is None or not reason.startswith(_REASON_PREFIX):
        return None
    number, _, rest = reason[len(_REASON_PREFIX) :].partition(" ")
    if not number.isdigit() or not rest.startswith("by "):
        return None
    return int(number)
