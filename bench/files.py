"""File written -> first task started, through the file sensor (``on: file``)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from watchfiles import Change, awatch

from bench.measure import Figure, summary
from bench.workspace import Probe, Workspace
from connectors.files import FileSensor
from reactor.service import Reactor
from reactor.store import SqliteStore

__all__ = ["file_to_task"]

WARMUP = 2
DEFAULT_SETTLE = 1.0

PIPELINE = """\
name: bench_files
triggers:
  - on: file
    path: ./inbox
    pattern: "*.dat"
{settle}tasks:
  - id: first
    python: "{module}:mark"
    args: {key: "{{ event.data.name }}"}
"""

Report = Callable[[str], None]


def _quiet(_line: str) -> None:
    return None


async def _measure(
    count: int, inbox: Path, staging: Path, probe: Probe, report: Report, prefix: str
) -> list[float]:
    """Move ``count`` files into ``inbox`` one at a time; each move -> its task's start (ms).

    Each file is written in ``staging`` first and renamed in, so the sensor
    never sees a half-written file; the clock starts when the rename returns.
    """
    names = [f"{prefix}{i:04d}.dat" for i in range(-WARMUP, count)]
    for name in names:
        (staging / name).write_bytes(b"orders\n" * 16)
    latencies = []
    step = max(count // 4, 1)
    for i, name in enumerate(names):
        os.replace(staging / name, inbox / name)
        written = time.perf_counter()
        started = await probe.wait(name)
        if i >= WARMUP:
            latencies.append((started - written) * 1000)
            done = i + 1 - WARMUP
            if done % step == 0 and done < count:
                report(f"  {done}/{count} files")
    return latencies


async def file_to_task(
    count: int = 100, settle: float | None = 0.0, report: Report = _quiet
) -> list[Figure]:
    """Files renamed into a watched folder -> the first task starts; ``None``: default settle."""
    settle_line = "" if settle is None else f"    settle: {settle}\n"
    effective = DEFAULT_SETTLE if settle is None else settle
    label = "default (1 s)" if settle is None else f"{settle:g} s"
    with Workspace() as ws:
        ws.write("bench_files", PIPELINE.replace("{settle}", settle_line))
        inbox, staging = ws.pipelines / "inbox", ws.root / "staging"
        inbox.mkdir()
        staging.mkdir()
        probe = Probe()
        uninstall = probe.install(ws.tasks())
        try:
            store = SqliteStore(ws.database)
            async with Reactor(ws.pipelines, store, observers=[probe]) as reactor:
                await _until_watching(reactor)
                latencies = await _measure(count, inbox, staging, probe, report, "r")
        finally:
            uninstall()
        floor = await _watch_floor(count, ws.root, staging)
    stats, floor_stats = summary(latencies), summary(floor)
    benchmark = f"file_to_task settle {label}"
    settle_ms = effective * 1000
    note = (
        "file renamed into the watched folder -> task function starts;"
        " floor: inotify on the event loop (the sensor's mechanism on Linux) -> gather"
    )
    return [
        Figure(benchmark, "p50", stats["p50"], "ms", floor_stats["p50"], note=note),
        Figure(
            benchmark,
            "p99",
            stats["p99"],
            "ms",
            floor_stats["p99"],
            extra={"mean_ms": stats["mean"], "max_ms": stats["max"], "n": stats["n"]},
        ),
        Figure(
            benchmark,
            "added over floor, p50",
            stats["p50"] - floor_stats["p50"],
            "ms",
            target=settle_ms + 5.0,
            note="the sensor should add no more than its settle time (+ the 5 ms event target)",
        ),
        Figure(
            benchmark,
            "added over floor, p99",
            stats["p99"] - floor_stats["p99"],
            "ms",
            target=settle_ms + 20.0,
        ),
    ]


async def _until_watching(reactor: Reactor, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while any(h.state != "watching" for h in reactor.sensor_health().values()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"file sensor not watching after {timeout:g}s")
        await asyncio.sleep(0.01)


async def _watch_floor(count: int, root: Path, staging: Path) -> list[float]:
    """The floor: the sensor's own OS mechanism on a folder, a task started per new file.

    On Linux that is inotify on the event loop (asyncinotify, as the sensor
    uses); elsewhere watchfiles.awatch with the sensor's step.
    """
    inbox = root / "floor-inbox"
    inbox.mkdir()
    probe = Probe()

    async def mark(key: str) -> None:
        probe(key, time.perf_counter())

    if sys.platform == "linux":
        from asyncinotify import Inotify, Mask

        async def measure() -> list[float]:
            with Inotify() as inotify:
                inotify.add_watch(inbox, Mask.CLOSE_WRITE | Mask.MOVED_TO)

                async def watch() -> None:
                    async for event in inotify:
                        if event.path is not None and event.path.suffix == ".dat":
                            await asyncio.gather(mark(event.path.name))

                return await _with_watcher(watch(), None, count, inbox, staging, probe)

        return await measure()

    ready = asyncio.Event()

    async def watch_polling() -> None:
        async for changes in awatch(
            inbox,
            step=FileSensor.step_ms,
            debounce=1000,
            watch_filter=lambda change, _path: change != Change.deleted,
            rust_timeout=250,
            yield_on_timeout=True,
        ):
            ready.set()
            starts: list[Awaitable[None]] = [
                mark(Path(raw).name) for _change, raw in changes if raw.endswith(".dat")
            ]
            await asyncio.gather(*starts)

    return await _with_watcher(watch_polling(), ready, count, inbox, staging, probe)


async def _with_watcher(
    watch: Coroutine[Any, Any, None],
    ready: asyncio.Event | None,
    count: int,
    inbox: Path,
    staging: Path,
    probe: Probe,
) -> list[float]:
    watcher = asyncio.create_task(watch)
    try:
        if ready is not None:
            await asyncio.wait_for(ready.wait(), 10)
        return await _measure(count, inbox, staging, probe, _quiet, "f")
    finally:
        watcher.cancel()
        try:
            await watcher
        except asyncio.CancelledError:
            pass
