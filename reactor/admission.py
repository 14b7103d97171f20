"""Admission: per-pipeline ``max_active_runs`` with its overlap policy, and the global task limit.

The limits sit behind small protocols so a multi-process version can back
them with the store instead of this process's memory.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

import anyio

__all__ = [
    "LocalRunSlots",
    "LocalTaskSlots",
    "Plan",
    "RunSlots",
    "TaskSlots",
    "plan_admission",
]

Plan = Literal["start", "queue", "skip", "cancel_running"]


class RunSlots(Protocol):
    """Counts active runs per pipeline."""

    def active(self, pipeline: str) -> int: ...

    def acquire(self, pipeline: str, run_id: str) -> None: ...

    def release(self, pipeline: str, run_id: str) -> None: ...

    def running(self, pipeline: str) -> list[str]: ...


class TaskSlots(Protocol):
    """The global limit on task attempts running at once."""

    def slot(self) -> AbstractAsyncContextManager[object]: ...


@dataclass
class LocalRunSlots:
    """Active runs of this process, per pipeline, oldest first."""

    def __post_init__(self) -> None:
        self._runs: dict[str, dict[str, None]] = defaultdict(dict)

    def active(self, pipeline: str) -> int:
        return len(self._runs[pipeline])

    def acquire(self, pipeline: str, run_id: str) -> None:
        self._runs[pipeline][run_id] = None

    def release(self, pipeline: str, run_id: str) -> None:
        self._runs[pipeline].pop(run_id, None)

    def running(self, pipeline: str) -> list[str]:
        return list(self._runs[pipeline])


class LocalTaskSlots:
    """A capacity limiter shared by every run of this process."""

    def __init__(self, limit: int) -> None:
        self.limiter = anyio.CapacityLimiter(limit)

    def slot(self) -> AbstractAsyncContextManager[object]:
        return self.limiter


def plan_admission(*, active: int, queued: int, max_active_runs: int, on_overlap: str) -> Plan:
    """What to do with a new run given how many of its pipeline's runs are active/queued."""
    if on_overlap == "allow":
        return "start"
    if active + queued < max_active_runs:
        return "start" if queued == 0 else "queue"
    if on_overlap == "skip":
        return "skip"
    if on_overlap == "cancel_running":
        return "cancel_running"
    return "queue"
