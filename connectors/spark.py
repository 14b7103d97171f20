"""``spark:`` tasks: a Spark application run by ``spark-submit`` in its own process group.

Arguments are passed as argv (no shell). As for ``shell:``, the output is the JSON the
application wrote to the file ``$REACTOR_OUTPUT`` names, or else its last stdout line.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.to_thread
from pydantic import Field, field_validator, model_validator

from connectors.process import exit_reason, start_group, supervise

# The same output rules as shell: tasks, so a job moved between the two keeps its output.
from connectors.shell import command_output
from reactor.actions import TaskRequest
from reactor.durations import Duration
from reactor.errors import ActionError, ExpressionError
from reactor.expressions import CompiledValue
from reactor.specs import Spec, TaskSpec

__all__ = ["SparkAction", "SparkJobSpec", "SparkTaskSpec", "spark_command"]

_TAIL_LINES = 5
NOT_FOUND = "spark-submit not found: install Spark or set spark_submit: / SPARK_HOME"

Scalar = str | int | float | bool
_CLASS_NAME = re.compile(r"^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$")


class SparkJobSpec(Spec):
    """``spark: {application, main_class, master, args, conf, spark_submit, kill_grace}``."""

    #: A ``.py`` or ``.jar`` file, relative to the pipeline's folder.
    application: str = Field(min_length=1)
    #: The class to run in a jar (else the jar's manifest names it).
    main_class: str | None = None
    master: str = Field("local[*]", min_length=1)
    #: Passed to the application after its path; strings are templates.
    args: list[Scalar] = []
    #: ``--conf key=value`` each; values are templates.
    conf: dict[str, Scalar] = {}
    #: The program to run: a name looked up on PATH, or a path (relative to the pipeline's
    #: folder). By default ``spark-submit`` on PATH, else ``$SPARK_HOME/bin/spark-submit``.
    spark_submit: str | None = Field(None, min_length=1)
    #: After SIGTERM, how long spark-submit may take to stop its job before SIGKILL.
    kill_grace: Duration = 5.0

    @field_validator("main_class")
    @classmethod
    def _class_name(cls, value: str | None) -> str | None:
        if value is not None and not _CLASS_NAME.match(value):
            raise ValueError(f"{value!r} is not a Java class name (like com.example.Main)")
        return value

    @field_validator("args", mode="before")
    @classmethod
    def _scalar_args(cls, value: Any) -> Any:
        if isinstance(value, list):
            for item in value:
                if not isinstance(item, Scalar):
                    # pydantic turns ValueError (not TypeError) into a validation error.
                    raise ValueError(  # noqa: TRY004
                        f"args lists text, numbers or booleans, got {item!r}"
                    )
        return value

    @field_validator("conf", mode="before")
    @classmethod
    def _scalar_conf(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(item, Scalar):
                    # pydantic turns ValueError (not TypeError) into a validation error.
                    raise ValueError(  # noqa: TRY004
                        f"conf {key} is text, a number or a boolean, got {item!r}"
                    )
        return value

    @model_validator(mode="after")
    def _kind_of_application(self) -> SparkJobSpec:
        suffix = Path(self.application).suffix
        if suffix not in (".py", ".jar"):
            raise ValueError(f"application names a .py or .jar file, got {self.application!r}")
        if self.main_class is not None and suffix != ".jar":
            raise ValueError("main_class is for a .jar application; a .py one runs as it is")
        for key in self.conf:
            if not key.strip() or "=" in key:
                raise ValueError(f"conf key {key!r} is not a Spark setting name")
        return self


class SparkTaskSpec(TaskSpec):
    """A task that submits one Spark application and waits for it to end."""

    type_key: ClassVar[str] = "spark"

    spark: SparkJobSpec


def _text(value: Any) -> str:
    """A rendered argument or conf value as spark-submit gets it (booleans as Spark writes them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def spark_command(
    spark_submit: str,
    application: Path,
    *,
    master: str,
    main_class: str | None = None,
    conf: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
) -> list[str]:
    """The argv that submits ``application``: options first, then the application's args."""
    command = [spark_submit, "--master", master]
    if main_class is not None:
        command += ["--class", main_class]
    for key, value in (conf or {}).items():
        command += ["--conf", f"{key}={value}"]
    return [*command, str(application), *args]


def find_spark_submit(
    configured: str | None, base_dir: Path, environ: Mapping[str, str]
) -> str | None:
    """The spark-submit to run, or ``None`` when there is none (stats files: run in a thread)."""
    if configured is not None:
        if os.sep in configured:
            path = base_dir / Path(configured).expanduser()
            return str(path) if path.is_file() and os.access(path, os.X_OK) else None
        return shutil.which(configured, path=environ.get("PATH", os.defpath))
    found = shutil.which("spark-submit", path=environ.get("PATH", os.defpath))
    if found is not None:
        return found
    home = environ.get("SPARK_HOME")
    if home:
        path = Path(home).expanduser() / "bin" / "spark-submit"
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


class SparkAction:
    """Runs ``spark-submit``; exit code 0 is success."""

    def __init__(self, spec: SparkTaskSpec, base_dir: Path) -> None:
        job = spec.spark
        self.job = job
        self.base_dir = base_dir
        self.application = base_dir / Path(job.application).expanduser()
        try:
            self.args = CompiledValue(list(job.args))
        except ExpressionError as exc:
            raise ExpressionError(str(exc), ("spark", "args")) from exc
        try:
            self.conf = CompiledValue(dict(job.conf))
        except ExpressionError as exc:
            raise ExpressionError(str(exc), ("spark", "conf")) from exc

    async def execute(self, request: TaskRequest) -> Any:
        try:
            args = [_text(a) for a in self.args.render(request.scope)]
        except ExpressionError as exc:
            raise ActionError(f"cannot render args: {exc}") from exc
        try:
            conf = {k: _text(v) for k, v in self.conf.render(request.scope).items()}
        except ExpressionError as exc:
            raise ActionError(f"cannot render conf: {exc}") from exc
        submit = await anyio.to_thread.run_sync(
            find_spark_submit, self.job.spark_submit, self.base_dir, os.environ
        )
        if submit is None:
            configured = self.job.spark_submit
            raise ActionError(
                NOT_FOUND
                if configured is None
                else f"spark_submit {configured!r} not found: install Spark or fix spark_submit:"
            )
        if not await anyio.Path(self.application).is_file():
            raise ActionError(f"application {self.application} does not exist")
        command = spark_command(
            submit,
            self.application,
            master=self.job.master,
            main_class=self.job.main_class,
            conf=conf,
            args=args,
        )
        return await command_output(request, {}, lambda env: self._run(command, env, request))

    async def _run(
        self, command: list[str], env: dict[str, str], request: TaskRequest
    ) -> deque[str]:
        stdout: deque[str] = deque(maxlen=1)
        stderr: deque[str] = deque(maxlen=_TAIL_LINES)
        try:
            process = await start_group(command, cwd=self.base_dir, env=env)
        except OSError as exc:
            raise ActionError(f"cannot start {command[0]}: {exc.strerror}") from exc
        code = await supervise(
            process, request, grace=self.job.kill_grace, stdout=stdout, stderr=stderr
        )
        if code != 0:
            tail = "; ".join(stderr)
            reason = f"spark-submit ended with {exit_reason(code)}"
            raise ActionError(
                f"{reason}: {tail}" if tail else reason, exit_code=code if code > 0 else None
            )
        return stdout
