"""``on: file``: a run when a file matching a glob lands in a folder and stops growing."""

from __future__ import annotations

import fnmatch
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from stat import S_ISREG
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Protocol

import anyio
from anyio.abc import TaskStatus
from pydantic import Field, field_validator, model_validator

from reactor.durations import Duration
from reactor.events import Event, content_id
from reactor.sensors import SensorContext, sensor_source
from reactor.specs import EventFilter, Spec, TriggerSpec

if TYPE_CHECKING:
    from asyncinotify import Inotify, Mask

__all__ = [
    "FILE_ARRIVED",
    "FILE_BATCH",
    "CompletionSpec",
    "FileMatcher",
    "FileSensor",
    "FileTriggerSpec",
    "file_record",
    "file_state",
]

FILE_ARRIVED = "reactor.file.arrived"
FILE_BATCH = "reactor.file.batch"

Glob = Annotated[str, Field(min_length=1)]


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _relative_name(value: str | None, field: str) -> str | None:
    """A marker or manifest name: a path inside the batch folder."""
    if value is None:
        return None
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or value.endswith("/"):
        raise ValueError(f"{field}: {value!r} must be a file name inside the batch folder")
    return path.as_posix()


class CompletionSpec(Spec):
    """``complete:``: when a folder that arrives in pieces is complete (exactly one rule)."""

    marker: str | None = Field(None, min_length=1)
    manifest: str | None = Field(None, min_length=1)
    count: int | None = Field(None, ge=1)
    quiet: Duration | None = None

    RULES: ClassVar[tuple[str, ...]] = ("marker", "manifest", "count", "quiet")

    @field_validator("marker")
    @classmethod
    def _marker_name(cls, value: str | None) -> str | None:
        return _relative_name(value, "marker")

    @field_validator("manifest")
    @classmethod
    def _manifest_name(cls, value: str | None) -> str | None:
        return _relative_name(value, "manifest")

    @model_validator(mode="after")
    def _exactly_one_rule(self) -> CompletionSpec:
        given = [rule for rule in self.RULES if getattr(self, rule) is not None]
        if len(given) != 1:
            found = f"; found {' and '.join(f'{g!r}' for g in given)}" if given else ""
            raise ValueError(
                "complete: needs exactly one of 'marker:', 'manifest:', 'count:' or 'quiet:'"
                + found
            )
        if self.quiet is not None and self.quiet <= 0:
            raise ValueError("quiet: must be longer than 0s")
        return self

    @property
    def rule(self) -> str:
        return next(rule for rule in self.RULES if getattr(self, rule) is not None)


class FileTriggerSpec(TriggerSpec):
    """``on: file``: ``path`` (relative to the pipeline file), globs, ``settle``, ``complete``."""

    on: Literal["file"]
    path: str = Field(min_length=1)
    pattern: list[Glob] = Field(["*"], min_length=1)
    ignore: list[Glob] = []
    settle: Duration = 1.0
    recursive: bool = False
    rescan: Duration = 60.0
    on_change: Literal["ignore", "retrigger"] = "ignore"
    complete: CompletionSpec | None = None

    has_sensor: ClassVar[bool] = True

    _single_pattern = field_validator("pattern", mode="before")(_as_list)
    _single_ignore = field_validator("ignore", mode="before")(_as_list)

    @field_validator("rescan")
    @classmethod
    def _rescan_positive(cls, value: float) -> float:
        # A rescan of 0 would list the folder in a busy loop.
        if value <= 0:
            raise ValueError("rescan: must be longer than 0s")
        return value

    def event_filter(self, trigger_key: str) -> EventFilter:
        kind = FILE_ARRIVED if self.complete is None else FILE_BATCH
        return EventFilter(kind, sensor_source(trigger_key))


@dataclass(frozen=True)
class FileMatcher:
    """Which paths (relative to the watched folder) a trigger's ``pattern``/``ignore`` take.

    A glob without ``/`` is matched against the file name (``ignore``: against
    every name on the way, so ``tmp`` skips a folder ``tmp/`` too); a glob with
    ``/`` against the relative path (``ignore``: or one of its folders). Names
    starting with ``.`` only match a pattern that starts with ``.``.
    """

    patterns: tuple[str, ...] = ("*",)
    ignore: tuple[str, ...] = ()

    @classmethod
    def of(cls, spec: FileTriggerSpec) -> FileMatcher:
        return cls(tuple(spec.pattern), tuple(spec.ignore))

    @property
    def sees_hidden(self) -> bool:
        return any(p.startswith(".") for p in self.patterns)

    def ignored(self, relative: PurePosixPath) -> bool:
        parts = relative.parts
        for glob in self.ignore:
            if "/" in glob:
                glob = glob.rstrip("/")
                prefixes = ("/".join(parts[: i + 1]) for i in range(len(parts)))
                if any(fnmatch.fnmatchcase(prefix, glob) for prefix in prefixes):
                    return True
            elif any(fnmatch.fnmatchcase(part, glob) for part in parts):
                return True
        return False

    def matches(self, relative: PurePosixPath) -> bool:
        if not relative.parts or self.ignored(relative):
            return False
        hidden = any(part.startswith(".") for part in relative.parts)
        for pattern in self.patterns:
            if hidden and not pattern.startswith("."):
                continue
            target = relative.as_posix() if "/" in pattern else relative.name
            if fnmatch.fnmatchcase(target, pattern):
                return True
        return False


def file_state(path: Path) -> tuple[int, int] | None:
    """``(size, mtime_ns)`` of a regular file, or ``None`` (gone, or not a file)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    if not S_ISREG(stat.st_mode):
        return None
    return stat.st_size, stat.st_mtime_ns


def file_record(path: Path, size: int, mtime_ns: int, name: str | None = None) -> dict[str, Any]:
    """What an event says about one file: absolute ``path``, ``name``, ``size``, ``mtime``."""
    return {
        "path": str(path),
        "name": name or path.name,
        "size": size,
        "mtime": datetime.fromtimestamp(mtime_ns / 1e9, UTC).isoformat(),
    }


def relative_to(folder: Path, path: Path) -> PurePosixPath | None:
    try:
        return PurePosixPath(path.relative_to(folder).as_posix())
    except ValueError:
        return None


class Collector(Protocol):
    """What the sensor hands the paths it sees to: single files, or batches."""

    #: How many names deep below the folder a file it wants sits (``None``: any depth).
    depth: int | None
    #: Problems to show in the sensor's health (a broken manifest), by where they are.
    problems: dict[Path, str]

    def note(self, folder: Path, path: Path, now: float) -> bool:
        """Look at ``path`` (changed, new or gone); whether there is new work."""
        ...

    def forget_missing(self, folder: Path, present: set[Path]) -> None:
        """After a full listing: drop what is no longer there."""
        ...

    async def step(self, ctx: SensorContext) -> float | None:
        """Emit what is due; seconds until more may be due (``None``: not before a change)."""
        ...


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float


class _SingleFiles:
    """One event per file once it has settled (no ``complete:``)."""

    def __init__(self, spec: FileTriggerSpec, matcher: FileMatcher) -> None:
        self.spec = spec
        self.matcher = matcher
        self.depth = None if spec.recursive else 1
        self.problems: dict[Path, str] = {}
        self._pending: dict[Path, _Seen] = {}
        self._emitted: dict[Path, tuple[int, int]] = {}

    def note(self, folder: Path, path: Path, now: float) -> bool:
        relative = relative_to(folder, path)
        if relative is None or (self.depth is not None and len(relative.parts) != self.depth):
            return False
        if not self.matcher.matches(relative):
            return False
        state = file_state(path)
        if state is None:
            self._pending.pop(path, None)
            return False
        emitted = self._emitted.get(path)
        if emitted is not None and (self.spec.on_change == "ignore" or emitted == state):
            return False
        seen = self._pending.get(path)
        if seen is None or (seen.size, seen.mtime_ns) != state:
            self._pending[path] = _Seen(*state, since=now)
            return True
        return False

    def forget_missing(self, folder: Path, present: set[Path]) -> None:
        for path in [p for p in self._pending if p not in present]:
            del self._pending[path]

    async def step(self, ctx: SensorContext) -> float | None:
        settle = self.spec.settle
        now = ctx.clock.monotonic()
        for path in [p for p, s in self._pending.items() if now - s.since >= settle]:
            await self._emit_if_stable(path, ctx)
        if not self._pending:
            return None
        now = ctx.clock.monotonic()
        return max(min(s.since for s in self._pending.values()) + settle - now, 0.0)

    async def _emit_if_stable(self, path: Path, ctx: SensorContext) -> None:
        seen = self._pending.pop(path)
        state = file_state(path)
        if state is None:
            return
        if state != (seen.size, seen.mtime_ns):
            self._pending[path] = _Seen(*state, since=ctx.clock.monotonic())
            return
        size, mtime_ns = state
        # With ``on_change: ignore`` a path is one arrival, whatever is written to it
        # later; with ``retrigger`` each version is one. The stored event's id makes
        # that hold across restarts too.
        if self.spec.on_change == "ignore":
            event_id = content_id(path)
        else:
            event_id = content_id(path, size, mtime_ns)
        event = Event(
            type=FILE_ARRIVED,
            source=ctx.source,
            id=event_id,
            subject=path.name,
            data=file_record(path, size, mtime_ns),
        )
        await ctx.emit(event)
        self._emitted[path] = state


class FileSensor:
    """Watches one folder; emits each file (or each complete batch folder) once it has settled.

    Files already there at start count too. The event id is derived from the
    path (and with ``on_change: retrigger`` its size and mtime), so ingest
    dedupe makes each file trigger once, across restarts as well. A rescan
    every ``rescan`` catches anything the OS notification queue dropped.
    """

    #: Off Linux: how often watchfiles looks for changes (ms).
    step_ms: ClassVar[int] = 50

    def __init__(self, spec: FileTriggerSpec) -> None:
        self.spec = spec
        self.matcher = FileMatcher.of(spec)
        self.collector: Collector
        if spec.complete is None:
            self.collector = _SingleFiles(spec, self.matcher)
        else:
            # Imported here: file_batches builds on this module's matcher and records.
            from connectors.file_batches import BatchCollector

            self.collector = BatchCollector(spec, spec.complete, self.matcher)
        self._wake = anyio.Event()
        self._folder: Path | None = None

    def matches(self, folder: Path, path: Path) -> bool:
        """Whether ``path`` under ``folder`` is a file this trigger watches for."""
        relative = relative_to(folder, path)
        if relative is None:
            return False
        depth = self.collector.depth
        if depth is not None and len(relative.parts) != depth:
            return False
        return self.matcher.matches(relative)

    def _wants_folder(self, folder: Path, path: Path) -> bool:
        """Whether files under the subfolder ``path`` can matter (it is watched and listed)."""
        relative = relative_to(folder, path)
        if relative is None:
            return False
        depth = self.collector.depth
        if depth is not None and len(relative.parts) >= depth:
            return False
        if relative.name.startswith(".") and not self.matcher.sees_hidden:
            return False
        return not self.matcher.ignored(relative)

    def _walk(self, folder: Path, under: Path) -> Iterator[Path]:
        """Files below ``under`` (a folder in ``folder``) at depths this trigger looks at."""
        stack = [under]
        while stack:
            current = stack.pop()
            try:
                with os.scandir(current) as listing:
                    entries = sorted(listing, key=lambda e: e.name, reverse=True)
            except OSError:
                continue
            for entry in entries:
                path = Path(entry.path)
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if self._wants_folder(folder, path):
                            stack.append(path)
                    else:
                        yield path
                except OSError:
                    continue

    def _note(self, folder: Path, path: Path, ctx: SensorContext) -> None:
        if self.collector.note(folder, path, ctx.clock.monotonic()):
            self._wake.set()

    def _scan(self, folder: Path, ctx: SensorContext, under: Path | None = None) -> None:
        present = set()
        for path in sorted(self._walk(folder, under or folder)):
            present.add(path)
            self._note(folder, path, ctx)
        if under is None:
            self.collector.forget_missing(folder, present)
            self._wake.set()

    def _show_health(self, ctx: SensorContext) -> None:
        if self._folder is None:
            return
        problems = self.collector.problems
        if problems:
            ctx.set_health("failing", "; ".join(problems[key] for key in sorted(problems)))
        else:
            ctx.set_health("watching", str(self._folder))

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
            await self._collect(ctx)

    async def _watch_inotify(self, folder: Path, ctx: SensorContext) -> None:
        """Linux: inotify on the event loop, so a file is seen the moment it is written.

        A file counts when its writer closes it or it is moved in (an atomic
        rename); with a settle time, its creation starts the clock too.
        """
        from asyncinotify import Inotify, Mask  # a Linux-only dependency

        wanted = Mask.CLOSE_WRITE | Mask.MOVED_TO | Mask.CREATE | Mask.DELETE | Mask.MOVED_FROM
        with Inotify() as inotify:
            self._add_watches(inotify, folder, folder, wanted)
            async for event in inotify:
                if event.mask & Mask.Q_OVERFLOW:
                    self._scan(folder, ctx)
                    continue
                path = event.path
                if path is None:
                    continue
                if event.mask & Mask.ISDIR:
                    if event.mask & (Mask.CREATE | Mask.MOVED_TO) and self._wants_folder(
                        folder, path
                    ):
                        # Files may have landed in it before its watch was added.
                        self._add_watches(inotify, folder, path, wanted)
                        self._scan(folder, ctx, under=path)
                    continue
                if event.mask & Mask.CREATE and self.spec.settle == 0:
                    continue  # still being written: wait for its close
                self._note(folder, path, ctx)

    def _add_watches(self, inotify: Inotify, folder: Path, top: Path, mask: Mask) -> None:
        stack = [top]
        while stack:
            current = stack.pop()
            try:
                inotify.add_watch(current, mask)
                with os.scandir(current) as listing:
                    subfolders = [Path(e.path) for e in listing if e.is_dir(follow_symlinks=False)]
            except OSError:
                continue  # gone already
            stack += [sub for sub in subfolders if self._wants_folder(folder, sub)]

    async def _watch_polling(self, folder: Path, ctx: SensorContext) -> None:
        """Elsewhere: watchfiles, which checks for changes every ``step_ms``."""
        from watchfiles import awatch

        async for changes in awatch(
            folder,
            recursive=self.collector.depth != 1,
            step=self.step_ms,
            debounce=1000,
            # awatch's thread notices cancellation only when it returns (after 5 s by
            # default), which held every shutdown up that long.
            rust_timeout=250,
        ):
            for _change, raw in changes:
                self._changed(folder, Path(raw), ctx)

    def _changed(self, folder: Path, path: Path, ctx: SensorContext) -> None:
        if path.is_dir():
            if self._wants_folder(folder, path):
                self._scan(folder, ctx, under=path)
        else:
            self._note(folder, path, ctx)

    async def _rescan(self, folder: Path, ctx: SensorContext) -> None:
        while True:
            self._scan(folder, ctx)
            self._folder = folder
            self._show_health(ctx)
            await ctx.clock.sleep(self.spec.rescan)

    async def _collect(self, ctx: SensorContext) -> None:
        while True:
            delay = await self.collector.step(ctx)
            self._show_health(ctx)
            await self._sleep_or_wake(ctx, delay)

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
