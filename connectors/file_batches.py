"""``on: file`` with ``complete:``: one event per folder once a completion rule says it is whole."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from connectors.files import (
    FILE_BATCH,
    CompletionSpec,
    FileMatcher,
    FileTriggerSpec,
    file_record,
    file_state,
    relative_to,
)
from reactor.events import Event, content_id
from reactor.sensors import SensorContext

__all__ = ["BatchCollector", "ManifestEntry", "ManifestError", "parse_manifest"]

logger = logging.getLogger("reactor.files")


class ManifestError(ValueError):
    """A manifest that cannot be read as a list of expected files."""


@dataclass(frozen=True)
class ManifestEntry:
    """One expected file: its path inside the batch folder and, if given, its size."""

    name: str
    size: int | None = None


def parse_manifest(text: str, *, recursive: bool) -> list[ManifestEntry]:
    """The files a manifest lists.

    A manifest is JSON: a list of names (``["a.csv", "b.csv"]``), of objects
    (``[{"name": "a.csv", "size": 120}]``), or an object with such a list under
    ``files``. Raises ``ManifestError`` saying what is wrong.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    if isinstance(data, dict):
        if "files" not in data:
            raise ManifestError("a manifest object needs a 'files' list")
        data = data["files"]
    if not isinstance(data, list):
        raise ManifestError("a manifest must be a list of file names or an object with 'files'")
    if not data:
        raise ManifestError("the manifest lists no files")
    entries = []
    for index, item in enumerate(data):
        entry = _manifest_entry(item, index)
        name = PurePosixPath(entry.name)
        if name.is_absolute() or ".." in name.parts or not name.parts:
            raise ManifestError(f"files[{index}]: {entry.name!r} is not a path inside the folder")
        if len(name.parts) > 1 and not recursive:
            raise ManifestError(
                f"files[{index}]: {entry.name!r} is in a subfolder; set recursive: true"
            )
        entries.append(ManifestEntry(name.as_posix(), entry.size))
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ManifestError(f"the manifest lists {', '.join(map(repr, twice))} more than once")
    return entries


def _manifest_entry(item: Any, index: int) -> ManifestEntry:
    if isinstance(item, str) and item:
        return ManifestEntry(item)
    if isinstance(item, dict):
        name = item.get("name", item.get("path"))
        size = item.get("size")
        if not isinstance(name, str) or not name:
            raise ManifestError(f"files[{index}]: an entry needs a 'name'")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise ManifestError(f"files[{index}]: 'size' must be a number of bytes")
        return ManifestEntry(name, size)
    raise ManifestError(f"files[{index}]: expected a file name or an object with 'name'")


@dataclass
class _Entry:
    size: int
    mtime_ns: int
    since: float
    #: Whether it is one of the batch's files (matches ``pattern``, not the marker/manifest).
    listed: bool


@dataclass
class _Batch:
    folder: Path
    entries: dict[Path, _Entry] = field(default_factory=dict)
    #: How many entries are listed (kept up to date so most checks need no walk).
    listed: int = 0
    last_change: float = 0.0
    due: float | None = None
    emitted_id: str | None = None
    #: ``on_change: ignore`` and emitted: nothing it does matters any more.
    done: bool = False
    manifest: tuple[tuple[int, int], list[ManifestEntry] | str] | None = None


@dataclass(frozen=True)
class _Wait:
    until: float | None


class BatchCollector:
    """Folders directly in the watched folder, each emitted once its rule says it is complete."""

    def __init__(self, spec: FileTriggerSpec, batch: CompletionSpec, matcher: FileMatcher) -> None:
        self.spec = spec
        self.batch = batch
        self.matcher = matcher
        self.depth = None if spec.recursive else 2
        self.problems: dict[Path, str] = {}
        self._batches: dict[Path, _Batch] = {}
        #: Batches to look at on the next step (something changed), and those waiting
        #: for a time (``due``): a step looks at these only, however many batches there are.
        self._dirty: set[Path] = set()
        self._timed: set[Path] = set()
        self._logged: dict[Path, str] = {}

    def _role(self, inner: PurePosixPath, relative: PurePosixPath) -> bool | None:
        """``True``: a file of the batch; ``False``: tracked, not listed; ``None``: not tracked."""
        name = inner.as_posix()
        if name in (self.batch.marker, self.batch.manifest):
            return False
        if self.matcher.matches(relative):
            return True
        # A manifest may name files the pattern does not.
        return False if self.batch.manifest is not None else None

    def note(self, folder: Path, path: Path, now: float) -> bool:
        relative = relative_to(folder, path)
        if relative is None or len(relative.parts) < 2:
            return False  # files directly in the folder belong to no batch
        if self.depth is not None and len(relative.parts) != self.depth:
            return False
        top = PurePosixPath(relative.parts[0])
        if top.name.startswith(".") or self.matcher.ignored(top):
            return False  # a hidden folder is one still being assembled
        listed = self._role(PurePosixPath(*relative.parts[1:]), relative)
        if listed is None:
            return False
        batch_folder = folder / relative.parts[0]
        batch = self._batches.get(batch_folder)
        if batch is None:
            batch = self._batches[batch_folder] = _Batch(batch_folder)
        if batch.done:
            return False
        state = file_state(path)
        entry = batch.entries.get(path)
        if state is None:
            if entry is None:
                return False
            self._drop(batch, path)
        elif entry is not None and (entry.size, entry.mtime_ns) == state:
            return False
        else:
            self._put(batch, path, _Entry(*state, since=now, listed=listed))
        if listed:
            batch.last_change = now
        self._dirty.add(batch.folder)
        return True

    def _put(self, batch: _Batch, path: Path, entry: _Entry) -> None:
        old = batch.entries.get(path)
        batch.listed += entry.listed - (old.listed if old is not None else False)
        batch.entries[path] = entry

    def _drop(self, batch: _Batch, path: Path) -> None:
        old = batch.entries.pop(path, None)
        if old is not None:
            batch.listed -= old.listed

    def forget_missing(self, folder: Path, present: set[Path]) -> None:
        for batch in self._batches.values():
            gone = [p for p in batch.entries if p not in present]
            for path in gone:
                self._drop(batch, path)
            if gone:
                self._dirty.add(batch.folder)

    async def step(self, ctx: SensorContext) -> float | None:
        now = ctx.clock.monotonic()
        due = {p for p in self._timed if (self._batches[p].due or 0.0) <= now}
        looking, self._dirty = self._dirty | due, set()
        for folder in sorted(looking):
            batch = self._batches[folder]
            batch.due = None
            self._timed.discard(folder)
            if batch.done:
                continue
            outcome = self._evaluate(batch, now)
            if isinstance(outcome, _Wait):
                if outcome.until is not None:
                    batch.due = outcome.until
                    self._timed.add(folder)
            else:
                await self._emit(batch, outcome, ctx)
        if self._dirty:
            return 0.0
        dues = [self._batches[p].due or 0.0 for p in self._timed]
        return max(min(dues) - ctx.clock.monotonic(), 0.0) if dues else None

    # What each rule says

    def _evaluate(self, batch: _Batch, now: float) -> list[Path] | _Wait:
        """The batch's files if it is complete now, else when to look again."""
        settle = self.spec.settle

        def files() -> list[Path]:
            return sorted(p for p, e in batch.entries.items() if e.listed)

        def settled_at(path: Path) -> float:
            return batch.entries[path].since + settle

        if self.batch.count is not None:
            # Cheap first: most changes of a batch on its way leave it short.
            if batch.listed < self.batch.count:
                return _Wait(None)
            listed = files()
            ready = [p for p in listed if settled_at(p) <= now]
            if len(ready) >= self.batch.count:
                return ready
            waiting = [settled_at(p) for p in listed if settled_at(p) > now]
            return _Wait(min(waiting) if waiting else None)

        if self.batch.quiet is not None:
            if not batch.listed:
                return _Wait(None)
            # Every listed file changed last at or before ``last_change``.
            at = batch.last_change + max(self.batch.quiet, settle)
            return files() if at <= now else _Wait(at)

        if self.batch.marker is not None:
            marker = batch.folder / self.batch.marker
            if marker not in batch.entries:
                return _Wait(None)
            listed = files()
            at = max(settled_at(p) for p in [marker, *listed])
            return listed if at <= now else _Wait(at)

        assert self.batch.manifest is not None
        return self._evaluate_manifest(batch, now)

    def _evaluate_manifest(self, batch: _Batch, now: float) -> list[Path] | _Wait:
        assert self.batch.manifest is not None
        settle = self.spec.settle
        path = batch.folder / self.batch.manifest
        entry = batch.entries.get(path)
        if entry is None:
            self._clear_problem(batch.folder)
            return _Wait(None)
        if entry.since + settle > now:
            return _Wait(entry.since + settle)
        state = (entry.size, entry.mtime_ns)
        if batch.manifest is None or batch.manifest[0] != state:
            try:
                text = path.read_text(encoding="utf-8")
                parsed: list[ManifestEntry] | str = parse_manifest(
                    text, recursive=self.spec.recursive
                )
            except ManifestError as exc:
                parsed = str(exc)
            except (OSError, UnicodeDecodeError) as exc:
                parsed = f"cannot be read ({exc})"
            batch.manifest = (state, parsed)
        parsed = batch.manifest[1]
        if isinstance(parsed, str):
            self._report(batch.folder, f"manifest {path}: {parsed}")
            return _Wait(None)
        waiting: list[float] = []
        files = []
        for expected in parsed:
            file = batch.folder / expected.name
            got = batch.entries.get(file)
            if got is None:
                self._clear_problem(batch.folder)
                return _Wait(None)
            if got.since + settle > now:
                waiting.append(got.since + settle)
            elif expected.size is not None and got.size != expected.size:
                self._report(
                    batch.folder,
                    f"manifest {path}: {expected.name} has {got.size} bytes,"
                    f" the manifest says {expected.size}",
                )
                return _Wait(None)
            files.append(file)
        self._clear_problem(batch.folder)
        if waiting:
            return _Wait(max(waiting))
        return sorted(files)

    # Health

    def _report(self, where: Path, message: str) -> None:
        self.problems[where] = message
        if self._logged.get(where) != message:
            self._logged[where] = message
            logger.warning("file batch %s not complete: %s", where, message)

    def _clear_problem(self, where: Path) -> None:
        self.problems.pop(where, None)
        self._logged.pop(where, None)

    # The event

    async def _emit(self, batch: _Batch, files: list[Path], ctx: SensorContext) -> None:
        now = ctx.clock.monotonic()
        records = []
        versions: list[tuple[str, int, int]] = []
        changed = False
        for path in files:
            state = file_state(path)
            entry = batch.entries.get(path)
            if entry is None or state != (entry.size, entry.mtime_ns):
                # Changed or gone since it was seen: the rule is asked again once it settles.
                if state is None:
                    self._drop(batch, path)
                elif entry is not None:
                    self._put(batch, path, _Entry(*state, since=now, listed=entry.listed))
                changed = True
                continue
            name = path.relative_to(batch.folder).as_posix()
            records.append(file_record(path, *state, name=name))
            versions.append((name, *state))
        if changed:
            batch.last_change = now
            self._dirty.add(batch.folder)
            return
        # With ``on_change: ignore`` a folder is one batch, whatever lands in it later;
        # with ``retrigger`` each new content is one. The stored event's id makes that
        # hold across restarts too.
        if self.spec.on_change == "ignore":
            event_id = content_id(batch.folder)
        else:
            event_id = content_id(batch.folder, *versions)
        if event_id == batch.emitted_id:
            return
        event = Event(
            type=FILE_BATCH,
            source=ctx.source,
            id=event_id,
            subject=batch.folder.name,
            data={"path": str(batch.folder), "name": batch.folder.name, "files": records},
        )
        await ctx.emit(event)
        batch.emitted_id = event_id
        if self.spec.on_change == "ignore":
            batch.done = True
            batch.entries.clear()
            batch.listed = 0
            batch.manifest = None
