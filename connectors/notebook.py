"""``notebook:`` tasks: a Jupyter notebook run by papermill in a child process group.

The executed notebook is the task's artifact; the output is ``{"notebook": its path,
"outputs": the value of the cell tagged outputs}`` (see :mod:`connectors.notebook_worker`).
Papermill and the kernel run in the child: a timeout or a cancel stops both.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import sys
import tempfile
import uuid
from collections import deque
from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.to_thread
from pydantic import Field, field_validator

from connectors.notebook_worker import NEEDS_EXTRA
from connectors.process import child_report, start_group, supervise
from reactor.actions import TaskRequest
from reactor.errors import ActionError, ExpressionError
from reactor.expressions import CompiledValue, Template
from reactor.lineage import lineage_env
from reactor.recovery import RUN_ID_VARIABLE
from reactor.specs import TaskSpec

__all__ = ["NotebookAction", "NotebookTaskSpec"]

_WORKER = Path(__file__).with_name("notebook_worker.py")
#: Papermill stops the kernel at SIGTERM's default exit only if it gets the chance; this long.
_KILL_GRACE = 5.0
_TAIL_LINES = 5
#: Set to a fresh id for each attempt. Jupyter starts the kernel in a session of its own,
#: out of reach of the worker's group: the kernel is found and stopped by this instead.
_ATTEMPT_VARIABLE = "REACTOR_NOTEBOOK_ATTEMPT"


class NotebookTaskSpec(TaskSpec):
    type_key: ClassVar[str] = "notebook"

    #: The ``.ipynb`` file, relative to the pipeline's folder.
    notebook: str = Field(min_length=1)
    #: Injected by papermill after the cell tagged ``parameters``; strings are templates.
    parameters: dict[str, Any] = {}
    kernel: str = Field("python3", min_length=1)
    #: Where the executed notebook goes (a template, relative to the pipeline's folder);
    #: by default ``.reactor/artifacts/<run id>/<task id>.ipynb`` there.
    output: str | None = Field(None, min_length=1)

    @field_validator("notebook")
    @classmethod
    def _ipynb(cls, value: str) -> str:
        if not value.endswith(".ipynb"):
            raise ValueError(f"notebook names a .ipynb file, got {value!r}")
        return value


def _kill_marked(marker: bytes) -> int:
    """SIGKILL every process whose environment holds ``marker``; how many (run in a thread)."""
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed


def _has_papermill() -> bool:
    try:
        return importlib.util.find_spec("papermill") is not None
    except (ImportError, ValueError):
        return False


class NotebookAction:
    """Runs the notebook with the rendered ``parameters`` and saves the executed copy."""

    def __init__(self, spec: NotebookTaskSpec, base_dir: Path) -> None:
        self.notebook = base_dir / Path(spec.notebook).expanduser()
        self.base_dir = base_dir
        self.kernel = spec.kernel
        try:
            self.parameters = CompiledValue(spec.parameters)
        except ExpressionError as exc:
            raise ExpressionError(str(exc), ("parameters",)) from exc
        try:
            self.output = None if spec.output is None else Template(spec.output)
        except ExpressionError as exc:
            raise ExpressionError(str(exc), ("output",)) from exc

    def _output_path(self, request: TaskRequest) -> Path:
        if self.output is None:
            return (
                self.base_dir
                / ".reactor"
                / "artifacts"
                / request.run_id
                / (f"{request.task_id}.ipynb")
            )
        try:
            rendered = self.output.render(request.scope)
        except ExpressionError as exc:
            raise ActionError(f"cannot render output: {exc}") from exc
        text = "" if rendered is None else str(rendered).strip()
        if not text:
            raise ActionError(f"output {self.output.source!r} renders as an empty path")
        return self.base_dir / Path(text).expanduser()

    async def execute(self, request: TaskRequest) -> Any:
        try:
            parameters = self.parameters.render(request.scope)
        except ExpressionError as exc:
            raise ActionError(f"cannot render parameters: {exc}") from exc
        output = self._output_path(request)
        if not await anyio.to_thread.run_sync(_has_papermill):
            raise ActionError(NEEDS_EXTRA)
        if not await anyio.Path(self.notebook).is_file():
            raise ActionError(f"notebook {self.notebook} does not exist")
        try:
            await anyio.Path(output.parent).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ActionError(
                f"cannot create {output.parent} for the executed notebook: {exc.strerror}"
            ) from exc
        try:
            call = json.dumps(
                {
                    "notebook": str(self.notebook),
                    "output": str(output),
                    "parameters": parameters,
                    "kernel": self.kernel,
                    "cwd": str(self.base_dir),
                }
            )
        except (TypeError, ValueError) as exc:
            raise ActionError(f"parameters must be JSON values: {exc}") from exc
        try:
            fd, name = tempfile.mkstemp(prefix="reactor-notebook-", suffix=".json")
        except OSError as exc:
            raise ActionError(
                f"cannot create a result file in {tempfile.gettempdir()}: {exc.strerror}"
            ) from exc
        os.close(fd)
        try:
            outputs = await self._run_child(request, call.encode(), Path(name), output)
        finally:
            # Shielded: a timed-out or cancelled task must not leave its file behind.
            with anyio.CancelScope(shield=True):
                await anyio.Path(name).unlink(missing_ok=True)
        return {"notebook": str(output), "outputs": outputs}

    async def _run_child(
        self, request: TaskRequest, call: bytes, report_file: Path, output: Path
    ) -> Any:
        attempt = uuid.uuid4().hex
        env = {
            **os.environ,
            RUN_ID_VARIABLE: request.run_id,
            "REACTOR_TASK_ID": request.task_id,
            _ATTEMPT_VARIABLE: attempt,
            **lineage_env(),
        }
        # -P: the worker's own folder (connectors/) must not shadow the notebook's imports.
        command = [sys.executable, "-P", str(_WORKER), str(report_file)]
        stdout: deque[str] = deque(maxlen=1)
        stderr: deque[str] = deque(maxlen=_TAIL_LINES)
        try:
            process = await start_group(command, cwd=self.base_dir, env=env, stdin=True)
        except OSError as exc:
            raise ActionError(f"cannot start {sys.executable}: {exc.strerror}") from exc
        try:
            code = await supervise(
                process, request, grace=_KILL_GRACE, stdout=stdout, stderr=stderr, stdin=call
            )
        finally:
            with anyio.CancelScope(shield=True):
                marker = f"{_ATTEMPT_VARIABLE}={attempt}".encode()
                await anyio.to_thread.run_sync(_kill_marked, marker)
                if await anyio.Path(output).is_file():
                    request.log("system", f"executed notebook: {output}")
        report = await child_report(report_file, code, stderr, "papermill")
        if "outputs" in report:
            return report["outputs"]
        if "raised" in report:
            raised = report["raised"]
            raise ActionError(
                f"cell {raised['cell']} raised {raised['ename']}: {raised['evalue']}",
                exceptions=(raised["ename"],),
            )
        raise ActionError(report["failed"])
