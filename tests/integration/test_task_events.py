"""Task ends are events (``reactor.task.<status>``) that ``on: event`` triggers can match."""

from __future__ import annotations

import pytest

from reactor.store import Store

from .test_chaining import runs_of, wait_runs

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

LOAD = """
name: load
params:
  fail: {type: boolean, default: false}
tasks:
  - id: extract
    shell: "echo 7"
  - id: check
    needs: [extract]
    shell: "test {{ params.fail }} = False"
  - id: publish
    needs: [check]
    shell: "echo published"
"""

ON_FAILED_TASK = """
name: page
params:
  task: {type: string}
  run: {type: string}
  error: {type: string}
triggers:
  - on: event
    type: reactor.task.failed
    source: reactor/pipelines/load
    params:
      task: "{{ event.data.task_id }}"
      run: "{{ event.data.run_id }}"
      error: "{{ event.data.error }}"
tasks:
  - id: tell
    shell: "echo {{ params.task }} failed"
"""

EVERYTHING = """
name: everything
triggers:
  - on: event
    type: "*"
tasks:
  - id: noop
    shell: "true"
"""


async def task_event(store: Store, pipeline: str, run_id: str, task_id: str, attempt: int = 1):
    stored = await store.get_event(f"reactor/pipelines/{pipeline}", f"{run_id}/{task_id}/{attempt}")
    assert stored is not None, f"no event for task {task_id} of run {run_id}"
    return stored


async def test_a_failed_task_starts_the_pipeline_listening_for_it(
    write_pipeline, start_reactor, store
) -> None:
    write_pipeline("load.yaml", LOAD)
    write_pipeline("page.yaml", ON_FAILED_TASK)
    write_pipeline("everything.yaml", EVERYTHING)
    async with start_reactor() as reactor:
        failing = await reactor.run_now("load", {"fail": True})
        assert (await reactor.wait_run(failing.id)).status == "failed"
        [page] = await wait_runs(store, "page", 1)

    assert page.params["task"] == "check"
    assert page.params["run"] == failing.id
    check = {t.task_id: t for t in await store.task_runs(failing.id)}["check"]
    assert check.error and page.params["error"] == check.error
    assert [t.output for t in await store.task_runs(page.id)] == ["check failed"]

    stored = await task_event(store, "load", failing.id, "check")
    assert stored.event.type == "reactor.task.failed"
    assert stored.event.subject == "load/check"
    assert stored.event.data["attempts"] == 1
    decisions = {d["trigger"]: (d["fired"], d["reason"]) for d in stored.outcome or []}
    assert decisions == {
        "page/event": (True, "matched"),
        "everything/event": (False, "event not accepted by the trigger"),
    }
    # Tasks that succeeded and tasks that never ran are events too.
    assert (await task_event(store, "load", failing.id, "extract")).event.type == (
        "reactor.task.succeeded"
    )
    upstream_failed = await task_event(store, "load", failing.id, "publish", attempt=0)
    assert upstream_failed.event.type == "reactor.task.upstream_failed"
    # A catch-all "*" trigger does not fire on task (or run) ends: that would loop.
    assert await runs_of(store, "everything") == []


async def test_task_events_nobody_listens_to_are_stored_as_evaluated(
    write_pipeline, start_reactor, store
) -> None:
    write_pipeline("load.yaml", LOAD)
    async with start_reactor() as reactor:
        run = await reactor.run_now("load", {})
        assert (await reactor.wait_run(run.id)).status == "succeeded"

    for task_id in ("extract", "check", "publish"):
        stored = await task_event(store, "load", run.id, task_id)
        assert stored.event.type == "reactor.task.succeeded"
        assert stored.outcome == []
    # Nothing is left for the next start to evaluate.
    assert await store.unevaluated_events(10) == []
