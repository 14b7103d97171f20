"""The child process of an isolated ``python:`` task: imports the function, calls it, reports.

Started as ``python -P python_worker.py REPORT_FILE`` with the call on stdin as JSON
(``{"target": "module:function", "base_dir": ..., "kwargs": {...}}``). It writes one JSON
report to REPORT_FILE: ``{"output": value}``, ``{"raised": {type, message, exceptions,
traceback}}`` for an exception in the function, or ``{"failed": message}`` when the function
could not be imported or its return value is not JSON. Whatever the function prints goes to
this process's stdout/stderr, which the service logs.

Only the standard library is imported here: a child starts for every attempt, and importing
the service's packages (pydantic, FastAPI) would cost it several times the interpreter's start.
The service imports ``load_function`` and ``to_json_value`` from here, so both paths agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import io
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["FunctionNotFound", "OutputNotJSON", "load_function", "main", "to_json_value"]


class FunctionNotFound(Exception):
    """``module:function`` names a module that does not import or has no such function."""


class OutputNotJSON(Exception):
    """The function returned a value that cannot be converted to JSON."""


def load_function(target: str, base_dir: str) -> Callable[..., Any]:
    """Import ``module:function`` with ``base_dir`` first on ``sys.path``."""
    module_name, _, attr = target.partition(":")
    if base_dir not in sys.path:
        sys.path.insert(0, base_dir)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise FunctionNotFound(
            f"cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    function = getattr(module, attr, None)
    if not callable(function):
        raise FunctionNotFound(f"{module_name!r} has no function {attr!r}")
    return function  # type: ignore[no-any-return]


def to_json_value(value: Any) -> Any:
    """``value`` as the store keeps it: what JSON cannot hold as text, NaN and infinity null."""
    try:
        # JSON has no NaN or infinity (the API could not send them back): null, as
        # JavaScript and pandas write them.
        return json.loads(json.dumps(value, default=str), parse_constant=lambda _name: None)
    except Exception as exc:
        raise OutputNotJSON(
            f"the return value cannot be converted to JSON: {type(exc).__name__}: {exc}"
        ) from exc


def _exception_names(exc: BaseException) -> list[str]:
    # reactor.errors.exception_names, repeated: importing reactor here would import the
    # whole service into every child. A test checks that both give the same names.
    names: list[str] = []
    for cls in type(exc).__mro__:
        if cls in (BaseException, object):
            continue
        names.append(cls.__qualname__)
        names.append(f"{cls.__module__}.{cls.__qualname__}")
    return list(dict.fromkeys(names))


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__} that cannot be printed>"


def _call(target: str, base_dir: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        function = load_function(target, base_dir)
    except FunctionNotFound as exc:
        return {"failed": str(exc)}
    try:
        if inspect.iscoroutinefunction(function):
            result = asyncio.run(function(**kwargs))
        else:
            result = function(**kwargs)
    except Exception as exc:
        return {
            "raised": {
                "type": type(exc).__name__,
                "message": _message(exc),
                "exceptions": _exception_names(exc),
                "traceback": "".join(traceback.format_exception(exc)),
            }
        }
    try:
        return {"output": to_json_value(result)}
    except OutputNotJSON as exc:
        return {"failed": str(exc)}


def main(argv: Sequence[str]) -> None:
    if len(argv) != 1:
        sys.exit("usage: python_worker.py REPORT_FILE  (the call as JSON on stdin)")
    report_file = Path(argv[0])
    call = json.loads(sys.stdin.buffer.read())
    # Line by line, as a terminal would: a function killed at its timeout has its last
    # prints logged, and the two streams reach the log in the order they were written.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)
    report = _call(call["target"], call["base_dir"], call["kwargs"])
    report_file.write_text(json.dumps(report), encoding="utf-8")
    for stream in (sys.stdout, sys.stderr):
        # The function may have closed or replaced them.
        with contextlib.suppress(Exception):
            stream.flush()
    # Not a normal interpreter exit: it would wait for non-daemon threads the function
    # left running, and the attempt is over once it returned.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
