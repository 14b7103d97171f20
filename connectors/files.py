"""``on: file``: a run when a file matching a glob lands in a folder and stops growing."""

from __future__ import annotations

import fnmatch
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING, ClassVar, Literal

import anyio
from anyio.abc import TaskStatus
from pydantic import Field

from reactor.durations import Duration
from reactor.events import Event, content_id
from reactor.sensors import SensorContext, sensor_source
from reactor.specs import EventFilter, TriggerSpec

if TYPE_CHECKING:
    from asyncinotify import Inotify, Mask

__all__ = ["FILE_ARRIVED", "FileSensor", "FileTriggerSpec"]

FILE_ARRIVED = "reactor.file.arrived"


class FileTriggerSpec(TriggerSpec):
    """``on: file``: ``path`` (relative to the pipeline file), ``pattern``, ``settle``."""

    on: Literal["file"]
    path: str = Field(min_length=1)
    pattern: str = "*"
    settle: Duration = 1.0
    recursive: bool = False
    rescan: Duration = 60.0

    has_sensor: ClassVar[bool] = True

    def event_filter(self, trigger_key: str) -> EventFilter:
        return EventFilter(FILE_ARRIVED, sensor_source(trigger_key))


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float


def _file_state(path: Path) -> tuple[int, int] | None:
    """``(size, mtime_ns)`` of a regular file, or ``None`` (gone, or not a file)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    if not S_ISREG(stat.st_mode):
        return None
    return stat.st_size, stat.st_mtime_ns


class FileSensor:
    """Watches one folder; emits each (path, size, mtime) once it has settled.

    Files already there at start count too. The event id is derived from path,
    size and mtime, so ingest dedupe makes each file trigger once, across
    restarts as well. A rescan every ``rescan`` catches anything the OS
    notification queue dropped.
    """

    #: Off Linux: how often watchfiles looks for changes (ms).
    step_ms: ClassVar[int] = 50

    def __init__(self, spec: FileTriggerSpec) -> None:
        self.spec = spec
        self._pending: dict[Path, _Seen] = {}
        self._emitted: dict[Path, tuple[int, int]] = {}
        self._wake = anyio.Event()

    def matches(self, folder: Path, path: Path) -> bool:
        """Whether ``path`` under ``folder`` is one this trigger watches for."""
        pattern = self.spec.pattern
        try:
            relative = path.relative_to(folder)
        except ValueError:
            return False
        if not self.spec.recursive and len(relative.parts) != 1:
            return False
        if any(part.startswith(".") for part in relative.parts) and not pattern.startswith("."):
            return False
        target = relative.as_posix() if "/" in pattern else relative.name
        return fnmatch.fnmatchcase(target, pattern)

    def _note(self, path: Path, ctx: SensorContext) -> None:
        state = _file_state(path)
        if state is None:
            self._pending.pop(path, None)
            return
        if self._emitted.get(path) == state:
            return
        seen = self._pending.get(path)
        if seen is None or (seen.size, seen.mtime_ns) != state:
            self._pending[path] = _Seen(*state, since=ctx.clock.monotonic())
            self._wake.set()

    def _scan(self, folder: Path, ctx: SensorContext) -> None:
        walker = folder.rglob("*") if self.spec.recursive else folder.iterdir()
        for path in sorted(walker):
            if self.matches(folder, path):
                self._note(path, ctx)

    async def run(self, ctx: SensorContext, *, task_status: TaskStatus[None]) -> None:
        folder = (ctx.base_dir / self.spec.path).resolve()
        task_status.started()
        while not folder.is_dir():
            ctx.set_health("failing", f"folder {folder} does not exist; waiting for it")
            await ctx.clock.sleep(1.0)
        async with anyio.create_task_group() as tg:
            # The watcher is started first: asyncio runs tasks in the order they were
            # started, and both watchers set up their OS watch before their first await,
            # so the scan below cannot miss a file that lands in between.
            watch = self._watch_inotify if sys.platform == "linux" else self._watch_polling
            tg.start_soon(watch, folder, ctx)
            tg.start_soon(self._rescan, folder, ctx)
            await self._settle(ctx)

    async def _watch_inotify(self, folder: Path, ctx: SensorContext) -> None:
        """Linux: inotify on the event loop, so a file is seen the moment it is written.

        A file counts when its writer closes it or it is moved in (an atomic
        rename); with a settle time, its creation starts the clock too.
        """
        from asyncinotify import Inotify, Mask  # a Linux-only dependency

        wanted = Mask.CLOSE_WRITE | Mask.MOVED_TO | Mask.CREATE
        with Inotify() as inotify:
            self._add_watches(inotify, folder, wanted)
            async for event in inotify:
                if event.mask & Mask.Q_OVERFLOW:
                    self._scan(folder, ctx)
                    continue
                path = event.path
                if path is None:
                    continue
                if event.mask & Mask.ISDIR:
                    if self.spec.recursive and event.mask & (Mask.CREATE | Mask.MOVED_TO):
                        self._add_watches(inotify, path, wanted)
                        self._scan(folder, ctx)
                    continue
                if event.mask & Mask.CREATE and self.spec.settle == 0:
                    continue  # still being written: wait for its close
                if self.matches(folder, path):
                    self._note(path, ctx)

    def _add_watches(self, inotify: Inotify, folder: Path, mask: Mask) -> None:
        inotify.add_watch(folder, mask)
        if self.spec.recursive:
            for sub in folder.rglob("*"):
                if sub.is_dir() and not sub.name.startswith("."):
                    inotify.add_watch(sub, mask)

    async def _watch_polling(self, folder: Path, ctx: SensorContext) -> None:
        """Elsewhere: watchfiles, which checks for changes every ``step_ms``."""
        from watchfiles import Change, awatch

        async for changes in awatch(
            folder,
            recursive=self.spec.recursive,
            step=self.step_ms,
            debounce=1000,
            watch_filter=lambda change, _path: change != Change.deleted,
            # awatch's thread notices cancellation only when it returns (after 5 s by
            # default), which held every shutdown up that long.
            rust_timeout=250,
        ):
            for _change, raw in changes:
                path = Path(raw)
                if self.matches(folder, path):
                    self._note(path, ctx)

    async def _rescan(self, folder: Path, ctx: SensorContext) -> None:
        while True:
            self._scan(folder, ctx)
            ctx.set_health("watching", str(folder))
            await ctx.clock.sleep(self.spec.rescan)

    async def _settle(self, ctx: SensorContext) -> None:
        settle = self.spec.settle
        while True:
            now = ctx.clock.monotonic()
            for path in [p for p, s in self._pending.items() if now - s.since >= settle]:
                await self._emit_if_stable(path, ctx)
            if self._pending:
                deadline = min(s.since for s in self._pending.values()) + settle
                await self._sleep_or_wake(ctx, max(deadline - now, 0.0))
            else:
                await self._sleep_or_wake(ctx, None)

    async def _sleep_or_wake(self, ctx: SensorContext, seconds: float | None) -> None:
        if not self._wake.is_set():
            async with anyio.create_task_group() as tg:

                async def sleeper(seconds: float) -> None:
                    await ctx.clock.sleep(seconds)
                    tg.cancel_scope.cancel()

                async def waker() -> None:
                    await self._wake.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(waker)
                if seconds is not None:
                    tg.start_soon(sleeper, seconds)
        self._wake = anyio.Event()

    async def _emit_if_stable(self, path: Path, ctx: SensorContext) -> None:
        seen = self._pending.pop(path)
        state = _file_state(path)
        if state is None:
            return
        if state != (seen.size, seen.mtime_ns):
            self._pending[path] = _Seen(*state, since=ctx.clock.monotonic())
            return
        size, mtime_ns = state
        event = Event(
            type=FILE_ARRIVED,
            source=ctx.source,
            id=content_id(path, size, mtime_ns),
            subject=path.name,
            data={
                "path": str(path),
                "name": path.name,
                "size": size,
                "mtime": datetime.fromtimestamp(mtime_ns / 1e9, UTC).isoformat(),
            },
        )
        await ctx.emit(event)
        self._emitted[path] = state
