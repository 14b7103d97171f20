"""Control-flow task types of the core: ``if:`` conditions and ``for_each:`` loops."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import anyio
from pydantic import ConfigDict, Field, field_validator, model_validator

from reactor.actions import TaskRequest
from reactor.errors import ActionError, AdmissionError, ExpressionError
from reactor.expressions import CompiledValue, Expression, is_template
from reactor.specs import NAME_PATTERN, RunIf, Spec, TaskSpec
from reactor.store.records import child_run_key

__all__ = [
    "ForEachAction",
    "ForEachTaskSpec",
    "IfAction",
    "IfTaskSpec",
    "RunPipelineAction",
    "RunPipelineSpec",
    "RunPipelineTaskSpec",
    "describe_value",
]

#: What a ``for_each:`` iteration's own ``task:`` may not set (the loop owns them).
LOOP_OWNED = ("id", "needs", "run_if")


def describe_value(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:80]}{'...' if len(text) > 80 else ''}"


class IfTaskSpec(TaskSpec):
    """``if: "tasks.validate.output.rows > 1000"``: succeeds with output ``true`` or ``false``."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    type_key: ClassVar[str] = "if"

    condition: str = Field(alias="if", min_length=1)


class IfAction:
    """Evaluates the condition over params and earlier outputs."""

    def __init__(self, spec: IfTaskSpec, base_dir: Path) -> None:
        del base_dir
        try:
            self.condition = Expression(spec.condition)
        except ExpressionError as exc:
            raise ExpressionError(str(exc), ("if",)) from exc

    async def execute(self, request: TaskRequest) -> Any:
        try:
            return bool(self.condition.evaluate(request.scope))
        except ExpressionError as exc:
            raise ActionError(f"cannot evaluate if: {exc}") from exc


class ForEachTaskSpec(TaskSpec):
    """``for_each:`` a list (literal, param or earlier output) and the ``task:`` run per item."""

    type_key: ClassVar[str] = "for_each"

    for_each: list[Any] | str
    task: dict[str, Any]
    #: Iterations running at once.
    concurrency: int = Field(1, ge=1, le=10_000)
    #: When the loop as a whole succeeds, over its iterations' ends (the ``run_if`` rules).
    succeed_if: RunIf = "all_success"

    @field_validator("for_each", mode="before")
    @classmethod
    def _list_or_template(cls, value: Any) -> Any:
        if isinstance(value, list) or (isinstance(value, str) and is_template(value)):
            return value
        raise ValueError(
            "for_each takes a list, or a template giving one such as"
            ' "{{ params.regions }}" or "{{ tasks.list.output }}"'
        )

    @model_validator(mode="after")
    def _loop_shape(self) -> ForEachTaskSpec:
        owned = [key for key in LOOP_OWNED if key in self.task]
        if owned:
            raise ValueError(
                f"the task: of a for_each takes no {', '.join(owned)} (the for_each task has them)"
            )
        if "for_each" in self.task:
            raise ValueError("a for_each cannot hold another for_each directly")
        for key in ("retries", "retry_on", "pool"):
            if getattr(self, key) is not None:
                raise ValueError(f"put {key}: under task: (each iteration has its own)")
        return self


class ForEachAction:
    """Renders the items of a loop; the executor runs the iterations."""

    def __init__(self, spec: ForEachTaskSpec, base_dir: Path) -> None:
        del base_dir
        try:
            self.items = CompiledValue(spec.for_each)
        except ExpressionError as exc:
            raise ExpressionError(str(exc), ("for_each",)) from exc

    async def execute(self, request: TaskRequest) -> Any:
        try:
            items = self.items.render(request.scope)
        except ExpressionError as exc:
            raise ActionError(f"cannot render for_each: {exc}") from exc
        if not isinstance(items, list):
            raise ActionError(f"for_each needs a list, got {describe_value(items)}")
        return items


class RunPipelineSpec(Spec):
    """``run_pipeline: {pipeline, params, wait}``."""

    pipeline: str = Field(pattern=NAME_PATTERN)
    #: The child's params; values may be templates.
    params: dict[str, Any] = {}
    #: Wait for the child run's end and take its outcome (else succeed once it is admitted).
    wait: bool = True


class RunPipelineTaskSpec(TaskSpec):
    """Starts a run of another pipeline as a child of this run."""

    type_key: ClassVar[str] = "run_pipeline"

    run_pipeline: RunPipelineSpec


class RunPipelineAction:
    """Admits the child run (once per attempt: its run key names this attempt) and, with
    ``wait``, waits for it: the task ends as the child did, with its outputs."""

    def __init__(self, spec: RunPipelineTaskSpec, base_dir: Path) -> None:
        del base_dir
        self.target = spec.run_pipeline.pipeline
        self.wait = spec.run_pipeline.wait
        try:
            self.params = CompiledValue(spec.run_pipeline.params)
        except ExpressionError as exc:
            raise ExpressionError(str(exc), ("run_pipeline", "params")) from exc

    async def execute(self, request: TaskRequest) -> Any:
        children = request.children
        if children is None:
            raise ActionError("run_pipeline: needs a Reactor service to start the child run in")
        try:
            params = self.params.render(request.scope)
        except ExpressionError as exc:
            raise ActionError(f"cannot render run_pipeline.params: {exc}") from exc
        key = child_run_key(self.target, request.run_id, request.task_id, request.attempt)
        try:
            child = await children.start_child(self.target, params, key)
        except AdmissionError as exc:
            raise ActionError(f"cannot start {self.target}: {exc}") from exc
        request.log("system", f"child run {child.id} of {self.target} {child.status}")
        if not self.wait:
            return {"run_id": child.id, "pipeline": self.target, "status": child.status}
        try:
            run, outputs = await children.wait_child(child.id)
        except anyio.get_cancelled_exc_class():
            # This task was cancelled or timed out: its child must not go on alone.
            with anyio.CancelScope(shield=True):
                reason = f"its parent task {request.run_id}/{request.task_id} was stopped"
                await children.cancel_child(child.id, reason)
            raise
        result: dict[str, Any] = {
            "run_id": run.id,
            "pipeline": self.target,
            "status": run.status,
            "outputs": outputs,
        }
        if run.status != "succeeded":
            why = f": {run.reason}" if run.reason else ""
            raise ActionError(
                f"child run {run.id} of {self.target} {run.status}{why}", output=result
            )
        return result
