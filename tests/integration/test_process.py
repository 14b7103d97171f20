"""Stopping a task's process group: the first signal it gets, then SIGKILL."""

from __future__ import annotations

import os
import signal
import sys
from collections import deque
from pathlib import Path

import anyio
import pytest
from helpers import wait_for

from connectors.process import start_group, supervise
from reactor.actions import LogStream, TaskRequest

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

# Writes which signal reached it, then exits; says "ready" once its handlers are in place.
CHILD = """
import signal, sys, time
def stop(number, frame):
    open(sys.argv[1], "w").write(signal.Signals(number).name)
    sys.exit(0)
signal.signal(signal.SIGINT, stop)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def request(lines: list[tuple[LogStream, str]]) -> TaskRequest:
    return TaskRequest(
        run_id="run",
        pipeline="p",
        task_id="t",
        attempt=1,
        scope={},
        base_dir=Path.cwd(),
        log=lambda stream, line: lines.append((stream, line)),
    )


@pytest.mark.parametrize("first", [signal.SIGTERM, signal.SIGINT])
async def test_a_cancelled_group_gets_the_stop_signal_asked_for(
    tmp_path: Path, first: signal.Signals
) -> None:
    got = tmp_path / "signal.txt"
    lines: list[tuple[LogStream, str]] = []
    process = await start_group(
        [sys.executable, "-c", CHILD, str(got)], cwd=tmp_path, env=dict(os.environ)
    )
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            await supervise(
                process,
                request(lines),
                grace=10,
                stdout=deque(maxlen=1),
                stderr=deque(maxlen=5),
                stop_signal=first,
            )

        tg.start_soon(run)
        await wait_for(lambda: ("stdout", "ready") in lines, message="the child to be ready")
        tg.cancel_scope.cancel()
    assert got.read_text() == first.name
    assert process.returncode is not None
