"""``shell:`` tasks: a command template run in its own process group, output logged.

Every value rendered into the command is shell-quoted, so data (a webhook
body, a file name) can never become code.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import Any, ClassVar

import anyio
from anyio.abc import ByteReceiveStream, Process
from pydantic import Field

from reactor.actions import LogStream, TaskRequest
from reactor.durations import Duration
from reactor.errors import ActionError, ExpressionError
from reactor.expressions import CompiledValue, Template
from reactor.recovery import RUN_ID_VARIABLE
from reactor.specs import TaskSpec

__all__ = ["ShellAction", "ShellTaskSpec", "kill_group"]

_OUTPUT_LIMIT = 1 << 20
_TAIL_LINES = 5


class ShellTaskSpec(TaskSpec):
    type_key: ClassVar[str] = "shell"

    shell: str = Field(min_length=1)
    env: dict[str, str] = {}
    cwd: str | None = None
    kill_grace: Duration = 5.0


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a whole process group; a group that is already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def _pump(
    stream: ByteReceiveStream | None, name: LogStream, request: TaskRequest, keep: list[str]
) -> None:
    if stream is None:
        return
    pending = b""
    async for chunk in stream:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace").rstrip("\r")
            request.log(name, line)
            keep.append(line)
    if pending:
        line = pending.decode(errors="replace")
        request.log(name, line)
        keep.append(line)


class ShellAction:
    """Runs ``/bin/sh -c`` on the rendered command; exit code 0 is success."""

    def __init__(self, spec: ShellTaskSpec, base_dir: Path) -> None:
        try:
            self.command = Template(spec.shell, shell=True)
        except ExpressionError as exc:
            raise ExpressionError(str(exc), ("shell",)) from exc
        try:
            self.env = CompiledValue(spec.env)
        except ExpressionError as exc:
            raise ExpressionError(str(exc), ("env",)) from exc
        self.cwd = base_dir / spec.cwd if spec.cwd else base_dir
        self.kill_grace = spec.kill_grace

    async def execute(self, request: TaskRequest) -> Any:
        try:
            command = str(self.command.render(request.scope))
            extra = {k: str(v) for k, v in self.env.render(request.scope).items()}
        except ExpressionError as exc:
            raise ActionError(f"cannot render command: {exc}") from exc
        env = {
            **os.environ,
            **extra,
            RUN_ID_VARIABLE: request.run_id,
            "REACTOR_TASK_ID": request.task_id,
        }
        stdout: list[str] = []
        stderr: list[str] = []
        try:
            process = await anyio.open_process(
                ["/bin/sh", "-c", command],
                stdin=subprocess.DEVNULL,
                cwd=self.cwd,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise ActionError(f"cannot start shell in {self.cwd}: {exc.strerror}") from exc
        try:
            if request.report_process is not None:
                await request.report_process(process.pid)
            async with anyio.create_task_group() as tg:
                tg.start_soon(_pump, process.stdout, "stdout", request, stdout)
                tg.start_soon(_pump, process.stderr, "stderr", request, stderr)
                code = await process.wait()
                # Background children still holding the pipes must not keep the task alive.
                kill_group(process.pid)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._stop(process)
            raise
        if code != 0:
            tail = "; ".join(stderr[-_TAIL_LINES:])
            reason = f"exit code {code}" if code > 0 else f"killed by signal {-code}"
            raise ActionError(f"{reason}: {tail}" if tail else reason)
        text = "\n".join(stdout).strip()
        return text[-_OUTPUT_LIMIT:]

    async def _stop(self, process: Process) -> None:
        kill_group(process.pid, signal.SIGTERM)
        with anyio.move_on_after(self.kill_grace):
            await process.wait()
            return
        kill_group(process.pid, signal.SIGKILL)
        await process.wait()
