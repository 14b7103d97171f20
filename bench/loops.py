"""A for_each loop over many no-op items: the per-item overhead of a loop's iterations."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from bench.measure import Figure
from bench.workspace import RunWatcher, Workspace
from reactor.service import Reactor, Settings
from reactor.store import SqliteStore

__all__ = ["for_each_loop"]

Report = Callable[[str], None]


def _quiet(_line: str) -> None:
    return None


def loop_yaml(name: str, items: int, concurrency: int) -> str:
    return "\n".join(
        [
            f"name: {name}",
            "tasks:",
            "  - id: each",
            f"    for_each: {list(range(items))}",
            f"    concurrency: {concurrency}",
            "    task:",
            "      python: '{module}:noop'",
        ]
    )


async def _floor(items: int, concurrency: int) -> float:
    """Seconds for plain asyncio to run ``items`` no-op coroutines, ``concurrency`` at once."""

    async def noop() -> None:
        return None

    todo = iter(range(items))

    async def worker() -> None:
        for _ in todo:
            await noop()

    before = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - before


async def for_each_loop(
    items: int = 10_000, concurrency: int = 100, report: Report = _quiet
) -> list[Figure]:
    """One run whose for_each task runs ``items`` async no-ops, ``concurrency`` at a time:
    run_now -> the run is final, against the same work in plain asyncio."""
    watcher = RunWatcher()
    settings = Settings(max_tasks=max(concurrency, 64), reload=False, sensors=False)
    with Workspace() as ws:
        ws.write("bench_loop", loop_yaml("bench_loop", items, concurrency))
        store = SqliteStore(ws.database)
        async with Reactor(ws.pipelines, store, settings=settings, observers=[watcher]) as reactor:
            before = time.perf_counter()
            run = await reactor.run_now("bench_loop")
            ended = await watcher.wait(run.id)
            wall = ended - before
            tasks = await store.task_runs(run.id)
        loop = next(t for t in tasks if t.task_id == "each")
        stored = sum(1 for t in tasks if t.task_id.startswith("each[") and t.status == "succeeded")
        if loop.status != "succeeded" or stored != items or len(loop.output) != items:
            raise RuntimeError(
                f"the loop ended {loop.status} with {stored} of {items} iterations stored"
            )
        report(f"  {items} iterations in {wall:.2f}s")
    floor = min([await _floor(items, concurrency) for _ in range(5)])
    per_item = wall / items * 1000
    floor_item = floor / items * 1000
    benchmark = f"for_each over {items:,} no-op items, concurrency {concurrency}"
    return [
        Figure(
            benchmark,
            "run wall time",
            wall * 1000,
            "ms",
            floor * 1000,
            note="run_now -> run final; every iteration's state and attempt stored (SQLite)",
        ),
        Figure(benchmark, "per item", per_item, "ms", floor_item),
        Figure(benchmark, "per-item overhead over floor", per_item - floor_item, "ms", target=0.5),
    ]
