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


QUICK = """
name: quick
triggers:
  - on: event
    type: burst.item
tasks:
  - id: work
    shell: "echo {{ event.data.n }}"
"""


async def test_events_handed_in_just_before_a_stop_are_evaluated_and_run_after_restart(
    write_pipeline, start_reactor, store
) -> None:
    write_pipeline("quick.yaml", QUICK)
    events = [Event("burst.item", "tests/burst", {"n": n}, id=f"item-{n}") for n in range(50)]
    async with start_reactor() as reactor:
        # emit() returns once each event is stored, not once it is evaluated: the stop
        # below finds most of them still queued for the rule engine.
        for event in events:
            await reactor.emit(event)

    for event in events:
        stored = await store.get_event("tests/burst", event.id)
        assert stored is not None and stored.outcome is not None, event.id
        [decision] = stored.outcome
        assert decision["fired"] is True
    async with start_reactor():
        await wait_for(lambda: _all_succeeded(store, len(events)), message="every run to succeed")
    runs = await store.list_runs(pipeline="quick", limit=100, before=None)
    assert sorted(r.event_ids[0] for r in runs) == sorted(e.id for e in events)


async def _all_succeeded(store, count: int) -> bool:
    runs = await store.list_runs(pipeline="quick", limit=100, before=None)
    return len(runs) == count and all(r.status == "succeeded" for r in runs)
