"""Named crash points for the crash-recovery tests: ``REACTOR_FAILPOINTS=name=N,...``.

When the variable names a point, the process SIGKILLs itself the N-th time it
passes that point (N defaults to 1). Unset, ``hit`` is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

__all__ = ["POINTS", "hit"]

#: Every point in the code, in the order an event passes them.
POINTS = (
    "ingest.after_persist",  # the event is durable; rules have not seen it
    "rules.after_outcome",  # runs are created with the event's outcome; none started
    "task.after_start",  # an attempt's record is on its way to the store; the action waits
    "task.after_action",  # the action finished; its result is not recorded
    "run.before_finish",  # every task is final; the run's status is not recorded
    "run.after_finish",  # the run's end is recorded; its event (for on: pipeline) is not
    "store.before_commit",  # inside the SQLite writer, before a batch commits
)


def _parse(spec: str) -> dict[str, int]:
    armed: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, count = item.partition("=")
        if name not in POINTS:
            raise ValueError(f"unknown failpoint {name!r}; known: {', '.join(POINTS)}")
        armed[name] = int(count or 1)
    return armed


_ARMED = _parse(os.environ.get("REACTOR_FAILPOINTS", ""))


def hit(name: str) -> None:
    """Pass the point ``name``: kill this process if it is armed and its count is reached."""
    if not _ARMED or name not in _ARMED:
        return
    _ARMED[name] -= 1
    if _ARMED[name] <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
