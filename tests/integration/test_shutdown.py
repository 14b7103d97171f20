"""Graceful stop: leaving ``async with Reactor`` lets running tasks finish within ``grace``."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest
from helpers import wait_for

from reactor.errors import AdmissionError
from reactor.events import Event

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

PIPELINE = """
name: slow
params:
  gates: {type: string}
tasks:
  - id: work
    shell: >-
      echo $$ > {{ params.gates }}/pid;
      while [ ! -f {{ params.gates }}/go ]; do sleep 0.01; done; echo done
    kill_grace: 1s
"""


@pytest.fixture
def gates(tmp_path: Path) -> Path:
    folder = tmp_path / "gates"
    folder.mkdir()
    return folder


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


async def test_stopping_lets_a_running_task_finish_within_grace(
    write_pipeline, start_reactor, store, gates: Path
) -> None:
    write_pipeline("slow.yaml", PIPELINE)
    refused: list[str] = []

    async def while_stopping(reactor) -> None:
        await wait_for(lambda: reactor.health()["status"] == "stopping", message="the stop")
        # Nothing new is accepted while stopping...
        for attempt in (
            reactor.run_now("slow", {"gates": str(gates)}),
            reactor.publish(Event("anything", "tests")),
        ):
            try:
                await attempt
            except AdmissionError as exc:
                refused.append(str(exc))
        # ...but the running task may finish.
        (gates / "go").touch()

    async with anyio.create_task_group() as tg, start_reactor(grace=30.0) as reactor:
        run = await reactor.run_now("slow", {"gates": str(gates)})
        await wait_for(lambda: (gates / "pid").exists(), message="the task to start")
        tg.start_soon(while_stopping, reactor)

    finished = await store.get_run(run.id)
    assert finished is not None
    assert finished.status == "succeeded"
    [task] = await store.task_runs(run.id)
    assert (task.status, task.output) == ("succeeded", "done")
    assert refused == [
        "the service is stopping and does not accept runs",
        "the service is stopping and does not accept events",
    ]


async def test_stopping_cancels_a_task_that_outlasts_grace_and_kills_its_processes(
    write_pipeline, start_reactor, store, gates: Path
) -> None:
    write_pipeline("slow.yaml", PIPELINE)
    async with start_reactor(grace=0.2) as reactor:
        run = await reactor.run_now("slow", {"gates": str(gates)})
        await wait_for(
            lambda: (gates / "pid").exists() and (gates / "pid").read_text().strip() != "",
            message="the task to start",
        )
        shell = int((gates / "pid").read_text())

    finished = await store.get_run(run.id)
    assert finished is not None
    assert (finished.status, finished.reason) == (
        "cancelled",
        "the service stopped before the run finished",
    )
    [task] = await store.task_runs(run.id)
    assert task.status == "cancelled"
    [attempt] = await store.attempts(run.id)
    assert attempt.status == "cancelled"
    await wait_for(lambda: gone(shell), message="the task's shell to be killed")
