"""Pure DAG logic: checking a task graph, ordering it, and which tasks are ready."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

__all__ = [
    "FINAL_TASK_STATES",
    "RUN_IF_RULES",
    "Edge",
    "Need",
    "Steps",
    "TaskState",
    "Verdict",
    "Walk",
    "combined_status",
    "edge",
    "find_cycle",
    "run_status",
    "topological_order",
    "verdict",
]

TaskState = Literal[
    "pending",
    "running",
    "succeeded",
    "failed",
    "timed_out",
    "skipped",
    "upstream_failed",
    "cancelled",
]
FINAL_TASK_STATES: frozenset[str] = frozenset(
    {"succeeded", "failed", "timed_out", "skipped", "upstream_failed", "cancelled"}
)
_OK = frozenset({"succeeded", "skipped"})


def find_cycle(needs: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle as a list of task ids (first repeated at the end), or ``None``."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(needs, white)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        color[node] = grey
        stack.append(node)
        for dep in needs.get(node, ()):
            if dep not in color:
                continue
            if color[dep] == grey:
                return [*stack[stack.index(dep) :], dep]
            if color[dep] == white and (cycle := visit(dep)):
                return cycle
        stack.pop()
        color[node] = black
        return None

    for node in needs:
        if color[node] == white and (cycle := visit(node)):
            return cycle
    return None


def topological_order(needs: Mapping[str, Sequence[str]]) -> list[str]:
    """Tasks in an order where every task comes after its needs (file order kept)."""
    done: set[str] = set()
    order: list[str] = []
    remaining = list(needs)
    while remaining:
        progress = [t for t in remaining if all(d in done for d in needs[t])]
        if not progress:
            raise ValueError("the graph has a cycle")
        for task in progress:
            done.add(task)
            order.append(task)
        remaining = [t for t in remaining if t not in done]
    return order


class Need(NamedTuple):
    """One edge: wait for ``task``; with ``outcome``, only that branch of an ``if:`` task."""

    task: str
    outcome: bool | None = None


#: What a finished need means for a task waiting on it.
Edge = Literal["success", "skipped", "failed"]
#: What becomes of a pending task once all its needs are finished.
Verdict = Literal["run", "skipped", "upstream_failed"]
RUN_IF_RULES: tuple[str, ...] = (
    "all_success",
    "at_least_one_success",
    "none_failed",
    "all_done",
    "at_least_one_failed",
    "all_failed",
)


def edge(need: Need, status: str, output: Any) -> Edge | None:
    """The edge ``need`` as its task ended; ``None`` while that task is not finished.

    A need with an ``outcome`` on an ``if:`` task that chose the other branch is skipped.
    Failed, timed out, cancelled and upstream-failed needs are all failures.
    """
    if status not in FINAL_TASK_STATES:
        return None
    if status == "succeeded":
        if need.outcome is None or output is need.outcome:
            return "success"
        return "skipped"
    return "skipped" if status == "skipped" else "failed"


def verdict(run_if: str, edges: Sequence[Edge]) -> Verdict:
    """Whether a task whose needs are all finished runs, and if not, what it becomes.

    A task with no needs always runs.
    """
    if not edges:
        return "run"
    success = edges.count("success")
    failed = edges.count("failed")
    if run_if == "all_success":
        if failed:
            return "upstream_failed"
        return "run" if success == len(edges) else "skipped"
    if run_if == "at_least_one_success":
        if success:
            return "run"
        return "upstream_failed" if failed else "skipped"
    if run_if == "none_failed":
        return "upstream_failed" if failed else "run"
    if run_if == "all_done":
        return "run"
    if run_if == "at_least_one_failed":
        return "run" if failed else "skipped"
    if run_if == "all_failed":
        return "run" if failed == len(edges) else "skipped"
    raise ValueError(f"unknown run_if rule {run_if!r}")


def combined_status(rule: str, statuses: Sequence[str]) -> str:
    """``succeeded`` or ``failed``: the end of a group (a for-each's iterations) under ``rule``.

    The group succeeds when a task with those ends as needs would run; an empty group succeeds.
    """
    edges = [edge(Need(""), s, None) or "failed" for s in statuses]
    return "succeeded" if verdict(rule, edges) == "run" else "failed"


def run_status(statuses: Iterable[str]) -> str:
    """``succeeded`` when every task succeeded or was skipped, else ``failed``."""
    return "succeeded" if all(s in _OK for s in statuses) else "failed"


@dataclass
class Steps:
    """What a change decided: tasks to start, and tasks that end without running."""

    run: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    upstream_failed: list[str] = field(default_factory=list)


class Walk:
    """Walks a run's graph as its tasks end: which start, which are skipped, which are
    blocked by a failure. Only a finished task's dependants are looked at again, so a
    run's cost grows with its edges.
    """

    def __init__(
        self,
        needs: Mapping[str, Sequence[Need]],
        run_if: Mapping[str, str],
        statuses: Mapping[str, str] | None = None,
        outputs: Mapping[str, Any] | None = None,
    ) -> None:
        self.needs = needs
        self.run_if = run_if
        self.status: dict[str, str] = {t: "pending" for t in needs}
        self.status.update(statuses or {})
        self.output: dict[str, Any] = dict(outputs or {})
        self.dependants: dict[str, list[str]] = {t: [] for t in needs}
        for task, edges in needs.items():
            for need in edges:
                self.dependants[need.task].append(task)

    def start(self) -> Steps:
        """The first decisions: every pending task whose needs are finished."""
        return self._decide(list(self.needs))

    def finished(self, task: str, status: str, output: Any = None) -> Steps:
        """``task`` ended (``status`` final); what its dependants do now."""
        self.status[task] = status
        self.output[task] = output
        return self._decide(self.dependants[task])

    def _decide(self, candidates: list[str]) -> Steps:
        steps = Steps()
        while candidates:
            decided: list[str] = []
            for task in candidates:
                if self.status[task] != "pending":
                    continue
                edges = [
                    edge(n, self.status[n.task], self.output.get(n.task)) for n in self.needs[task]
                ]
                if any(e is None for e in edges):
                    continue
                result = verdict(self.run_if.get(task, "all_success"), edges)  # type: ignore[arg-type]
                if result == "run":
                    self.status[task] = "running"
                    steps.run.append(task)
                    continue
                self.status[task] = result
                decided.append(task)
                (steps.skipped if result == "skipped" else steps.upstream_failed).append(task)
            candidates = [d for t in decided for d in self.dependants[t]]
        return steps
