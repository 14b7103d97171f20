"""Admission for real: ``max_active_runs`` with each ``on_overlap`` policy, idempotent runs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from helpers import Recorder, wait_for

from reactor.errors import AdmissionError
from reactor.events import Event
from reactor.store import Store

from .support import wait_run

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

GATES = """
from pathlib import Path

import anyio


async def hold(name, gates):
    # Runs until the test opens this run's gate: the test decides when each run ends.
    folder = Path(gates)
    (folder / f"{name}.started").touch()
    with anyio.fail_after(20):
        while not (folder / f"{name}.go").exists():
            await anyio.sleep(0.005)
    return name
"""

PIPELINE = """
name: jobs
params:
  name: {{type: string}}
  gates: {{type: string}}
concurrency: {{max_active_runs: {limit}, on_overlap: {policy}}}
triggers:
  - on: event
    type: job.requested
    params: {{name: "{{{{ event.data.name }}}}", gates: "{{{{ event.data.gates }}}}"}}
tasks:
  - id: work
    python: {module}:hold
    args: {{name: "{{{{ params.name }}}}", gates: "{{{{ params.gates }}}}"}}
"""


@pytest.fixture
def gates(tmp_path: Path) -> Path:
    folder = tmp_path / "gates"
    folder.mkdir()
    return folder


def started(gates: Path) -> set[str]:
    return {p.stem for p in gates.glob("*.started")}


def release(gates: Path, *names: str) -> None:
    for name in names:
        (gates / f"{name}.go").touch()


def job(name: str, gates: Path) -> Event:
    return Event("job.requested", "test/jobs", {"name": name, "gates": str(gates)})


@pytest.fixture
def jobs_pipeline(write_pipeline, write_module):
    def write(limit: int, policy: str) -> None:
        module = write_module(GATES)
        write_pipeline("jobs.yaml", PIPELINE.format(limit=limit, policy=policy, module=module))

    return write


async def statuses(store: Store, run_ids: list[str]) -> list[str]:
    return [(await store.get_run(run_id)).status for run_id in run_ids]


async def test_queue_runs_wait_and_start_in_order(
    jobs_pipeline, gates, start_reactor, store, recorder: Recorder
) -> None:
    jobs_pipeline(limit=1, policy="queue")
    async with start_reactor() as reactor:
        ids = [(await reactor.publish(job(n, gates))).run_ids[0] for n in ("a", "b", "c")]
        await wait_for(lambda: started(gates) == {"a"}, message="a to start")
        assert await statuses(store, ids) == ["running", "queued", "queued"]
        assert reactor.health()["queued_runs"] == 2

        release(gates, "a")
        await wait_for(lambda: started(gates) == {"a", "b"}, message="b to start after a")
        assert await statuses(store, ids) == ["succeeded", "running", "queued"]

        release(gates, "b", "c")
        runs = [await wait_run(store, run_id) for run_id in ids]

    assert [r.status for r in runs] == ["succeeded"] * 3
    # Each run started only after the one before it ended.
    assert runs[0].ended_at <= runs[1].started_at
    assert runs[1].ended_at <= runs[2].started_at
    order = [(rid, status) for rid, _, status in recorder.changes if status != "queued"]
    assert order == [
        (ids[0], "running"),
        (ids[0], "succeeded"),
        (ids[1], "running"),
        (ids[1], "succeeded"),
        (ids[2], "running"),
        (ids[2], "succeeded"),
    ]


async def test_queue_with_a_limit_of_two_runs_two_at_once(
    jobs_pipeline, gates, start_reactor, store
) -> None:
    jobs_pipeline(limit=2, policy="queue")
    async with start_reactor() as reactor:
        ids = [(await reactor.publish(job(n, gates))).run_ids[0] for n in "abcd"]
        await wait_for(lambda: started(gates) == {"a", "b"}, message="a and b to start")
        assert await statuses(store, ids) == ["running", "running", "queued", "queued"]
        release(gates, "b")
        await wait_for(lambda: started(gates) == {"a", "b", "c"}, message="c to take b's place")
        release(gates, "a", "c", "d")
        runs = [await wait_run(store, run_id) for run_id in ids]

    assert [r.status for r in runs] == ["succeeded"] * 4


async def test_skip_records_skipped_and_starts_nothing(
    jobs_pipeline, gates, start_reactor, store
) -> None:
    jobs_pipeline(limit=1, policy="skip")
    second = job("b", gates)
    async with start_reactor() as reactor:
        [first_id] = (await reactor.publish(job("a", gates))).run_ids
        await wait_for(lambda: started(gates) == {"a"}, message="a to start")
        skipped = await reactor.publish(second)
        with pytest.raises(AdmissionError) as caught:
            await reactor.run_now("jobs", {"name": "c", "gates": str(gates)})
        release(gates, "a")
        first = await wait_run(store, first_id)

        # Once nothing runs, the next event starts a run again.
        [later_id] = (await reactor.publish(job("d", gates))).run_ids
        release(gates, "d")
        later = await wait_run(store, later_id)

    assert skipped.run_ids == []
    stored = await store.get_event(second.source, second.id)
    assert stored is not None
    [decision] = stored.outcome
    assert decision["fired"] is False
    assert decision["reason"] == "skipped: 1 runs active (on_overlap: skip)"
    assert str(caught.value) == "jobs already has 1 active runs (on_overlap: skip)"
    assert (first.status, later.status) == ("succeeded", "succeeded")
    assert started(gates) == {"a", "d"}
    assert len(await store.list_runs(pipeline="jobs", limit=10, before=None)) == 2


async def test_cancel_running_cancels_the_running_run_for_the_new_one(
    jobs_pipeline, gates, start_reactor, store
) -> None:
    jobs_pipeline(limit=1, policy="cancel_running")
    async with start_reactor() as reactor:
        [old_id] = (await reactor.publish(job("a", gates))).run_ids
        await wait_for(lambda: started(gates) == {"a"}, message="a to start")
        [new_id] = (await reactor.publish(job("b", gates))).run_ids
        old = await wait_run(store, old_id)
        await wait_for(lambda: "b" in started(gates), message="b to start")
        release(gates, "b")
        new = await wait_run(store, new_id)

    assert old.status == "cancelled"
    assert old.reason == f"cancelled for newer run {new_id} (on_overlap: cancel_running)"
    [task] = await store.task_runs(old_id)
    assert task.status == "cancelled"
    [attempt] = await store.attempts(old_id)
    assert attempt.status == "cancelled"
    assert new.status == "succeeded"
    assert old.ended_at <= new.started_at


async def test_allow_runs_everything_at_once(jobs_pipeline, gates, start_reactor, store) -> None:
    jobs_pipeline(limit=1, policy="allow")
    async with start_reactor() as reactor:
        ids = [(await reactor.publish(job(n, gates))).run_ids[0] for n in "abc"]
        await wait_for(lambda: started(gates) == {"a", "b", "c"}, message="all three to start")
        assert await statuses(store, ids) == ["running"] * 3
        release(gates, "a", "b", "c")
        runs = [await wait_run(store, run_id) for run_id in ids]

    assert [r.status for r in runs] == ["succeeded"] * 3


async def test_queued_runs_survive_a_restart(jobs_pipeline, gates, start_reactor, store) -> None:
    jobs_pipeline(limit=1, policy="queue")
    async with start_reactor(grace=0.0) as reactor:
        ids = [(await reactor.publish(job(n, gates))).run_ids[0] for n in "ab"]
        await wait_for(lambda: started(gates) == {"a"}, message="a to start")
    # The running one was cancelled by the stop (no grace); the queued one is still queued.
    assert await statuses(store, ids) == ["cancelled", "queued"]

    async with start_reactor() as reactor:
        await wait_for(lambda: "b" in started(gates), message="the queued run to start")
        release(gates, "b")
        resumed = await wait_run(store, ids[1])
    assert resumed.status == "succeeded"


async def test_an_event_stored_before_a_crash_is_evaluated_once_at_start(
    jobs_pipeline, gates, start_reactor, store
) -> None:
    jobs_pipeline(limit=4, policy="queue")
    release(gates, "a")
    event = job("a", gates)
    # Persisted, then the process died before the rule engine saw it.
    assert await store.ingest(event, datetime.now(UTC)) == (event.id, True)

    async with start_reactor() as reactor:
        await wait_for(lambda: "a" in started(gates), message="the stored event's run")
        again = await reactor.publish(event)
    runs = await store.list_runs(pipeline="jobs", limit=10, before=None)
    assert len(runs) == 1
    assert again.duplicate is True
    assert again.run_ids == [runs[0].id]
    assert runs[0].event_ids == [event.id]


@pytest.mark.parametrize("policy", ["skip", "queue"])
async def test_limits_hold_for_a_burst_of_events_evaluated_together(
    policy: str, jobs_pipeline, gates, start_reactor, store
) -> None:
    jobs_pipeline(limit=2, policy=policy)
    async with start_reactor() as reactor:
        results: dict[str, list[str]] = {}

        async def publish(name: str) -> None:
            results[name] = list((await reactor.publish(job(name, gates))).run_ids)

        # Published at once: the rule loop evaluates them in batches.
        async with anyio.create_task_group() as tg:
            for n in range(12):
                tg.start_soon(publish, f"j{n}")
        run_ids = [rid for ids in results.values() for rid in ids]
        await wait_for(lambda: len(started(gates)) == 2, message="two runs to start")
        assert reactor.health()["active_runs"] == 2
        if policy == "skip":
            assert len(run_ids) == 2
        else:
            assert len(run_ids) == 12
            assert sorted(await statuses(store, run_ids)).count("running") == 2
        release(gates, *(f"j{n}" for n in range(12)))
        for run_id in run_ids:
            assert (await wait_run(store, run_id)).status == "succeeded"
