"""Pure DAG logic: checking a task graph, ordering it, and which tasks are ready."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

__all__ = [
    "FINAL_TASK_STATES",
    "TaskState",
    "find_cycle",
    "next_steps",
    "topological_order",
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


def next_steps(
    needs: Mapping[str, Sequence[str]], states: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """``(ready, blocked)``: pending tasks whose needs all succeeded, and pending
    tasks that can never run because a need ended badly (to mark ``upstream_failed``).
    """
    ready: list[str] = []
    blocked: list[str] = []
    for task, deps in needs.items():
        if states.get(task, "pending") != "pending":
            continue
        dep_states = [states.get(d, "pending") for d in deps]
        if all(s in _OK for s in dep_states):
            ready.append(task)
        elif any(s in FINAL_TASK_STATES and s not in _OK for s in dep_states):
            blocked.append(task)
    return ready, blocked
