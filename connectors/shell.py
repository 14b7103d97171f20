"""``shell:`` tasks: a command template run in its own process group, output logged.

Every value rendered into the command is shell-quoted, so data (a webhook
body, a file name) can never become code. The task's output is the JSON the
command wrote to the file ``$REACTOR_OUTPUT`` names, or else its last stdout line.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import anyio
from pydantic import Field

from connectors.process import exit_reason, kill_group, start_group, supervise
from reactor.actions import TaskRequest
from reactor.durations import Duration
from reactor.errors import ActionError, ExpressionError
from reactor.expressions import CompiledValue, Template
from reactor.lineage import lineage_env
from reactor.recovery import RUN_ID_VARIABLE
from reactor.specs import TaskSpec

__all__ = ["ShellAction", "ShellTaskSpec", "command_output", "kill_group"]

#: The largest ``$REACTOR_OUTPUT`` file read; the executor's ``max_output`` applies after.
_OUTPUT_FILE_LIMIT = 16 << 20
_OUTPUT_VARIABLE = "REACTOR_OUTPUT"
_SNIPPET = 200
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


class ShellAction:
    """Runs ``/bin/sh -c`` on the rendered command; exit code 0 is success.

    The output is the JSON written to ``$REACTOR_OUTPUT`` if the command wrote
    any, else the last non-empty line of stdout (stripped), else ``None``.
    """

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
        return await command_output(request, extra, lambda env: self._run(command, env, request))

    async def _run(self, command: str, env: dict[str, str], request: TaskRequest) -> deque[str]:
        """Runs the command to exit code 0 and returns its stdout lines; else ActionError."""
        stdout: deque[str] = deque(maxlen=1)
        stderr: deque[str] = deque(maxlen=_TAIL_LINES)
        try:
            process = await start_group(["/bin/sh", "-c", command], cwd=self.cwd, env=env)
        except OSError as exc:
            raise ActionError(f"cannot start shell in {self.cwd}: {exc.strerror}") from exc
        code = await supervise(
            process, request, grace=self.kill_grace, stdout=stdout, stderr=stderr
        )
        if code != 0:
            tail = "; ".join(stderr)
            reason = exit_reason(code)
            raise ActionError(
                f"{reason}: {tail}" if tail else reason, exit_code=code if code > 0 else None
            )
        return stdout


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _read_output_file(path: Path) -> tuple[bool, Any]:
    """Whether the command wrote to ``$REACTOR_OUTPUT``, and the JSON it wrote (run in a thread)."""
    try:
        with path.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            # A file still growing (a leftover child writing) is caught by the bounded read.
            data = b"" if size > _OUTPUT_FILE_LIMIT else file.read(_OUTPUT_FILE_LIMIT + 1)
    except FileNotFoundError:
        return False, None  # the command removed it: it wrote nothing there
    except OSError as exc:
        raise ActionError(f"cannot read ${_OUTPUT_VARIABLE} {path}: {exc.strerror}") from exc
    if size > _OUTPUT_FILE_LIMIT or len(data) > _OUTPUT_FILE_LIMIT:
        raise ActionError(
            f"${_OUTPUT_VARIABLE} is {max(size, len(data)):,} bytes, more than the"
            f" {_OUTPUT_FILE_LIMIT >> 20} MiB a task may write there"
        )
    if not data:
        return False, None
    try:
        # NaN and Infinity are not JSON: the store and the API could not carry them. Bytes
        # that are not UTF-8 fail here too, rather than being replaced in silence.
        return True, json.loads(data, parse_constant=_reject_constant)
    except ValueError as exc:
        snippet = data[: _SNIPPET * 4].decode(errors="replace")[:_SNIPPET]
        raise ActionError(
            f"${_OUTPUT_VARIABLE} is not valid JSON: {exc} (first {_SNIPPET} chars: {snippet!r})"
        ) from exc


async def command_output(
    request: TaskRequest,
    extra: Mapping[str, str],
    run: Callable[[dict[str, str]], Awaitable[Iterable[str]]],
) -> Any:
    """Run a command (``run(env)`` returns its stdout lines) with ``$REACTOR_OUTPUT`` naming
    a fresh file, and return its output: the JSON written there, else the last stdout line.

    ``env`` is the service's environment, ``extra``, and the run's ids (which ``extra``
    cannot override). The file is removed in every case.
    """
    try:
        fd, name = tempfile.mkstemp(prefix="reactor-output-", suffix=".json")
    except OSError as exc:
        raise ActionError(
            f"cannot create the ${_OUTPUT_VARIABLE} file in {tempfile.gettempdir()}: {exc.strerror}"
        ) from exc
    os.close(fd)
    try:
        env = {
            **os.environ,
            **extra,
            RUN_ID_VARIABLE: request.run_id,
            "REACTOR_TASK_ID": request.task_id,
            _OUTPUT_VARIABLE: name,
            **lineage_env(),
        }
        stdout = await run(env)
        wrote, output = await anyio.to_thread.run_sync(_read_output_file, Path(name))
    finally:
        # Shielded: a cancelled or timed-out task must not leave its file behind.
        with anyio.CancelScope(shield=True):
            await anyio.Path(name).unlink(missing_ok=True)
    return output if wrote else _last_line(stdout)


def _last_line(lines: Iterable[str]) -> str | None:
    """The last non-empty stdout line, stripped; ``None`` when there is none."""
    last = None
    for line in lines:
        if line.strip():
            last = line.strip()
    return last
