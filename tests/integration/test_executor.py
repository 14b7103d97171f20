"""The executor on a real store: DAG order, parallelism, outputs, failures, retries, timeouts."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from helpers import Recorder

from reactor.clock import FakeClock

from .support import pump

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

STEPS = """
import threading

import anyio

arrived = set()
calls = {"flaky": 0}
started = set()


def start():
    return {"n": 21, "in_worker_thread": threading.current_thread() is not threading.main_thread()}


async def meet(me, other, n):
    # b and c each wait for the other to have started: only parallel tasks get through.
    arrived.add(me)
    with anyio.fail_after(5):
        while other not in arrived:
            await anyio.sleep(0.005)
    return {"me": me, "n": n * 2}


def join(left, right):
    return left["n"] + right["n"]


def ok():
    return "ok"


def boom():
    raise ValueError("boom on purpose")


def flaky(fail_times):
    calls["flaky"] += 1
    if calls["flaky"] <= fail_times:
        raise RuntimeError(f"attempt {calls['flaky']} failed")
    return calls["flaky"]


async def forever(name):
    started.add(name)
    await anyio.sleep_forever()
"""


def position(recorder: Recorder, run_id: str, task_id: str, status: str) -> int:
    return recorder.tasks.index((run_id, task_id, status))


async def test_diamond_runs_in_dependency_order_with_parallel_middle_and_outputs(
    write_pipeline, write_module, start_reactor, store, recorder
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "diamond.yaml",
        f"""
        name: diamond
        tasks:
          - id: a
            python: {mod}:start
          - id: b
            needs: [a]
            python: {mod}:meet
            args: {{me: b, other: c, n: "{{{{ tasks.a.output.n }}}}"}}
          - id: c
            needs: a
            python: {mod}:meet
            args: {{me: c, other: b, n: "{{{{ tasks.a.output.n }}}}"}}
          - id: d
            needs: [b, c]
            python: {mod}:join
            args: {{left: "{{{{ tasks.b.output }}}}", right: "{{{{ tasks.c.output }}}}"}}
        """,
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("diamond")
        finished = await reactor.wait_run(run.id)

    assert finished.status == "succeeded", finished.reason
    tasks = {t.task_id: t for t in await store.task_runs(run.id)}
    assert {t: r.status for t, r in tasks.items()} == dict.fromkeys("abcd", "succeeded")
    # A sync function runs in a worker thread; its return value is the output.
    assert tasks["a"].output == {"n": 21, "in_worker_thread": True}
    # A single-expression template keeps the native type: 21 * 2, not "21" * 2.
    assert tasks["b"].output == {"me": "b", "n": 42}
    assert tasks["c"].output == {"me": "c", "n": 42}
    assert tasks["d"].output == 84
    assert all(t.attempts == 1 for t in tasks.values())

    rid = run.id
    assert position(recorder, rid, "a", "succeeded") < position(recorder, rid, "b", "running")
    assert position(recorder, rid, "a", "succeeded") < position(recorder, rid, "c", "running")
    for middle in ("b", "c"):
        assert position(recorder, rid, middle, "succeeded") < position(
            recorder, rid, "d", "running"
        )
    assert tasks["d"].started_at >= max(tasks["b"].ended_at, tasks["c"].ended_at)


async def test_async_function_output_and_sync_function_in_one_run(
    write_pipeline, write_module, start_reactor, store
) -> None:
    mod = write_module(
        """
        import asyncio

        async def fetch(x):
            await asyncio.sleep(0)
            return {"fetched": x, "loop": asyncio.get_running_loop() is not None}

        def double(value):
            return value * 2
        """
    )
    write_pipeline(
        "mixed.yaml",
        f"""
        name: mixed
        params:
          x: {{type: integer, default: 5}}
        tasks:
          - id: fetch
            python: {mod}:fetch
            args: {{x: "{{{{ params.x }}}}"}}
          - id: double
            needs: [fetch]
            python: {mod}:double
            args: {{value: "{{{{ tasks.fetch.output.fetched }}}}"}}
          - id: text
            needs: [double]
            python: {mod}:double
            args: {{value: "n={{{{ tasks.double.output }}}}"}}
        """,
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("mixed", {"x": 7})
        finished = await reactor.wait_run(run.id)

    assert finished.status == "succeeded", finished.reason
    assert finished.params == {"x": 7}
    outputs = {t.task_id: t.output for t in await store.task_runs(run.id)}
    assert outputs == {"fetch": {"fetched": 7, "loop": True}, "double": 14, "text": "n=14n=14"}


async def test_failing_task_fails_run_and_marks_downstream_upstream_failed(
    write_pipeline, write_module, start_reactor, store
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "breaks.yaml",
        f"""
        name: breaks
        tasks:
          - id: a
            python: {mod}:ok
          - id: bad
            needs: [a]
            python: {mod}:boom
          - id: side
            needs: [a]
            python: {mod}:ok
          - id: after
            needs: [bad]
            python: {mod}:ok
          - id: last
            needs: [after, side]
            python: {mod}:ok
        """,
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("breaks")
        finished = await reactor.wait_run(run.id)

    assert finished.status == "failed"
    assert finished.reason == "task bad failed"
    tasks = {t.task_id: t for t in await store.task_runs(run.id)}
    assert {t: r.status for t, r in tasks.items()} == {
        "a": "succeeded",
        "bad": "failed",
        "side": "succeeded",
        "after": "upstream_failed",
        "last": "upstream_failed",
    }
    assert tasks["bad"].error == "ValueError: boom on purpose"
    assert tasks["after"].attempts == 0
    logs = await store.logs(run.id, after=0, limit=1000)
    traceback = [x.line for x in logs if x.task_id == "bad" and x.stream == "stderr"]
    assert any("ValueError: boom on purpose" in line for line in traceback)


async def test_unimportable_function_fails_the_task_with_the_reason(
    write_pipeline, start_reactor, store
) -> None:
    write_pipeline(
        "missing.yaml",
        """
        name: missing
        tasks:
          - id: a
            python: no_such_module_here:run
        """,
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("missing")
        finished = await reactor.wait_run(run.id)

    assert finished.status == "failed"
    [task] = await store.task_runs(run.id)
    assert task.status == "failed"
    assert task.error is not None
    assert task.error.startswith("cannot import 'no_such_module_here': ModuleNotFoundError")


async def test_retries_count_attempts_and_wait_on_the_clock(
    write_pipeline, write_module, start_reactor, store
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "flaky.yaml",
        f"""
        name: flaky
        tasks:
          - id: shaky
            python: {mod}:flaky
            args: {{fail_times: 2}}
            retries: {{max: 3}}
        """,
    )
    clock = FakeClock()
    async with anyio.create_task_group() as tg:
        tg.start_soon(pump, clock)
        async with start_reactor(clock=clock) as reactor:
            run = await reactor.run_now("flaky")
            finished = await reactor.wait_run(run.id)
        tg.cancel_scope.cancel()

    assert finished.status == "succeeded", finished.reason
    [task] = await store.task_runs(run.id)
    assert (task.status, task.attempts, task.output) == ("succeeded", 3, 3)
    attempts = await store.attempts(run.id)
    assert [(a.attempt, a.status) for a in attempts] == [
        (1, "failed"),
        (2, "failed"),
        (3, "succeeded"),
    ]
    assert attempts[0].error == "RuntimeError: attempt 1 failed"
    # Two fixed 1 s delays passed on the fake clock, none on the wall clock.
    assert clock.monotonic() >= 2.0
    logs = [x.line for x in await store.logs(run.id, after=0, limit=1000) if x.stream == "system"]
    assert "attempt 1 failed: RuntimeError: attempt 1 failed; retrying in 1s" in logs


async def test_retries_exhausted_fail_the_task_with_the_last_error(
    write_pipeline, write_module, start_reactor, store
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "hopeless.yaml",
        f"""
        name: hopeless
        tasks:
          - id: shaky
            python: {mod}:flaky
            args: {{fail_times: 100}}
            retries: {{max: 1}}
        """,
    )
    clock = FakeClock()
    async with anyio.create_task_group() as tg:
        tg.start_soon(pump, clock)
        async with start_reactor(clock=clock) as reactor:
            run = await reactor.run_now("hopeless")
            finished = await reactor.wait_run(run.id)
        tg.cancel_scope.cancel()

    assert finished.status == "failed"
    [task] = await store.task_runs(run.id)
    assert (task.status, task.attempts) == ("failed", 2)
    assert task.error == "RuntimeError: attempt 2 failed"


async def test_timeout_marks_the_task_timed_out(
    write_pipeline, write_module, start_reactor, store
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "slow.yaml",
        f"""
        name: slow
        tasks:
          - id: wait
            python: {mod}:forever
            args: {{name: wait}}
            timeout: 5s
          - id: after
            needs: [wait]
            python: {mod}:ok
        """,
    )
    clock = FakeClock()
    async with anyio.create_task_group() as tg:
        tg.start_soon(pump, clock)
        async with start_reactor(clock=clock) as reactor:
            run = await reactor.run_now("slow")
            finished = await reactor.wait_run(run.id)
        tg.cancel_scope.cancel()

    assert finished.status == "failed"
    assert finished.reason == "task wait failed"
    tasks = {t.task_id: t for t in await store.task_runs(run.id)}
    assert tasks["wait"].status == "timed_out"
    assert tasks["wait"].error == "timed out after 5s"
    assert tasks["after"].status == "upstream_failed"
    [attempt] = await store.attempts(run.id)
    assert attempt.status == "timed_out"


async def test_what_a_python_task_prints_goes_to_its_runs_log(
    write_pipeline: Any, write_module: Any, start_reactor: Any, store: Any, recorder: Any
) -> None:
    module = write_module(
        """\
        import sys

        def sync_step():
            print("hello from a thread")
            print("to stderr", file=sys.stderr)
            print("no newline", end="")
            return 1

        async def async_step():
            print("hello from the loop")
            return 2
        """
    )
    write_pipeline(
        "printing.yaml",
        f"""\
        name: printing
        tasks:
          - id: sync
            python: {module}:sync_step
          - id: async
            python: {module}:async_step
        """,
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("printing")
        await recorder.wait_finished(1)
    lines = await store.logs(run.id, after=0, limit=100)
    seen = {(line.task_id, line.stream, line.line) for line in lines}
    assert ("sync", "stdout", "hello from a thread") in seen
    assert ("sync", "stderr", "to stderr") in seen
    assert ("sync", "stdout", "no newline") in seen
    assert ("async", "stdout", "hello from the loop") in seen
