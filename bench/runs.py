"""Whole runs: root -> N parallel no-op tasks -> join, and a chain of N sequential no-ops."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from bench.measure import Figure
from bench.workspace import RunWatcher, Workspace, chain_yaml, fan_out_yaml
from reactor.service import Reactor
from reactor.store import SqliteStore

__all__ = ["chain", "fan_out"]

Report = Callable[[str], None]
FLOOR_REPEATS = 200


def _quiet(_line: str) -> None:
    return None


async def _time_runs(
    ws: Workspace, pipelines: list[str], repeats: int, report: Report
) -> dict[str, list[float]]:
    """Wall time (ms) of ``repeats`` runs of each pipeline: run_now -> the run is final."""
    watcher = RunWatcher()
    walls: dict[str, list[float]] = {name: [] for name in pipelines}
    async with Reactor(ws.pipelines, SqliteStore(ws.database), observers=[watcher]) as reactor:
        for name in pipelines:
            warmup = await reactor.run_now(name)
            await watcher.wait(warmup.id)
            for i in range(repeats):
                before = time.perf_counter()
                run = await reactor.run_now(name)
                ended = await watcher.wait(run.id)
                walls[name].append((ended - before) * 1000)
                if repeats >= 4 and (i + 1) % max(repeats // 2, 1) == 0 and i + 1 < repeats:
                    report(f"  {name}: {i + 1}/{repeats} runs")
    return walls


async def _floor(work: Callable[[], Awaitable[None]], repeats: int = FLOOR_REPEATS) -> float:
    """Median wall time (ms) of ``work`` done in plain asyncio."""
    await work()
    times = []
    for _ in range(repeats):
        before = time.perf_counter()
        await work()
        times.append((time.perf_counter() - before) * 1000)
    return statistics.median(times)


async def _noop() -> None:
    return None


async def fan_out(width: int = 100, repeats: int = 10, report: Report = _quiet) -> list[Figure]:
    """One run of root -> ``width`` parallel no-op tasks -> join; overhead over gather."""
    with Workspace() as ws:
        ws.write("bench_fan_out", fan_out_yaml("bench_fan_out", width))
        walls = (await _time_runs(ws, ["bench_fan_out"], repeats, report))["bench_fan_out"]

    async def floor_run() -> None:
        await asyncio.gather(_noop())
        await asyncio.gather(*(_noop() for _ in range(width)))
        await asyncio.gather(_noop())

    floor = await _floor(floor_run)
    wall = statistics.median(walls)
    benchmark = f"fan_out root->{width}->join"
    return [
        Figure(
            benchmark,
            "run wall time",
            wall,
            "ms",
            floor,
            note=f"median of {repeats} runs: run_now -> run final (async no-op tasks)",
            extra={"min_ms": min(walls), "max_ms": max(walls)},
        ),
        Figure(benchmark, "overhead over floor", wall - floor, "ms", target=20.0),
    ]


async def chain(length: int = 200, repeats: int = 5, report: Report = _quiet) -> list[Figure]:
    """A chain of ``length`` sequential no-op tasks: per-task overhead over awaited gathers."""
    with Workspace() as ws:
        ws.write("bench_chain", chain_yaml("bench_chain", length))
        ws.write("bench_chain_sync", chain_yaml("bench_chain_sync", length, "noop_sync"))
        walls = await _time_runs(ws, ["bench_chain", "bench_chain_sync"], repeats, report)

    async def floor_run() -> None:
        for _ in range(length):
            await asyncio.gather(_noop())

    floor_step = await _floor(floor_run) / length
    benchmark = f"chain of {length}"
    wall = statistics.median(walls["bench_chain"])
    sync_wall = statistics.median(walls["bench_chain_sync"])
    per_task = wall / length
    sync_per_task = sync_wall / length
    return [
        Figure(
            benchmark,
            "run wall time",
            wall,
            "ms",
            floor_step * length,
            note=f"median of {repeats} runs: run_now -> run final (async no-op tasks)",
            extra={"min_ms": min(walls["bench_chain"]), "max_ms": max(walls["bench_chain"])},
        ),
        Figure(benchmark, "per task", per_task, "ms", floor_step),
        Figure(benchmark, "per-task overhead over floor", per_task - floor_step, "ms", target=0.2),
        Figure(
            benchmark,
            "per-task overhead, sync functions",
            sync_per_task - floor_step,
            "ms",
            note="reference: sync no-op functions, each run in a worker thread",
        ),
    ]
