"""``on: pipeline``: a run's end is an event that starts the pipelines chained to it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from helpers import Recorder, wait_for

from reactor.errors import AdmissionError, SpecErrorGroup
from reactor.events import Event
from reactor.store import RunRecord, Store, TaskRecord

from .support import wait_run

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

EXTRACT = """
name: extract
params:
  day: {type: string}
  region: {type: string, default: eu}
  fail: {type: boolean, default: false}
  seconds: {type: integer, default: 0}
concurrency: {max_active_runs: 1, on_overlap: cancel_running}
tasks:
  - id: count
    shell: "sleep {{ params.seconds }}; echo 42"
  - id: check
    needs: [count]
    shell: "test {{ params.fail }} = False"
"""

REPORT = """
name: report
params:
  day: {type: string}
  rows: {type: integer}
  upstream: {type: string}
triggers:
  - on: pipeline
    pipeline: extract
    params:
      day: "{{ event.data.params.day }}"
      rows: "{{ event.data.outputs.count }}"
      upstream: "{{ event.data.run_id }}"
tasks:
  - id: show
    shell: "echo {{ params.day }} {{ params.rows }}"
"""

ALERT = """
name: alert
params:
  status: {type: string}
triggers:
  - on: pipeline
    pipeline: extract
    status: [failed, cancelled]
    params: {status: "{{ event.data.status }}"}
tasks:
  - id: page
    shell: "echo extract {{ params.status }}"
"""


async def runs_of(store: Store, pipeline: str) -> list[RunRecord]:
    return list(reversed(await store.list_runs(pipeline=pipeline, limit=100, before=None)))


async def wait_runs(store: Store, pipeline: str, count: int) -> list[RunRecord]:
    """Wait until ``pipeline`` has ``count`` runs and all of them finished."""

    async def there() -> bool:
        return len(await runs_of(store, pipeline)) >= count

    await wait_for(there, message=f"{count} run(s) of {pipeline}")
    return [await wait_run(store, r.id) for r in await runs_of(store, pipeline)]


async def run_event_of(store: Store, run: RunRecord) -> Any:
    stored = await store.get_event(f"reactor/pipelines/{run.pipeline}", run.id)
    assert stored is not None, f"no event for the end of run {run.id}"
    return stored


async def test_a_succeeded_run_starts_its_downstream_with_its_params_and_outputs(
    write_pipeline, start_reactor, store
) -> None:
    write_pipeline("extract.yaml", EXTRACT)
    write_pipeline("report.yaml", REPORT)
    write_pipeline("alert.yaml", ALERT)
    async with start_reactor() as reactor:
        started = await reactor.run_now("extract", {"day": "2026-03-01"})
        upstream = await reactor.wait_run(started.id)
        [report] = await wait_runs(store, "report", 1)

    assert upstream.status == "succeeded"
    assert (report.status, report.trigger) == ("succeeded", "report/pipeline")
    assert report.params == {"day": "2026-03-01", "rows": 42, "upstream": upstream.id}
    assert report.event_ids == [upstream.id]
    assert [t.output for t in await store.task_runs(report.id)] == ["2026-03-01 42"]
    assert await runs_of(store, "alert") == []

    stored = await run_event_of(store, upstream)
    assert (stored.event.type, stored.event.id, stored.event.source) == (
        "reactor.run.succeeded",
        upstream.id,
        "reactor/pipelines/extract",
    )
    assert stored.event.data == {
        "pipeline": "extract",
        "run_id": upstream.id,
        "status": "succeeded",
        "params": {"day": "2026-03-01", "region": "eu", "fail": False, "seconds": 0},
        "outputs": {"count": "42", "check": None},
    }
    # Why alert did not start is on record, as for any event.
    reasons = {d["trigger"]: (d["fired"], d["reason"]) for d in stored.outcome}
    assert reasons == {
        "report/pipeline": (True, "matched"),
        "alert/pipeline": (False, "event not accepted by the trigger"),
    }
    # The downstream run's own end is an event too (nothing is chained to it).
    assert (await run_event_of(store, report)).event.type == "reactor.run.succeeded"


async def test_status_picks_failed_and_cancelled_runs(
    write_pipeline, start_reactor, store, recorder: Recorder
) -> None:
    write_pipeline("extract.yaml", EXTRACT)
    write_pipeline("report.yaml", REPORT)
    write_pipeline("alert.yaml", ALERT)
    async with start_reactor() as reactor:
        failing = await reactor.run_now("extract", {"day": "d1", "fail": True})
        assert (await reactor.wait_run(failing.id)).status == "failed"
        [first_alert] = await wait_runs(store, "alert", 1)

        # A newer run cancels the running one (on_overlap: cancel_running).
        slow = await reactor.run_now("extract", {"day": "d2", "seconds": 30})
        await wait_for(
            lambda: (slow.id, "count", "running") in recorder.tasks, message="the slow task"
        )
        quick = await reactor.run_now("extract", {"day": "d3"})
        assert (await reactor.wait_run(slow.id)).status == "cancelled"
        assert (await reactor.wait_run(quick.id)).status == "succeeded"
        alerts = await wait_runs(store, "alert", 2)
        [report] = await wait_runs(store, "report", 1)

    assert first_alert.params == {"status": "failed"}
    assert [(a.params, a.event_ids) for a in alerts] == [
        ({"status": "failed"}, [failing.id]),
        ({"status": "cancelled"}, [slow.id]),
    ]
    assert (report.params["day"], report.event_ids) == ("d3", [quick.id])
    failed_event = await run_event_of(store, await wait_run(store, failing.id))
    assert failed_event.event.data["outputs"] == {"count": "42"}


async def test_when_filters_on_the_upstream_run(write_pipeline, start_reactor, store) -> None:
    write_pipeline("extract.yaml", EXTRACT)
    write_pipeline(
        "us.yaml",
        """
        name: us_report
        params:
          day: {type: string}
        triggers:
          - on: pipeline
            pipeline: extract
            when: "event.data.params.region == 'us' and event.data.outputs.count | int > 10"
            params: {day: "{{ event.data.params.day }}"}
        tasks:
          - id: show
            shell: "echo {{ params.day }}"
        """,
    )
    async with start_reactor() as reactor:
        eu = await reactor.wait_run((await reactor.run_now("extract", {"day": "d1"})).id)
        us = await reactor.run_now("extract", {"day": "d2", "region": "us"})
        await reactor.wait_run(us.id)
        [report] = await wait_runs(store, "us_report", 1)

    assert (report.params, report.event_ids) == ({"day": "d2"}, [us.id])
    [skipped] = (await run_event_of(store, eu)).outcome
    assert (skipped["fired"], skipped["reason"]) == (
        False,
        "when: \"event.data.params.region == 'us' and event.data.outputs.count | int > 10\""
        " is false (event.data.params.region = 'eu', event.data.outputs.count = '42')",
    )


async def test_a_redelivered_run_event_starts_nothing(write_pipeline, start_reactor, store) -> None:
    write_pipeline("extract.yaml", EXTRACT)
    write_pipeline("report.yaml", REPORT)
    async with start_reactor() as reactor:
        upstream = await reactor.wait_run((await reactor.run_now("extract", {"day": "d1"})).id)
        [report] = await wait_runs(store, "report", 1)
        stored = await run_event_of(store, upstream)
        again = await reactor.publish(stored.event)
        same_id = await reactor.publish(
            Event(stored.event.type, stored.event.source, stored.event.data, id=upstream.id)
        )

    assert (again.duplicate, again.run_ids) == (True, [report.id])
    assert (same_id.duplicate, same_id.run_ids) == (True, [report.id])
    assert len(await runs_of(store, "report")) == 1


async def test_a_run_whose_end_event_was_lost_gets_it_at_the_next_start_once(
    write_pipeline, start_reactor, store
) -> None:
    write_pipeline("extract.yaml", EXTRACT)
    write_pipeline("report.yaml", REPORT)
    # A process recorded the end of this run and died before making it an event.
    ended = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
    lost = RunRecord(
        id="lost-run",
        run_key="extract/manual@lost",
        pipeline="extract",
        version="v0",
        status="queued",
        params={"day": "d0", "region": "eu", "fail": False, "seconds": 0},
        trigger=None,
        event_ids=[],
        created_at=ended,
    )
    await store.create_run(lost)
    await store.save_tasks(
        [
            TaskRecord("lost-run", "count", "succeeded", 1, ended, ended, 7),
            TaskRecord("lost-run", "check", "failed", 1, ended, ended, None, "exit 1"),
        ]
    )
    await store.set_run_status("lost-run", "succeeded", at=ended)
    assert await store.runs_without_event("reactor/pipelines/", 10) != []

    async with start_reactor():
        [report] = await wait_runs(store, "report", 1)
    async with start_reactor():
        pass

    assert (report.params, report.event_ids) == (
        {"day": "d0", "rows": 7, "upstream": "lost-run"},
        ["lost-run"],
    )
    stored = await store.get_event("reactor/pipelines/extract", "lost-run")
    assert stored is not None
    assert stored.event.time == ended
    assert stored.event.data["outputs"] == {"count": 7}
    assert len(await runs_of(store, "report")) == 1
    assert await store.runs_without_event("reactor/pipelines/", 10) == []


async def test_without_chaining_the_end_is_recorded_and_starts_nothing(
    write_pipeline, start_reactor, store
) -> None:
    # What `reactor run` does: one pipeline, and why its downstream did not start.
    write_pipeline("extract.yaml", EXTRACT)
    write_pipeline("report.yaml", REPORT)
    async with start_reactor(chain=False, recover=False) as reactor:
        upstream = await reactor.wait_run((await reactor.run_now("extract", {"day": "d1"})).id)
    async with start_reactor():
        pass

    assert await runs_of(store, "report") == []
    [decision] = (await run_event_of(store, upstream)).outcome
    assert (decision["trigger"], decision["fired"], decision["reason"]) == (
        "report/pipeline",
        False,
        "not started: reactor run starts only the pipeline it runs",
    )


async def test_a_cycle_stops_serve_but_not_a_run_of_an_unrelated_pipeline(
    write_pipeline, start_reactor
) -> None:
    write_pipeline("extract.yaml", EXTRACT.replace("tasks:", ALERT_ON_REPORT + "tasks:", 1))
    write_pipeline("report.yaml", REPORT)
    write_pipeline("alert.yaml", ALERT)
    cycle = (
        "pipelines/report.yaml:8: triggers[0].pipeline: chained pipelines form a cycle:"
        " extract -> report -> extract"
    )
    with pytest.raises(SpecErrorGroup) as caught:
        async with start_reactor():
            pass
    assert [str(p) for p in caught.value.problems] == [cycle]

    # What `reactor run` does: only the pipeline it runs has to be valid.
    async with start_reactor(strict=False, chain=False, recover=False) as reactor:
        assert set(reactor.pipelines) == {"alert"}
        run = await reactor.run_now("alert", {"status": "failed"})
        assert (await reactor.wait_run(run.id)).status == "succeeded"
        with pytest.raises(AdmissionError, match=r"unknown pipeline 'extract' \(known: alert\)"):
            await reactor.run_now("extract", {"day": "d1"})


ALERT_ON_REPORT = """triggers:
  - on: pipeline
    pipeline: report
    params: {day: "{{ event.data.params.day }}"}
"""
