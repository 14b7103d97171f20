"""``shell:`` tasks: a command template run in its own process group, output logged.

Every value rendered into the command is shell-quoted, so data (a webhook
body, a file name) can never become code.
"""

from __future__ import annotations

import contextlib
import json
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


def _env_text(value: Any) -> str:
    """An env value as a template renders it: lists and objects as JSON, nothing as ""."""
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return "" if value is None else str(value)


_TAGS = {"{{": "}}", "{%": "%}", "{#": "#}"}


def _quoted_placeholder(source: str) -> str | None:
    """The first ``{{ }}`` written inside '...' or "..." of a command, if any.

    There its shell-quoting is undone ("'$(x)'" still runs x), so data would become code.
    """
    quote = ""
    i = 0
    while i < len(source):
        tag = source[i : i + 2]
        if tag in _TAGS:
            end = source.find(_TAGS[tag], i + 2)
            end = len(source) if end < 0 else end + 2
            if tag == "{{" and quote:
                return source[i:end]
            i = end
            continue
        char = source[i]
        if char == "\\" and quote != "'":
            i += 2
            continue
        if char == "#" and not quote and (i == 0 or source[i - 1] in " \t\n;&|()"):
            newline = source.find("\n", i)
            i = len(source) if newline < 0 else newline
            continue
        if char in "'\"" and quote in ("", char):
            quote = "" if quote else char
        i += 1
    return None


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
        if (quoted := _quoted_placeholder(spec.shell)) is not None:
            raise ExpressionError(
                f"{quoted} is inside quotes; remove them: every value is shell-quoted already,"
                " and quotes around it would let its text run as code (or pass it in env:)",
                ("shell",),
            )
        try:
            self.env = CompiledValue(spec.env)
        except ExpressionError as exc:
            raise ExpressionError(str(exc), ("env",)) from exc
        self.cwd = base_dir / spec.cwd if spec.cwd else base_dir
        self.kill_grace = spec.kill_grace

    async def execute(self, request: TaskRequest) -> Any:
        try:
            command = str(self.command.render(request.scope))
            extra = {k: _env_text(v) for k, v in self.env.render(request.scope).items()}
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
            # Shielded: cancelled half-way, asyncio kills only the shell and leaves its
            # children running. Once started, a cancel below kills the whole group.
            with anyio.CancelScope(shield=True):
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
        # Also when the shell went quickly: a child that ignores SIGTERM must not outlive it.
        kill_group(process.pid, signal.SIGKILL)
        await process.wait()
