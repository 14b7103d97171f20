"""Task processes in their own process group: started, logged line by line, stopped whole."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream, Process

from reactor.actions import LogStream, TaskRequest
from reactor.errors import ActionError

__all__ = [
    "child_report",
    "exit_reason",
    "kill_group",
    "pump_lines",
    "start_group",
    "supervise",
]


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a whole process group; a group that is already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def exit_reason(code: int) -> str:
    """``exit code N``, or ``killed by signal N`` for the negative codes of a signal."""
    return f"exit code {code}" if code >= 0 else f"killed by signal {-code}"


async def child_report(path: Path, code: int, stderr: Iterable[str], who: str) -> dict[str, Any]:
    """The JSON report a worker child wrote to ``path`` before exiting 0; a child that ended
    otherwise, or left no whole report, fails the attempt with how it ended and its
    stderr's last lines (``who`` names it: "the function", "papermill")."""
    report: dict[str, Any] | None = None
    if code == 0:
        text = await anyio.Path(path).read_text(encoding="utf-8")
        # Empty or cut off (os._exit in a thread while it was written): no result.
        with contextlib.suppress(json.JSONDecodeError):
            report = json.loads(text) if text else None
    if report is None:
        reason = f"{who}'s process ended without a result ({exit_reason(code)})"
        tail = "; ".join(stderr)
        raise ActionError(
            f"{reason}: {tail}" if tail else reason, exit_code=code if code > 0 else None
        )
    return report


async def start_group(
    command: Sequence[str], *, cwd: Path | None, env: Mapping[str, str], stdin: bool = False
) -> Process:
    """Start ``command`` as the leader of a new session (in ``cwd``, else the service's).

    ``stdin`` gives it a pipe (see :func:`supervise`), else /dev/null. Raises ``OSError``.
    """
    # Shielded: cancelled half-way, asyncio kills only the leader and leaves its
    # children running. Once started, a cancel in supervise() kills the whole group.
    with anyio.CancelScope(shield=True):
        process = await anyio.open_process(
            list(command),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
        )
    return process


async def pump_lines(
    stream: ByteReceiveStream | None, name: LogStream, request: TaskRequest, keep: deque[str]
) -> None:
    """Log each line of ``stream`` as ``name``; the non-blank ones also go to ``keep``
    (a bounded deque: a chatty command's output is in the log, not held in memory)."""
    if stream is None:
        return
    pending = b""
    async for chunk in stream:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace").rstrip("\r")
            request.log(name, line)
            if line.strip():
                keep.append(line)
    if pending:
        line = pending.decode(errors="replace")
        request.log(name, line)
        if line.strip():
            keep.append(line)


async def _feed(stream: ByteSendStream | None, data: bytes) -> None:
    if stream is None:
        return
    # A process that exits without reading its input says why in its exit code.
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
        await stream.send(data)
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
        await stream.aclose()


async def stop_group(process: Process, grace: float, first: int = signal.SIGTERM) -> None:
    """``first`` (SIGTERM) to the group, SIGKILL after ``grace`` seconds, and reap the leader."""
    kill_group(process.pid, first)
    with anyio.move_on_after(grace):
        await process.wait()
    # Also when the leader went quickly: a child that ignores SIGTERM must not outlive it.
    kill_group(process.pid, signal.SIGKILL)
    await process.wait()


async def supervise(
    process: Process,
    request: TaskRequest,
    *,
    grace: float,
    stdout: deque[str],
    stderr: deque[str],
    stdin: bytes | None = None,
    stop_signal: int = signal.SIGTERM,
) -> int:
    """Run a started group to its end and return the leader's exit code.

    Reports the pid, sends ``stdin``, logs both streams line by line (kept in
    ``stdout``/``stderr``), and kills what is left of the group once the leader
    exits. Cancelled, it stops the whole group (see :func:`stop_group`, asked first with
    ``stop_signal``) and re-raises.
    """
    try:
        if request.report_process is not None:
            await request.report_process(process.pid)
        async with anyio.create_task_group() as tg:
            if stdin is not None:
                tg.start_soon(_feed, process.stdin, stdin)
            tg.start_soon(pump_lines, process.stdout, "stdout", request, stdout)
            tg.start_soon(pump_lines, process.stderr, "stderr", request, stderr)
            code = await process.wait()
            # Background children still holding the pipes must not keep the task alive.
            kill_group(process.pid)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await stop_group(process, grace, stop_signal)
        raise
    return code
