"""``python: module:function`` tasks: in a worker thread, awaited, or in a child process.

A thread cannot be stopped, so a plain function with a ``timeout:`` (and any function
with ``isolated: true`` or a ``venv:``) runs in a child process whose whole group a
timeout or a cancel kills; see :mod:`connectors.python_worker`.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import tempfile
import threading
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.to_thread
from pydantic import Field

from connectors.output import captured_output
from connectors.process import child_report, start_group, supervise
from connectors.python_worker import FunctionNotFound, OutputNotJSON, load_function, to_json_value
from reactor.actions import TaskRequest
from reactor.errors import ActionError, ExpressionError, exception_names
from reactor.expressions import CompiledValue
from reactor.lineage import lineage_env
from reactor.recovery import RUN_ID_VARIABLE
from reactor.specs import TaskSpec

__all__ = ["PythonAction", "PythonTaskSpec"]

_IMPORT_LOCK = threading.Lock()
_WORKER = Path(__file__).with_name("python_worker.py")
#: Python dies at SIGTERM unless the function handles it; this is how long it may take.
_KILL_GRACE = 5.0
_TAIL_LINES = 5


class PythonTaskSpec(TaskSpec):
    type_key: ClassVar[str] = "python"

    python: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    args: dict[str, Any] = {}
    #: Run in a child process even without a timeout (a plain function with one always does).
    isolated: bool = False
    #: A virtualenv (relative to the pipeline's folder) whose ``bin/python`` runs the function
    #: in a child process. Checked at run time: the venv may be built after the pipeline loads.
    venv: str | None = Field(None, min_length=1)


def _import(target: str, base_dir: Path) -> Callable[..., Any]:
    with _IMPORT_LOCK:
        try:
            return load_function(target, str(base_dir))
        except FunctionNotFound as exc:
            raise ActionError(str(exc)) from exc


def _output(value: Any) -> Any:
    try:
        return to_json_value(value)
    except OutputNotJSON as exc:
        raise ActionError(str(exc)) from exc


class PythonAction:
    """Calls the function with the rendered ``args`` as keyword arguments."""

    def __init__(self, spec: PythonTaskSpec, base_dir: Path) -> None:
        self.target = spec.python
        self.base_dir = base_dir
        self.venv = None if spec.venv is None else base_dir / Path(spec.venv).expanduser()
        self.isolated = spec.isolated or self.venv is not None
        self.has_timeout = spec.timeout is not None
        try:
            self.args = CompiledValue(spec.args)
        except ExpressionError as exc:
            raise ExpressionError(str(exc), ("args",)) from exc
        self._function: Callable[..., Any] | None = None

    async def _resolve(self) -> Callable[..., Any]:
        if self._function is None:
            self._function = await anyio.to_thread.run_sync(_import, self.target, self.base_dir)
        return self._function

    async def execute(self, request: TaskRequest) -> Any:
        try:
            kwargs = self.args.render(request.scope)
        except ExpressionError as exc:
            raise ActionError(f"cannot render args: {exc}") from exc
        if self.isolated:
            return await self._in_child(request, kwargs)
        function = await self._resolve()
        is_async = inspect.iscoroutinefunction(function)
        if self.has_timeout and not is_async:
            return await self._in_child(request, kwargs)

        def call() -> Any:
            with captured_output(request.log):
                return function(**kwargs)

        try:
            if is_async:
                with captured_output(request.log):
                    result = await function(**kwargs)
            else:
                result = await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
        except Exception as exc:
            for line in traceback.format_exc().rstrip().splitlines():
                request.log("stderr", line)
            raise ActionError(
                f"{type(exc).__name__}: {exc}", exceptions=exception_names(exc)
            ) from exc
        return _output(result)

    async def _in_child(self, request: TaskRequest, kwargs: dict[str, Any]) -> Any:
        try:
            call = json.dumps(
                {"target": self.target, "base_dir": str(self.base_dir), "kwargs": kwargs}
            )
        except (TypeError, ValueError) as exc:
            raise ActionError(f"args must be JSON values to reach a child process: {exc}") from exc
        try:
            fd, name = tempfile.mkstemp(prefix="reactor-python-", suffix=".json")
        except OSError as exc:
            raise ActionError(
                f"cannot create a result file in {tempfile.gettempdir()}: {exc.strerror}"
            ) from exc
        os.close(fd)
        try:
            return await self._run_child(request, call.encode(), Path(name))
        finally:
            # Shielded: a timed-out or cancelled task must not leave its file behind.
            with anyio.CancelScope(shield=True):
                await anyio.Path(name).unlink(missing_ok=True)

    async def _run_child(self, request: TaskRequest, call: bytes, report_file: Path) -> Any:
        env = {
            **os.environ,
            RUN_ID_VARIABLE: request.run_id,
            "REACTOR_TASK_ID": request.task_id,
            **lineage_env(),
        }
        python = sys.executable
        if self.venv is not None:
            python = await _venv_python(self.venv)
            # As `source bin/activate` would: programs the function starts are the venv's too.
            env["VIRTUAL_ENV"] = str(self.venv)
            env["PATH"] = os.pathsep.join(p for p in (str(self.venv / "bin"), env.get("PATH")) if p)
            env.pop("PYTHONHOME", None)
        # -P: the worker's own folder (connectors/) must not shadow the function's imports.
        # The worker imports only the standard library, so a venv without Reactor runs it.
        command = [python, "-P", str(_WORKER), str(report_file)]
        try:
            process = await start_group(command, cwd=None, env=env, stdin=True)
        except OSError as exc:
            raise ActionError(f"cannot start {python}: {exc.strerror}") from exc
        stdout: deque[str] = deque(maxlen=1)
        stderr: deque[str] = deque(maxlen=_TAIL_LINES)
        code = await supervise(
            process, request, grace=_KILL_GRACE, stdout=stdout, stderr=stderr, stdin=call
        )
        report = await child_report(report_file, code, stderr, "the function")
        if "output" in report:
            return report["output"]
        if "raised" in report:
            raised = report["raised"]
            for line in raised["traceback"].rstrip().splitlines():
                request.log("stderr", line)
            raise ActionError(
                f"{raised['type']}: {raised['message']}", exceptions=raised["exceptions"]
            )
        raise ActionError(report["failed"])


async def _venv_python(venv: Path) -> str:
    python = anyio.Path(venv / "bin" / "python")
    if not await python.is_file():
        raise ActionError(f"venv {venv} has no bin/python")
    return str(python)
