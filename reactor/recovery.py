"""Crash recovery: telling dead processes from live ones, and ending what the dead left."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from reactor.store.records import ProcessRecord

__all__ = ["RUN_ID_VARIABLE", "is_dead", "kill_orphans", "pid_alive"]

#: Set in the environment of every process a task starts, so an orphan can be recognised.
RUN_ID_VARIABLE = "REACTOR_RUN_ID"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_dead(
    owner: str | None,
    *,
    me: str,
    processes: Mapping[str, ProcessRecord],
    host: str,
    now: datetime,
    lease: float,
) -> bool:
    """Whether ``owner`` can no longer be working: not registered, its process gone from
    this host, or its heartbeat older than ``lease`` seconds."""
    if owner == me:
        return False
    process = processes.get(owner) if owner is not None else None
    if process is None:
        return True
    if process.host == host and not pid_alive(process.pid):
        return True
    return (now - process.heartbeat_at).total_seconds() > lease


def _environ_has(pid: int, marker: bytes) -> bool:
    try:
        return marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def kill_orphans(run_id: str) -> int:
    """SIGKILL every process on this host that a task of ``run_id`` started.

    Processes are recognised by the run id in their environment, not by a recorded
    process id: a crash can come between a task's process starting and its id being
    recorded, and a reused id never kills a stranger. Returns how many died.
    """
    marker = f"{RUN_ID_VARIABLE}={run_id}".encode()
    killed = 0
    proc = Path("/proc")
    if not proc.is_dir():
        return 0
    me = os.getpid()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        if _environ_has(int(entry.name), marker):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed
