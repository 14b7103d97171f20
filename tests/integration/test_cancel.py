"""Cancelling a run or one task: processes killed, dependants marked, who asked recorded."""

from __future__ import annotations

import httpx
import pytest
from helpers import processes_of, wait_for

from reactor.client import AsyncClient
from reactor.errors import AdmissionError, ClientError
from reactor.store import Store

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

RUN_AND_BRANCH = """
name: work
tasks:
  - id: slow
    shell: "sleep 300 & sleep 300"
  - id: after_slow
    needs: slow
    shell: echo after
  - id: cleanup
    needs: slow
    run_if: all_done
    shell: echo cleaned
  - id: other
    shell: echo other
"""


async def running(store: Store, run_id: str, task_id: str) -> bool:
    return any(
        t.task_id == task_id and t.status == "running" for t in await store.task_runs(run_id)
    )


async def test_cancelling_a_run_kills_its_processes_and_ends_every_task(
    write_pipeline, start_reactor, store: Store
) -> None:
    write_pipeline("work.yaml", RUN_AND_BRANCH)
    async with start_reactor() as reactor:
        run = await reactor.run_now("work")
        await wait_for(lambda: len(processes_of(run.id)) >= 2, message="the shell's sleepers")
        ended = await reactor.cancel_run(run.id, actor="alice")
    assert (ended.status, ended.reason) == ("cancelled", "cancelled by alice")
    tasks = {t.task_id: t.status for t in await store.task_runs(run.id)}
    assert tasks["slow"] == "cancelled"
    assert tasks["after_slow"] == "cancelled"
    assert tasks["cleanup"] == "cancelled"
    await wait_for(lambda: not processes_of(run.id), message="no process of the run left")
    [attempt] = [a for a in await store.attempts(run.id) if a.task_id == "slow"]
    assert (attempt.status, attempt.error) == ("cancelled", "cancelled by alice")


async def test_cancelling_one_task_lets_the_run_go_on(
    write_pipeline, start_reactor, store: Store
) -> None:
    write_pipeline("work.yaml", RUN_AND_BRANCH)
    async with start_reactor() as reactor:
        run = await reactor.run_now("work")
        await wait_for(lambda: len(processes_of(run.id)) >= 2, message="the shell's sleepers")
        await reactor.cancel_task(run.id, "slow", actor="bob")
        ended = await reactor.wait_run(run.id)
    tasks = {t.task_id: t for t in await store.task_runs(run.id)}
    assert tasks["slow"].status == "cancelled"
    assert tasks["slow"].error == "cancelled by bob"
    # Its dependants are decided as after any failure; the other branch ran.
    assert tasks["after_slow"].status == "upstream_failed"
    assert tasks["cleanup"].status == "succeeded"
    assert tasks["other"].status == "succeeded"
    # Nothing failed: the run ends cancelled, saying which task and by whom.
    assert (ended.status, ended.reason) == ("cancelled", "task slow cancelled by bob")
    assert not processes_of(run.id)
    events = [e.event.type for e in await store.find_events(f"{run.id}/slow/1", limit=5)]
    assert events == ["reactor.task.cancelled"]


async def test_cancelling_a_loop_task_ends_its_iterations(
    write_pipeline, start_reactor, store: Store
) -> None:
    write_pipeline(
        "loop.yaml",
        """
        name: loop
        tasks:
          - id: each
            for_each: [1, 2, 3, 4]
            concurrency: 2
            task:
              shell: "sleep 300"
        """,
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("loop")
        await wait_for(lambda: len(processes_of(run.id)) >= 2, message="two iterations")
        await reactor.cancel_task(run.id, "each", actor="carol")
        ended = await reactor.wait_run(run.id)
    tasks = {t.task_id: t.status for t in await store.task_runs(run.id)}
    assert ended.status == "cancelled"
    assert tasks == dict.fromkeys(["each", "each[0]", "each[1]", "each[2]", "each[3]"], "cancelled")
    await wait_for(lambda: not processes_of(run.id), message="no process of the run left")


async def test_a_queued_run_is_cancelled_without_starting(
    write_pipeline, start_reactor, store: Store
) -> None:
    write_pipeline(
        "one.yaml",
        """
        name: one
        concurrency: {max_active_runs: 1}
        tasks:
          - id: slow
            shell: "sleep 300"
        """,
    )
    async with start_reactor() as reactor:
        first = await reactor.run_now("one")
        second = await reactor.run_now("one")
        assert second.status == "queued"
        ended = await reactor.cancel_run(second.id, actor="dave")
        assert (ended.status, ended.reason) == ("cancelled", "cancelled by dave")
        assert await store.task_runs(second.id) == []
        await reactor.cancel_run(first.id, actor="dave")


async def test_finished_or_unknown_runs_and_idle_tasks_are_refused(
    write_pipeline, start_reactor
) -> None:
    write_pipeline("work.yaml", RUN_AND_BRANCH.replace('"sleep 300 & sleep 300"', "echo quick"))
    async with start_reactor() as reactor:
        run = await reactor.run_now("work")
        await reactor.wait_run(run.id)
        with pytest.raises(AdmissionError, match=r"has ended already \(succeeded\)"):
            await reactor.cancel_run(run.id, actor="eve")
        with pytest.raises(AdmissionError, match="no run 'nope'"):
            await reactor.cancel_run("nope", actor="eve")
        with pytest.raises(AdmissionError, match="is not running here"):
            await reactor.cancel_task(run.id, "slow", actor="eve")


async def test_the_api_and_client_cancel_runs_and_tasks(
    write_pipeline, start_reactor, store: Store
) -> None:
    write_pipeline("work.yaml", RUN_AND_BRANCH)
    async with start_reactor(http=("127.0.0.1", 0)) as reactor:
        base = f"http://127.0.0.1:{reactor.http_port}"
        run = await reactor.run_now("work")
        await wait_for(lambda: running(store, run.id, "slow"), message="slow to run")
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            answer = await http.post(f"/api/runs/{run.id}/tasks/nope/cancel")
            assert answer.status_code == 409
            assert "has no task 'nope'" in answer.json()["error"]
            answer = await http.post("/api/runs/nope/cancel")
            assert (answer.status_code, answer.json()) == (404, {"error": "no run 'nope'"})
        async with AsyncClient(base) as client:
            answer = await client.cancel(run.id, task="slow", actor="frank")
            assert answer == {"run_id": run.id, "task_id": "slow", "cancelling": True}
            ended = await client.wait_run(run.id)
            assert (ended["status"], ended["reason"]) == (
                "cancelled",
                "task slow cancelled by frank",
            )
            with pytest.raises(ClientError) as caught:
                await client.cancel(run.id)
            assert caught.value.status == 409
            second = await reactor.run_now("work")
            await wait_for(lambda: running(store, second.id, "slow"), message="slow to run")
            answer = await client.cancel(second.id)
            assert (answer["status"], answer["reason"]) == ("cancelled", "cancelled by api")
