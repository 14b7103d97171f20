"""``run_pipeline:`` on a real store: child runs, waiting, outcomes, links, cancellation."""

from __future__ import annotations

import sys

import httpx
import pytest
from helpers import imported, wait_for

from reactor.pipelines import load_folder
from reactor.store import Store

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

STEPS = """
import anyio

gate = {}


async def hold(name):
    gate.setdefault(name, anyio.Event())
    await gate[name].wait()
    return name
"""

CHILD = """
name: load_day
params:
  day: {type: date}
  fail: {type: boolean, default: false}
tasks:
  - id: load
    shell: "echo loaded {{ params.day }}"
  - id: check
    needs: load
    if: "params.fail"
  - id: boom
    needs: [{task: check, outcome: true}]
    shell: "exit 3"
"""


def started(module: str, name: str) -> bool:
    """Whether the task module's ``hold(name)`` is waiting (the module is imported by then)."""
    return name in (imported(module, "gate") or ())


def parent(body: str) -> str:
    return "name: month\nparams:\n  fail: {type: boolean, default: false}\ntasks:\n" + body


async def test_a_child_run_is_waited_for_and_its_outputs_are_the_tasks_output(
    write_pipeline, start_reactor, store: Store
) -> None:
    write_pipeline("child.yaml", CHILD)
    write_pipeline(
        "parent.yaml",
        parent(
            """
  - id: day
    run_pipeline:
      pipeline: load_day
      params: {day: "2026-11-01"}
  - id: report
    needs: day
    shell: "echo {{ tasks.day.output.outputs.load }} in run {{ tasks.day.output.run_id }}"
"""
        ),
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("month")
        finished = await reactor.wait_run(run.id)
    assert finished.status == "succeeded", finished.reason
    tasks = {t.task_id: t for t in await store.task_runs(run.id)}
    output = tasks["day"].output
    assert output["pipeline"] == "load_day"
    assert output["status"] == "succeeded"
    assert output["outputs"]["load"] == "loaded 2026-11-01"
    child = await store.get_run(output["run_id"])
    assert child is not None
    assert child.params == {"day": "2026-11-01", "fail": False}
    # The child names its parent; the parent names its child in the task's output.
    assert child.parent == {"run_id": run.id, "task_id": "day"}
    assert child.to_json()["parent"] == {"run_id": run.id, "task_id": "day"}
    assert finished.parent is None
    assert tasks["report"].output == f"loaded 2026-11-01 in run {child.id}"


async def test_a_failed_child_fails_the_task_with_its_reason_and_keeps_its_result(
    write_pipeline, start_reactor, store: Store
) -> None:
    write_pipeline("child.yaml", CHILD)
    write_pipeline(
        "parent.yaml",
        parent(
            """
  - id: day
    run_pipeline: {pipeline: load_day, params: {day: "2026-11-01", fail: true}}
  - id: after
    needs: day
    shell: echo never
"""
        ),
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("month")
        finished = await reactor.wait_run(run.id)
    assert finished.status == "failed"
    tasks = {t.task_id: t for t in await store.task_runs(run.id)}
    day = tasks["day"]
    assert day.status == "failed"
    child_id = day.output["run_id"]
    assert day.error == f"child run {child_id} of load_day failed: task boom failed"
    assert day.output["status"] == "failed"
    assert day.output["outputs"]["check"] is True
    assert tasks["after"].status == "upstream_failed"


async def test_each_attempt_starts_its_own_child_and_a_retry_can_pass(
    write_pipeline, start_reactor, store: Store
) -> None:
    write_pipeline("child.yaml", CHILD)
    write_pipeline(
        "parent.yaml",
        parent(
            """
  - id: day
    run_pipeline: {pipeline: load_day, params: {day: "2026-11-01", fail: true}}
    retries: {max: 1, initial: 10ms}
"""
        ),
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("month")
        await reactor.wait_run(run.id)
        children = [r for r in await store.list_runs(pipeline="load_day", limit=10, before=None)]
    assert len(children) == 2
    assert sorted(r.run_key.rsplit("/", 1)[1] for r in children) == ["1", "2"]
    assert {r.parent["task_id"] for r in children if r.parent} == {"day"}


async def test_wait_false_succeeds_once_the_child_is_admitted(
    write_pipeline, write_module, start_reactor, store: Store
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "child.yaml",
        f"""
        name: slow
        tasks:
          - id: wait
            python: {mod}:hold
            args: {{name: slow}}
        """,
    )
    write_pipeline(
        "parent.yaml",
        parent("  - id: start\n    run_pipeline: {pipeline: slow, wait: false}\n"),
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("month")
        finished = await reactor.wait_run(run.id)
        assert finished.status == "succeeded"
        [task] = await store.task_runs(run.id)
        assert task.output["status"] in ("queued", "running")
        child = await store.get_run(task.output["run_id"])
        assert child is not None and child.status in ("queued", "running")
        # The child goes on by itself.
        await wait_for(lambda: started(mod, "slow"), message="the child's task to start")
        sys.modules[mod].gate["slow"].set()
        assert (await reactor.wait_run(child.id)).status == "succeeded"


async def test_cancelling_the_parent_cancels_the_child_it_waits_for(
    write_pipeline, write_module, start_reactor, store: Store
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "child.yaml",
        f"""
        name: slow
        tasks:
          - id: wait
            python: {mod}:hold
            args: {{name: forever}}
        """,
    )
    write_pipeline(
        "parent.yaml",
        parent("  - id: start\n    run_pipeline: {pipeline: slow}\n    timeout: 30s\n"),
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("month")
        await wait_for(lambda: started(mod, "forever"), message="the child's task to start")
        [child] = await store.list_runs(pipeline="slow", limit=10, before=None)
        finished = await reactor.cancel_run(run.id, actor="the test")
        stopped = await reactor.wait_run(child.id)
    assert finished.status == "cancelled"
    assert stopped.status == "cancelled"
    assert stopped.reason == f"its parent task {run.id}/start was stopped"


async def test_bad_child_params_fail_the_task_naming_the_param(
    write_pipeline, start_reactor, store: Store
) -> None:
    write_pipeline("child.yaml", CHILD)
    write_pipeline(
        "parent.yaml",
        parent(
            """
  - id: day
    run_pipeline: {pipeline: load_day, params: {day: "{{ params.fail }}"}}
"""
        ),
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("month")
        finished = await reactor.wait_run(run.id)
    assert finished.status == "failed"
    [day] = await store.task_runs(run.id)
    assert day.error is not None
    assert day.error.startswith("cannot start load_day: load_day: param 'day': expected date")


async def test_the_api_shows_the_child_and_its_parent(
    write_pipeline, start_reactor, store: Store
) -> None:
    write_pipeline("child.yaml", CHILD)
    write_pipeline(
        "parent.yaml",
        parent(
            '  - id: day\n    run_pipeline: {pipeline: load_day, params: {day: "2026-11-02"}}\n'
        ),
    )
    async with start_reactor(http=("127.0.0.1", 0)) as reactor:
        run = await reactor.run_now("month")
        await reactor.wait_run(run.id)
        base = f"http://127.0.0.1:{reactor.http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            shown = (await client.get(f"/api/runs/{run.id}")).json()
            child_id = shown["tasks"][0]["output"]["run_id"]
            child = (await client.get(f"/api/runs/{child_id}")).json()
    assert shown["parent"] is None
    assert child["parent"] == {"run_id": run.id, "task_id": "day"}
    assert child["pipeline"] == "load_day"


def test_validate_refuses_unknown_children_bad_params_and_cycles(
    write_pipeline, pipelines_dir
) -> None:
    write_pipeline(
        "a.yaml",
        """
        name: a
        tasks:
          - id: call_b
            run_pipeline: {pipeline: b}
        """,
    )
    write_pipeline(
        "b.yaml",
        """
        name: b
        params:
          day: {type: string}
        tasks:
          - id: call_a
            run_pipeline:
              pipeline: a
              params: {nope: 1}
          - id: loop
            for_each: [1]
            task:
              run_pipeline: {pipeline: lod_day}
        """,
    )
    write_pipeline("c.yaml", "name: load_day\ntasks:\n  - {id: x, shell: echo}\n")
    result = load_folder(pipelines_dir)
    folder = pipelines_dir.name
    assert [str(p) for p in result.problems] == [
        f"{folder}/a.yaml:4: tasks[0].run_pipeline.params: b requires param 'day',"
        " which is not given",
        f"{folder}/b.yaml:7: tasks[0].run_pipeline.pipeline: run_pipeline forms a cycle:"
        " a -> b -> a",
        f"{folder}/b.yaml:8: tasks[0].run_pipeline.params: a has no param 'nope' (declared: none)",
        f"{folder}/b.yaml:12: tasks[1].task.run_pipeline.pipeline: unknown pipeline 'lod_day'"
        " (did you mean 'load_day'?)",
    ]
    assert set(result.pipelines) == {"load_day"}


def test_a_pipeline_cannot_run_itself(write_pipeline, pipelines_dir) -> None:
    write_pipeline("a.yaml", "name: a\ntasks:\n  - id: me\n    run_pipeline: {pipeline: a}\n")
    result = load_folder(pipelines_dir)
    assert [p.message for p in result.problems] == ["run_pipeline forms a cycle: a -> a"]
