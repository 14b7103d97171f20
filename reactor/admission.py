"""Admission: per-pipeline ``max_active_runs`` with its overlap policy, and the global task limit.

The limits sit behind small protocols so a multi-process version can back
them with the store instead of this process's memory.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Literal, Protocol

import anyio

__all__ = [
    "LocalPools",
    "LocalRunSlots",
    "LocalTaskSlots",
    "Plan",
    "Pools",
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


class Pools(Protocol):
    """Named slots shared by every task that says ``pool: NAME``, across pipelines."""

    def slot(self, name: str, holder: str) -> AbstractAsyncContextManager[object]: ...

    def full(self, name: str) -> bool: ...

    def usage(self, name: str) -> tuple[int, int]:
        """``(in use, size)``."""
        ...

    def describe(self) -> list[dict[str, object]]:
        """Each pool: name, size, in use, and who waits (``run/task``)."""
        ...


class LocalPools:
    """This process's pools: a capacity limiter per name, resizable on reload."""

    def __init__(self, sizes: Mapping[str, int]) -> None:
        self._limiters: dict[str, anyio.CapacityLimiter] = {}
        self._waiting: dict[str, dict[str, None]] = defaultdict(dict)
        self.resize(sizes)

    def resize(self, sizes: Mapping[str, int]) -> None:
        for name, size in sizes.items():
            if name in self._limiters:
                self._limiters[name].total_tokens = size
            else:
                self._limiters[name] = anyio.CapacityLimiter(size)

    def _limiter(self, name: str) -> anyio.CapacityLimiter:
        limiter = self._limiters.get(name)
        if limiter is None:
            # Validation refuses unknown pools; a pool removed by a reload while a run
            # of the old version goes on keeps working with one slot.
            limiter = self._limiters[name] = anyio.CapacityLimiter(1)
        return limiter

    @asynccontextmanager
    async def slot(self, name: str, holder: str) -> AsyncIterator[object]:
        limiter = self._limiter(name)
        waiting = self._waiting[name]
        waiting[holder] = None
        try:
            await limiter.acquire_on_behalf_of(holder)
        finally:
            waiting.pop(holder, None)
        try:
            yield limiter
        finally:
            limiter.release_on_behalf_of(holder)

    def full(self, name: str) -> bool:
        return self._limiter(name).available_tokens < 1

    def usage(self, name: str) -> tuple[int, int]:
        limiter = self._limiter(name)
        return limiter.borrowed_tokens, int(limiter.total_tokens)

    def describe(self) -> list[dict[str, object]]:
        return [
            {
                "name": name,
                "size": int(limiter.total_tokens),
                "in_use": limiter.borrowed_tokens,
                "waiting": list(self._waiting[name]),
            }
            for name, limiter in sorted(self._limiters.items())
        ]


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
