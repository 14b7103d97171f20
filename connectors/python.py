"""``python: module:function`` tasks: sync functions in a worker thread, async ones awaited."""

from __future__ import annotations

import importlib
import inspect
import json
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import anyio.to_thread
from pydantic import Field

from connectors.output import captured_output
from reactor.actions import TaskRequest
from reactor.errors import ActionError, ExpressionError
from reactor.expressions import CompiledValue
from reactor.specs import TaskSpec

__all__ = ["PythonAction", "PythonTaskSpec"]

_IMPORT_LOCK = threading.Lock()


class PythonTaskSpec(TaskSpec):
    type_key: ClassVar[str] = "python"

    python: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    args: dict[str, Any] = {}


def _jsonable(value: Any) -> Any:
    # JSON has no NaN or infinity (the API could not send them back): null, as JavaScript
    # and pandas write them.
    return json.loads(json.dumps(value, default=str), parse_constant=lambda _name: None)


def _import(target: str, base_dir: Path) -> Callable[..., Any]:
    module_name, _, attr = target.partition(":")
    folder = str(base_dir)
    with _IMPORT_LOCK:
        if folder not in sys.path:
            sys.path.insert(0, folder)
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise ActionError(
                f"cannot import {module_name!r}: {type(exc).__name__}: {exc}"
            ) from exc
    function = getattr(module, attr, None)
    if not callable(function):
        raise ActionError(f"{module_name!r} has no function {attr!r}")
    return function  # type: ignore[no-any-return]


class PythonAction:
    """Calls the function with the rendered ``args`` as keyword arguments."""

    def __init__(self, spec: PythonTaskSpec, base_dir: Path) -> None:
        self.target = spec.python
        self.base_dir = base_dir
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
        function = await self._resolve()

        def call() -> Any:
            with captured_output(request.log):
                return function(**kwargs)

        try:
            if inspect.iscoroutinefunction(function):
                with captured_output(request.log):
                    result = await function(**kwargs)
            else:
                result = await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
        except Exception as exc:
            for line in traceback.format_exc().rstrip().splitlines():
                request.log("stderr", line)
            raise ActionError(f"{type(exc).__name__}: {exc}") from exc
        return _jsonable(result)
