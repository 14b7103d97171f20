"""The child process of a ``notebook:`` task: papermill runs the notebook, this reports.

Started as ``python -P notebook_worker.py REPORT_FILE`` with the call on stdin as JSON
(``{"notebook", "output", "parameters", "kernel", "cwd"}``). It writes one JSON report to
REPORT_FILE: ``{"outputs": value}``, ``{"raised": {cell, ename, evalue}}`` for a cell that
raised, or ``{"failed": message}`` for anything else that stopped the notebook. What the
cells print goes to this process's stdout/stderr, which the service logs.

Papermill is imported here only: a service without the ``notebook`` extra still loads
pipelines, and no kernel (nor its threads) ever lives in the service. The kernel inherits
this process's environment, so the service can find and stop it by its marker variable.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["NEEDS_EXTRA", "OUTPUTS_TAG", "OutputsMissing", "main", "notebook_outputs"]

#: What a notebook task without papermill installed says.
NEEDS_EXTRA = (
    "the notebook task needs the notebook extra: pip install 'reactor-orchestrator[notebook]'"
)
#: The tag of the cell whose value is the task's ``outputs``.
OUTPUTS_TAG = "outputs"


class OutputsMissing(Exception):
    """The cell tagged ``outputs`` ended without a value."""


def _value(text: str) -> Any:
    """A cell's ``text/plain`` result: the Python literal it shows, else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text


def notebook_outputs(cells: Sequence[Mapping[str, Any]]) -> Any:
    """The value of the last code cell tagged ``outputs`` (``None`` when no cell is tagged).

    Its ``application/json`` result if it has one, else its ``text/plain`` result read as a
    Python literal (a dict, list, string, number, bool or None), else that text.
    """
    tagged = [
        cell
        for cell in cells
        if cell.get("cell_type") == "code"
        and OUTPUTS_TAG in cell.get("metadata", {}).get("tags", [])
    ]
    if not tagged:
        return None
    for output in tagged[-1].get("outputs", []):
        if output.get("output_type") != "execute_result":
            continue
        data = output.get("data", {})
        if "application/json" in data:
            value = data["application/json"]
        elif "text/plain" in data:
            text = data["text/plain"]
            value = _value(text if isinstance(text, str) else "".join(text))
        else:
            continue
        # What JSON cannot hold (a set, a date in application/json) as text.
        return json.loads(json.dumps(value, default=str))
    raise OutputsMissing(
        f"the cell tagged {OUTPUTS_TAG!r} has no value: end it with an expression,"
        " e.g. {'rows': rows}"
    )


def _missing_papermill(exc: ImportError) -> bool:
    return (exc.name or "").split(".")[0] == "papermill"


def _no_kernel(kernel: str, exc: Exception) -> str:
    try:
        kernelspec = importlib.import_module("jupyter_client.kernelspec")
        known = sorted(kernelspec.KernelSpecManager().find_kernel_specs())
    except Exception:
        known = []
    message = f"no Jupyter kernel named {kernel!r}"
    message += f" (installed: {', '.join(known)})" if known else " (none is installed)"
    if kernel == "python3":
        message += f"; {NEEDS_EXTRA}"
    return message


def _execute(call: Mapping[str, Any]) -> dict[str, Any]:
    try:
        papermill = importlib.import_module("papermill")
    except ImportError as exc:
        if _missing_papermill(exc):
            return {"failed": NEEDS_EXTRA}
        return {"failed": f"cannot import papermill: {type(exc).__name__}: {exc}"}
    execution_error = papermill.PapermillExecutionError
    no_such_kernel = importlib.import_module("jupyter_client.kernelspec").NoSuchKernel
    try:
        notebook = papermill.execute_notebook(
            call["notebook"],
            call["output"],
            parameters=call["parameters"],
            kernel_name=call["kernel"],
            cwd=call["cwd"],
            progress_bar=False,
            stdout_file=sys.stdout,
            stderr_file=sys.stderr,
        )
    except execution_error as exc:
        return {"raised": {"cell": exc.exec_count, "ename": exc.ename, "evalue": exc.evalue}}
    except no_such_kernel as exc:
        return {"failed": _no_kernel(call["kernel"], exc)}
    except Exception as exc:
        return {"failed": f"papermill failed: {type(exc).__name__}: {exc}"}
    try:
        return {"outputs": notebook_outputs(notebook.cells)}
    except OutputsMissing as exc:
        return {"failed": str(exc)}


def main(argv: Sequence[str]) -> None:
    if len(argv) != 1:
        sys.exit("usage: notebook_worker.py REPORT_FILE  (the call as JSON on stdin)")
    report_file = Path(argv[0])
    call = json.loads(sys.stdin.buffer.read())
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)
    # Papermill's warnings (an unknown parameter, no cell tagged parameters) reach the log.
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    report = _execute(call)
    report_file.write_text(json.dumps(report), encoding="utf-8")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    # Papermill has shut the kernel down; threads its client left must not hold the exit.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
