"""Crash recovery: telling dead processes from live ones, and ending what the dead left."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from reactor.store.records import ProcessRecord

__all__ = ["RUN_ID_VARIABLE", "is_dead", "kill_orphaned_group", "pid_alive"]

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


def kill_orphaned_group(pgid: int, run_id: str) -> int:
    """SIGKILL every process of group ``pgid`` that a task of ``run_id`` started.

    Processes are checked one by one (group id and the run id in their
    environment), so a reused id never kills a stranger. Returns how many died.
    """
    marker = f"{RUN_ID_VARIABLE}={run_id}".encode()
    killed = 0
    proc = Path("/proc")
    if not proc.is_dir():
        return 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if os.getpgid(pid) != pgid:
                continue
        except OSError:
            continue
        if _environ_has(pid, marker):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed
