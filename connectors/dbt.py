"""``dbt:`` tasks: the dbt CLI run in its own process group, its run results as output.

dbt runs as a program, not imported: it usually lives in a virtualenv of its own (its
pins clash with other tools), named by ``executable:``. Each attempt writes its
artifacts to a folder of its own, so parallel runs of one project never clash.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from collections import Counter, deque
from pathlib import Path
from typing import Any, ClassVar, Literal

import anyio
from pydantic import Field, model_validator

from connectors.process import exit_reason, start_group, supervise
from reactor.actions import TaskRequest
from reactor.durations import Duration
from reactor.errors import ActionError, ExpressionError
from reactor.expressions import CompiledValue
from reactor.lineage import lineage_env
from reactor.recovery import RUN_ID_VARIABLE
from reactor.specs import Spec, TaskSpec

__all__ = ["DbtAction", "DbtSpec", "DbtTaskSpec", "failure_summary", "run_output"]

Command = Literal["build", "run", "test", "seed", "snapshot", "compile", "ls"]

#: Where each attempt's artifacts go, inside the project (dbt users ignore target/ already).
ARTIFACTS = Path("target") / "reactor"
#: The statuses of a node that failed (models, seeds and snapshots error; tests fail).
FAILED = frozenset({"error", "fail", "runtime error"})
#: Failed nodes named in an error message; the rest are counted.
_NAMED_FAILURES = 5
#: stdout lines kept for an error message when dbt fails before running any node.
_TAIL_LINES = 20
_TIMESTAMP = re.compile(r"^\d\d:\d\d:\d\d\s+")
#: The first line of a node's error (``Database Error in model x (models/x.sql)``).
_ERROR_HEADER = re.compile(r"^.*\bin \w+ \S+ \(.*\)$")
_UNSAFE = re.compile(r"[^\w.\-\[\]]")


class DbtSpec(Spec):
    """``dbt: {command, project_dir, profiles_dir, select, exclude, vars, target, ...}``."""

    command: Command = "build"
    #: The folder holding ``dbt_project.yml``, relative to the pipeline's folder.
    project_dir: str = Field(".", min_length=1)
    #: The folder holding ``profiles.yml``; by default dbt's own choice (see the docs).
    profiles_dir: str | None = Field(None, min_length=1)
    #: Node selection (``--select``), templated; a list is several selectors.
    select: str | list[str] | None = None
    exclude: str | list[str] | None = None
    #: Passed as ``--vars`` JSON; every string in it may be a template.
    vars: dict[str, Any] = {}
    target: str | None = Field(None, min_length=1)
    #: ``dbt`` on PATH, or a path relative to the pipeline's folder.
    executable: str = Field("dbt", min_length=1)
    threads: int | None = Field(None, ge=1)
    #: After SIGTERM, how long dbt may take to stop before the group is killed.
    kill_grace: Duration = 10.0

    @model_validator(mode="after")
    def _threads_apply(self) -> DbtSpec:
        if self.threads is not None and self.command == "ls":
            raise ValueError("threads does not apply to dbt ls (it runs no node)")
        return self


class DbtTaskSpec(TaskSpec):
    """A task that runs one dbt command on a project beside the pipeline."""

    type_key: ClassVar[str] = "dbt"

    dbt: DbtSpec


def _selectors(value: Any, field: str) -> str | None:
    """A rendered ``select``/``exclude`` as dbt's one space-separated argument."""
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    words = [str(item).strip() for item in items if item is not None and str(item).strip()]
    if not words:
        # An empty selection would select everything: never what an empty param meant.
        raise ActionError(f"dbt.{field} rendered empty ({value!r}); remove it to select all")
    return " ".join(words)


def _safe(part: str) -> str:
    return _UNSAFE.sub("_", part)


def _clean_message(message: str) -> str:
    """The line of a node's error that says what is wrong (not its header or the SQL)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if len(lines) > 1 and _ERROR_HEADER.match(lines[0]):
        lines = lines[1:]
    return lines[0] if lines else message.strip()


def run_output(command: str, run_results: dict[str, Any] | None) -> dict[str, Any]:
    """The task's output from dbt's ``run_results.json`` (``None``: dbt wrote none)."""
    results = []
    for node in (run_results or {}).get("results") or []:
        results.append(
            {
                "unique_id": node.get("unique_id"),
                "status": node.get("status"),
                "execution_time": node.get("execution_time"),
                "message": node.get("message"),
                "failures": node.get("failures"),
            }
        )
    counts = Counter(str(r["status"]) for r in results)
    return {
        "command": command,
        "success": not any(r["status"] in FAILED for r in results),
        "elapsed": (run_results or {}).get("elapsed_time"),
        "results": results,
        "counts": dict(sorted(counts.items())),
    }


def failure_summary(results: list[dict[str, Any]]) -> str | None:
    """``model.p.orders error: relation "x" does not exist; ...`` for the failed nodes."""
    failed = [r for r in results if r["status"] in FAILED]
    if not failed:
        return None
    named = []
    for r in failed[:_NAMED_FAILURES]:
        message = _clean_message(str(r["message"] or ""))
        named.append(f"{r['unique_id']} {r['status']}" + (f": {message}" if message else ""))
    more = len(failed) - len(named)
    return "; ".join(named) + (f"; and {more} more" if more else "")


def _tail_message(stdout: deque[str], stderr: deque[str]) -> str:
    """What dbt said last: after ``Encountered an error:`` if it said that, else its last lines."""
    lines = [_TIMESTAMP.sub("", line).strip() for line in stdout]
    lines = [line for line in lines if line]
    if "Encountered an error:" in lines:
        at = len(lines) - 1 - lines[::-1].index("Encountered an error:")
        lines = lines[at + 1 :]
    else:
        lines = lines[-3:]
    lines += [line.strip() for line in stderr if line.strip()][-3:]
    return " ".join(lines)


class DbtAction:
    """Runs ``dbt COMMAND`` in the project; exit code 0 is success.

    The output is parsed from the attempt's ``run_results.json`` (see :func:`run_output`),
    plus ``target_path`` (the attempt's artifacts) and, for ``ls``, ``nodes``.
    """

    def __init__(self, spec: DbtTaskSpec, base_dir: Path) -> None:
        self.spec = spec.dbt
        self.project_dir = base_dir / Path(self.spec.project_dir).expanduser()
        self.profiles_dir = (
            None
            if self.spec.profiles_dir is None
            else base_dir / Path(self.spec.profiles_dir).expanduser()
        )
        # A bare name is looked up on PATH when the task runs, as a shell would.
        self.executable: Path | None = (
            base_dir / Path(self.spec.executable).expanduser()
            if "/" in self.spec.executable or self.spec.executable.startswith("~")
            else None
        )
        try:
            self.values = CompiledValue(
                {"select": self.spec.select, "exclude": self.spec.exclude, "vars": self.spec.vars}
            )
        except ExpressionError as exc:
            raise ExpressionError(str(exc), ("dbt",)) from exc

    async def execute(self, request: TaskRequest) -> Any:
        try:
            rendered = self.values.render(request.scope)
        except ExpressionError as exc:
            raise ActionError(f"cannot render dbt settings: {exc}") from exc
        select = _selectors(rendered["select"], "select")
        exclude = _selectors(rendered["exclude"], "exclude")
        try:
            variables = json.dumps(rendered["vars"], default=str) if rendered["vars"] else None
        except ValueError as exc:
            raise ActionError(f"dbt.vars cannot be passed as JSON: {exc}") from exc
        env = {
            **os.environ,
            RUN_ID_VARIABLE: request.run_id,
            "REACTOR_TASK_ID": request.task_id,
            **lineage_env(),
        }
        executable = await self._executable(env.get("PATH"))
        await self._check_project()
        folder = (
            self.project_dir.resolve()
            / ARTIFACTS
            / _safe(request.run_id)
            / _safe(request.task_id)
            / str(request.attempt)
        )
        try:
            await anyio.Path(folder).mkdir(parents=True, exist_ok=True)
            # An attempt taken over after a crash reuses its folder: no stale results.
            await anyio.Path(folder / "run_results.json").unlink(missing_ok=True)
        except OSError as exc:
            raise ActionError(
                f"cannot prepare dbt's target folder {folder}: {exc.strerror}"
            ) from exc
        command = [
            executable,
            self.spec.command,
            "--project-dir",
            str(self.project_dir.resolve()),
            "--target-path",
            str(folder),
            "--log-path",
            str(folder),
            "--no-use-colors",
        ]
        if self.profiles_dir is not None:
            command += ["--profiles-dir", str(self.profiles_dir.resolve())]
        if self.spec.target is not None:
            command += ["--target", self.spec.target]
        if select is not None:
            command += ["--select", select]
        if exclude is not None:
            command += ["--exclude", exclude]
        if variables is not None:
            command += ["--vars", variables]
        if self.spec.threads is not None:
            command += ["--threads", str(self.spec.threads)]
        if self.spec.command == "ls":
            command += ["--output", "json", "--output-keys", "unique_id"]
        request.log("system", f"dbt {self.spec.command} in {self.project_dir}, target {folder}")

        listing = self.spec.command == "ls"
        stdout: deque[str] = deque(maxlen=None if listing else _TAIL_LINES)
        stderr: deque[str] = deque(maxlen=_TAIL_LINES)
        code = await self._run(command, env, request, stdout, stderr)
        output = run_output(self.spec.command, await _read_run_results(folder))
        output["success"] = code == 0 and output["success"]
        output["target_path"] = str(folder)
        if listing:
            output["nodes"] = _listed(stdout)
        if code == 0:
            return output
        # The task records no output when it fails: the log keeps it.
        request.log("system", f"dbt output: {json.dumps(output, default=str)}")
        reason = exit_reason(code)
        summary = failure_summary(output["results"]) or _tail_message(stdout, stderr)
        raise ActionError(
            f"dbt {self.spec.command} failed ({reason}): {summary}"
            if summary
            else f"dbt {self.spec.command} failed ({reason})",
            exit_code=code if code > 0 else None,
        )

    async def _executable(self, path: str | None) -> str:
        if self.executable is None:
            found = shutil.which(self.spec.executable, path=path)
            if found is None:
                raise ActionError(
                    f"{self.spec.executable!r} is not on PATH; install dbt or set"
                    " dbt.executable to its path (e.g. .venv/dbt/bin/dbt)"
                )
            return found
        target = anyio.Path(self.executable)
        if not await target.is_file():
            raise ActionError(f"dbt executable {self.executable} does not exist")
        if not os.access(self.executable, os.X_OK):
            raise ActionError(f"dbt executable {self.executable} is not executable")
        return str(self.executable)

    async def _check_project(self) -> None:
        if not await anyio.Path(self.project_dir).is_dir():
            raise ActionError(f"dbt project folder {self.project_dir} does not exist")
        if not await anyio.Path(self.project_dir / "dbt_project.yml").is_file():
            raise ActionError(f"dbt project folder {self.project_dir} has no dbt_project.yml")
        profiles = None if self.profiles_dir is None else self.profiles_dir / "profiles.yml"
        if profiles is not None and not await anyio.Path(profiles).is_file():
            raise ActionError(f"dbt profiles_dir {self.profiles_dir} has no profiles.yml")

    async def _run(
        self,
        command: list[str],
        env: dict[str, str],
        request: TaskRequest,
        stdout: deque[str],
        stderr: deque[str],
    ) -> int:
        try:
            process = await start_group(command, cwd=self.project_dir, env=env)
        except OSError as exc:
            raise ActionError(f"cannot start {command[0]}: {exc.strerror}") from exc
        # SIGINT is how dbt is told to stop: it cancels the queries it has running on the
        # warehouse before it exits (SIGTERM would leave them to finish there).
        return await supervise(
            process,
            request,
            grace=self.spec.kill_grace,
            stdout=stdout,
            stderr=stderr,
            stop_signal=signal.SIGINT,
        )


def _listed(lines: deque[str]) -> list[str]:
    """The unique ids ``dbt ls --output json`` printed, one JSON object a line."""
    nodes = []
    for line in lines:
        if not line.startswith("{"):
            continue
        try:
            node = json.loads(line)
        except ValueError:
            continue
        if isinstance(node, dict) and isinstance(node.get("unique_id"), str):
            nodes.append(node["unique_id"])
    return nodes


async def _read_run_results(folder: Path) -> dict[str, Any] | None:
    """The attempt's ``run_results.json``; ``None`` when dbt wrote none (``ls``, an early error)."""
    path = anyio.Path(folder / "run_results.json")
    try:
        text = await path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ActionError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ActionError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ActionError(f"{path} holds no run results object")
    return data
