"""Schedule tick due -> first task started: the lag a scheduled run adds to its tick."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bench.measure import Figure, summary
from bench.workspace import Probe, Workspace
from reactor.clock import FakeClock
from reactor.service import Reactor, Settings
from reactor.store import SqliteStore

__all__ = ["schedule_to_task"]

WARMUP = 10
PERIOD = 60.0
START = datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)

PIPELINE = """\
name: bench_schedule
triggers:
  - on: schedule
    every: 1m
tasks:
  - id: first
    python: "{module}:mark"
    args: {key: "{{ logical.time }}"}
"""

Report = Callable[[str], None]


def _quiet(_line: str) -> None:
    return None


async def _asleep_until(reactor: Reactor, clock: FakeClock, tick: datetime) -> None:
    """Wait until the sensor sleeps towards ``tick`` (the heartbeat sleeps too)."""
    expected = f"next tick {tick.isoformat()}"
    health = reactor.sensor_health()
    while health["bench_schedule/schedule"].message != expected or clock.sleepers < 2:
        await asyncio.sleep(0.0005)
        health = reactor.sensor_health()


async def schedule_to_task(count: int = 500, report: Report = _quiet) -> list[Figure]:
    """A fake clock reaches each tick; the time until the run's first task starts (ms).

    The clock is moved by hand so that the figure is Reactor's own lag (sensor wakes,
    tick stored, rule, run admitted, task started), not the operating system's timer.
    """
    with Workspace() as ws:
        ws.write("bench_schedule", PIPELINE)
        probe = Probe()
        uninstall = probe.install(ws.tasks())
        clock = FakeClock(START)
        # A heartbeat each hour of fake time: it would otherwise wake with every tick.
        settings = Settings(reload=False, heartbeat=3600.0, lease=7200.0)
        latencies: list[float] = []
        step = max(count // 4, 1)
        try:
            async with Reactor(
                ws.pipelines,
                SqliteStore(ws.database),
                clock=clock,
                settings=settings,
                observers=[probe],
            ) as reactor:
                tick = START + timedelta(seconds=30)
                for i in range(-WARMUP, count):
                    await _asleep_until(reactor, clock, tick)
                    before = time.perf_counter()
                    clock.advance((tick - clock.now()).total_seconds())
                    started = await probe.wait(tick.isoformat())
                    if i >= 0:
                        latencies.append((started - before) * 1000)
                        if (i + 1) % step == 0 and i + 1 < count:
                            report(f"  {i + 1}/{count} ticks")
                    tick += timedelta(seconds=PERIOD)
        finally:
            uninstall()
    floor = await _timer_floor(count)
    stats, floor_stats = summary(latencies), summary(floor)
    extra = {"mean_ms": stats["mean"], "max_ms": stats["max"], "n": stats["n"]}
    note = "tick due on a fake clock -> task function starts; floor: a woken sleeper -> gather"
    return [
        Figure("schedule_to_task", "p50", stats["p50"], "ms", floor_stats["p50"], note=note),
        Figure(
            "schedule_to_task", "p99", stats["p99"], "ms", floor_stats["p99"], 10.0, extra=extra
        ),
    ]


async def _timer_floor(count: int) -> list[float]:
    """The same work without a framework: a sleeper woken, a task started with gather."""
    probe = Probe()

    async def mark(key: int) -> None:
        probe(key, time.perf_counter())

    latencies = []
    for key in range(-WARMUP, count):
        due = asyncio.Event()

        async def sleeper(key: int = key, due: asyncio.Event = due) -> None:
            await due.wait()
            await asyncio.gather(mark(key))

        task = asyncio.create_task(sleeper())
        await asyncio.sleep(0)
        before = time.perf_counter()
        due.set()
        started = await probe.wait(key)
        await task
        if key >= 0:
            latencies.append((started - before) * 1000)
    return latencies
