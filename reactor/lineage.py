"""Lineage reported by a running task: ``reactor.lineage.report(inputs=..., outputs=...)``
in Python, or the JSON file ``$REACTOR_LINEAGE`` names in a child process."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

import anyio

from reactor.assets import normalize_asset
from reactor.errors import ActionError

__all__ = ["LINEAGE_VARIABLE", "TaskLineage", "lineage_env", "report"]

#: The environment variable naming the file a task process writes its lineage to.
LINEAGE_VARIABLE = "REACTOR_LINEAGE"
#: The largest ``$REACTOR_LINEAGE`` file read.
_FILE_LIMIT = 4 << 20

_T = TypeVar("_T")


class TaskLineage:
    """The assets one task attempt reads and writes: declared (rendered for the attempt)
    and reported while it runs."""

    def __init__(self, inputs: Sequence[str] = (), outputs: Sequence[str] = ()) -> None:
        self.inputs: list[str] = list(dict.fromkeys(inputs))
        self.outputs: list[str] = list(dict.fromkeys(outputs))
        self._file: str | None = None

    def add(self, inputs: Iterable[str] = (), outputs: Iterable[str] = ()) -> None:
        """Add reported assets (normalised); raises :class:`ValueError` naming a bad one."""
        new_inputs = [normalize_asset(a) for a in _strings(inputs, "inputs")]
        new_outputs = [normalize_asset(a) for a in _strings(outputs, "outputs")]
        for asset in new_inputs:
            if asset not in self.inputs:
                self.inputs.append(asset)
        for asset in new_outputs:
            if asset not in self.outputs:
                self.outputs.append(asset)

    def child_env(self) -> dict[str, str]:
        """``{"REACTOR_LINEAGE": path}`` of a fresh file, made on first use; the attempt
        reads it once its action returns, and removes it in every case."""
        if self._file is None:
            try:
                fd, name = tempfile.mkstemp(prefix="reactor-lineage-", suffix=".json")
            except OSError as exc:
                raise ActionError(
                    f"cannot create the ${LINEAGE_VARIABLE} file in {tempfile.gettempdir()}:"
                    f" {exc.strerror}"
                ) from exc
            os.close(fd)
            self._file = name
        return {LINEAGE_VARIABLE: self._file}

    async def run(self, call: Callable[[], Awaitable[_T]]) -> _T:
        """Await ``call()`` with this lineage current (what :func:`report` adds to), then
        read what a child process wrote to ``$REACTOR_LINEAGE``; raises
        :class:`ActionError` when that file is not valid."""
        token = _CURRENT.set(self)
        try:
            result = await call()
            if self._file is not None:
                await anyio.to_thread.run_sync(self._read_file, Path(self._file))
            return result
        finally:
            _CURRENT.reset(token)
            if self._file is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.Path(self._file).unlink(missing_ok=True)

    def _read_file(self, path: Path) -> None:
        try:
            data = _read_report(path)
        except ValueError as exc:
            raise ActionError(f"${LINEAGE_VARIABLE}: {exc}", permanent=True) from exc
        if data is None:
            return
        try:
            self.add(data.get("inputs", []), data.get("outputs", []))
        except ValueError as exc:
            raise ActionError(f"${LINEAGE_VARIABLE}: {exc}", permanent=True) from exc


def _strings(values: Iterable[str], key: str) -> list[str]:
    if isinstance(values, str):
        return [values]
    found = list(values)
    for value in found:
        if not isinstance(value, str):
            raise ValueError(f"{key}: an asset is a string (a URI or a name), got {value!r}")  # noqa: TRY004
    return found


def _read_report(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path`` (``None`` when empty or gone); :class:`ValueError`
    says what is wrong with it."""
    try:
        with path.open("rb") as file:
            data = file.read(_FILE_LIMIT + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from exc
    if len(data) > _FILE_LIMIT:
        raise ValueError(f"more than the {_FILE_LIMIT >> 20} MiB a task may write there")
    if not data.strip():
        return None
    try:
        report = json.loads(data)
    except ValueError as exc:
        raise ValueError(
            f'not valid JSON ({exc}); write {{"inputs": [...], "outputs": [...]}}'
        ) from exc
    if not isinstance(report, dict) or set(report) - {"inputs", "outputs"}:
        raise ValueError(
            f'write a JSON object {{"inputs": [...], "outputs": [...]}}, got {str(report)[:200]}'
        )
    for key in ("inputs", "outputs"):
        if not isinstance(report.get(key, []), list):
            raise ValueError(f"{key} must be a list of assets, got {report[key]!r}")  # noqa: TRY004
    return report


_CURRENT: ContextVar[TaskLineage | None] = ContextVar("reactor_lineage", default=None)


def report(*, inputs: Iterable[str] = (), outputs: Iterable[str] = ()) -> bool:
    """Tell Reactor which assets the running task read (``inputs``) and wrote
    (``outputs``), as URIs or names (docs/lineage.md); recorded if the attempt succeeds.

    Works in a ``python:`` task in the service and in a child process Reactor started
    (through ``$REACTOR_LINEAGE``). Outside a task (a unit test of the function) it
    records nothing and returns ``False``. Raises :class:`ValueError` for a malformed asset.
    """
    current = _CURRENT.get()
    if current is not None:
        current.add(inputs, outputs)
        return True
    path = os.environ.get(LINEAGE_VARIABLE)
    if not path:
        return False
    checked = TaskLineage()
    checked.add(inputs, outputs)
    earlier = _read_report(Path(path)) or {}
    merged = {
        "inputs": list(dict.fromkeys([*earlier.get("inputs", []), *checked.inputs])),
        "outputs": list(dict.fromkeys([*earlier.get("outputs", []), *checked.outputs])),
    }
    Path(path).write_text(json.dumps(merged), encoding="utf-8")
    return True


def lineage_env() -> dict[str, str]:
    """For a connector starting a task's process: ``{"REACTOR_LINEAGE": path}`` while an
    attempt runs (the executor reads the file afterwards), else ``{}``."""
    current = _CURRENT.get()
    return {} if current is None else current.child_env()
