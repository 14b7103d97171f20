"""A throwaway pipelines folder: the no-op task module and the pipelines a benchmark runs."""

from __future__ import annotations

import asyncio
import importlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from reactor.store import RunRecord, TaskRecord
from reactor.store.records import FINAL_RUN_STATES

__all__ = ["Probe", "RunWatcher", "Workspace", "chain_yaml", "fan_out_yaml"]

# The tasks every benchmark pipeline runs. ``mark`` is the first task of a
# latency benchmark: it reads the clock as its first act and hands the
# reading to whoever set ``hook`` (the benchmark, in the same process).
_TASKS_MODULE = '''\
"""No-op tasks for Reactor's benchmarks (written at run time)."""

import time

hook = None


async def noop():
    return None


def noop_sync():
    return None


async def mark(key):
    started = time.perf_counter()
    if hook is not None:
        hook(key, started)
'''


class Workspace:
    """A temp folder with ``pipelines/`` (and its task module) plus room for a database.

    Each workspace gets its own module name, so several in one process never
    share a cached import.
    """

    _count = 0

    def __init__(self, prefix: str = "reactor-bench-") -> None:
        Workspace._count += 1
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self.pipelines = self.root / "pipelines"
        self.pipelines.mkdir()
        self.module = f"bench_tasks_{Workspace._count}_{time.monotonic_ns() % 10**8}"
        (self.pipelines / f"{self.module}.py").write_text(_TASKS_MODULE, encoding="utf-8")

    @property
    def database(self) -> Path:
        return self.root / "state" / "reactor.db"

    def write(self, name: str, text: str) -> Path:
        """Write the pipeline file ``name.yaml`` (``{module}`` in ``text`` is the task module)."""
        path = self.pipelines / f"{name}.yaml"
        path.write_text(text.replace("{module}", self.module), encoding="utf-8")
        return path

    def tasks(self) -> ModuleType:
        """The task module, imported the way the python connector imports it."""
        folder = str(self.pipelines)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        return importlib.import_module(self.module)

    def close(self) -> None:
        module = sys.modules.pop(self.module, None)
        if module is not None:
            module.hook = None  # type: ignore[attr-defined]
        # The python connector put the folder on sys.path too; a longer sys.path makes
        # every failed import (httpcore tries `import sniffio` per request) slower.
        folder = str(self.pipelines)
        while folder in sys.path:
            sys.path.remove(folder)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Probe:
    """Collects ``mark(key)`` start times; ``await probe.wait(key)`` returns one.

    It is also a RunObserver: a benchmark run that fails or is cancelled fails
    every waiter at once with the run's reason, instead of a silent timeout.
    """

    def __init__(self) -> None:
        self.started: dict[Any, float] = {}
        self._waiters: dict[Any, asyncio.Future[float]] = {}
        self.failure: RuntimeError | None = None

    def __call__(self, key: Any, at: float) -> None:
        self.started.setdefault(key, at)
        waiter = self._waiters.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(at)

    def run_changed(self, run: RunRecord) -> None:
        if run.status in ("failed", "cancelled") and self.failure is None:
            self.failure = RuntimeError(
                f"benchmark run {run.id} of {run.pipeline} {run.status}: {run.reason}"
            )
            for waiter in self._waiters.values():
                if not waiter.done():
                    waiter.set_exception(self.failure)
            self._waiters.clear()

    def task_changed(self, run: RunRecord, task: TaskRecord, note: str) -> None:
        return None

    async def wait(self, key: Any, timeout: float = 30.0) -> float:
        if key in self.started:
            return self.started[key]
        if self.failure is not None:
            raise self.failure
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[key] = waiter
        try:
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise TimeoutError(f"no task started for {key!r} within {timeout:g}s") from None

    def install(self, module: ModuleType) -> Callable[[], None]:
        module.hook = self  # type: ignore[attr-defined]

        def uninstall() -> None:
            module.hook = None  # type: ignore[attr-defined]

        return uninstall


class RunWatcher:
    """A RunObserver that notes when each run reached a final state (perf_counter time)."""

    def __init__(self) -> None:
        self.ended: dict[str, float] = {}
        self.status: dict[str, str] = {}
        self._waiters: dict[str, asyncio.Future[float]] = {}

    def run_changed(self, run: RunRecord) -> None:
        if run.status not in FINAL_RUN_STATES:
            return
        at = time.perf_counter()
        self.ended[run.id] = at
        self.status[run.id] = run.status
        waiter = self._waiters.pop(run.id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(at)

    def task_changed(self, run: RunRecord, task: TaskRecord, note: str) -> None:
        return None

    async def wait(self, run_id: str, timeout: float = 60.0) -> float:
        """When run ``run_id`` ended; raises if it did not succeed."""
        if run_id not in self.ended:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters[run_id] = waiter
            await asyncio.wait_for(waiter, timeout)
        if self.status[run_id] != "succeeded":
            raise RuntimeError(f"benchmark run {run_id} ended {self.status[run_id]}")
        return self.ended[run_id]


def fan_out_yaml(name: str, width: int, function: str = "noop") -> str:
    """root -> ``width`` parallel no-op tasks -> join."""
    lines = [f"name: {name}", "tasks:", f"  - {{id: root, python: '{{module}}:{function}'}}"]
    lines += [
        f"  - {{id: t{i}, needs: [root], python: '{{module}}:{function}'}}" for i in range(width)
    ]
    needs = ", ".join(f"t{i}" for i in range(width))
    lines.append(f"  - {{id: join, needs: [{needs}], python: '{{module}}:{function}'}}")
    return "\n".join(lines) + "\n"


def chain_yaml(name: str, length: int, function: str = "noop") -> str:
    """``length`` no-op tasks, each needing the one before."""
    lines = [f"name: {name}", "tasks:", f"  - {{id: t0, python: '{{module}}:{function}'}}"]
    lines += [
        f"  - {{id: t{i}, needs: [t{i - 1}], python: '{{module}}:{function}'}}"
        for i in range(1, length)
    ]
    return "\n".join(lines) + "\n"
