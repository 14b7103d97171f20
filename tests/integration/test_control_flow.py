"""Control flow on a real store: retries, timeouts, run_if, if/else, for_each, pools, outputs.

docs/control-flow.md is the spec; each test runs a real pipeline through the service.
"""

from __future__ import annotations

import itertools
import sys
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from helpers import imported, processes_of, wait_for

from reactor.clock import FakeClock
from reactor.pipelines import load_folder
from reactor.store import RunRecord, Store, TaskRecord

from .support import pump

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

STEPS = """
import builtins

import anyio

calls = {}
events = {}
started = set()
concurrency = {}
finished = []
pool = {"running": 0, "max": 0, "holders": []}


def event(name):
    # Created on first use, inside the event loop (never at import, which runs in a thread).
    if name not in events:
        events[name] = anyio.Event()
    return events[name]


def wake(name):
    # Wakes everyone waiting on event(name) now; later waiters wait for the next wake.
    event(name).set()
    events[name] = anyio.Event()


def ok():
    return "ok"


def value(v):
    return v


def boom(message="boom on purpose"):
    raise ValueError(message)


def times_ten(item):
    if item % 2 == 0:
        raise ValueError(f"bad item {item}")
    return item * 10


async def flaky(key, fail_times, error="ConnectionRefusedError"):
    calls[key] = calls.get(key, 0) + 1
    if calls[key] <= fail_times:
        raise getattr(builtins, error)(f"{key} call {calls[key]}")
    return calls[key]


async def forever(name):
    started.add(name)
    await anyio.sleep_forever()


async def gate(loop, total, width):
    # Leaves only once `width` iterations run at once (or every item has started):
    # an executor running fewer at a time never gets through, one running more is seen.
    state = concurrency.setdefault(loop, {"running": 0, "max": 0, "started": 0})
    state["running"] += 1
    state["started"] += 1
    state["max"] = max(state["max"], state["running"])
    wake(loop)
    try:
        with anyio.fail_after(10):
            while state["running"] < width and state["started"] < total:
                await event(loop).wait()
    finally:
        state["running"] -= 1
    return state["started"]


async def in_reverse(index, total):
    # Item i ends only after every later item ended: they finish last to first.
    with anyio.fail_after(10):
        while len(finished) < total - 1 - index:
            await event("reverse").wait()
    finished.append(index)
    wake("reverse")
    return f"item {index}"


async def fails_once(item):
    calls[item] = calls.get(item, 0) + 1
    if item == "b" and calls[item] == 1:
        raise ConnectionError(f"{item} is not there yet")
    return item.upper()


async def hold(name):
    pool["running"] += 1
    pool["max"] = max(pool["max"], pool["running"])
    pool["holders"].append(name)
    try:
        with anyio.fail_after(10):
            await event("go").wait()
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
    finally:
        pool["running"] -= 1
    return name
"""


def module(name: str) -> Any:
    """The steps module as the service imported it (its globals are what the tasks saw)."""
    return sys.modules[name]


async def run_pipeline(
    start_reactor: Any,
    name: str,
    params: dict[str, Any] | None = None,
    *,
    clock: FakeClock | None = None,
    **settings: Any,
) -> RunRecord:
    """Run ``name`` to its end; with a fake clock, time moves whenever a task waits on it."""
    async with anyio.create_task_group() as tg:
        if clock is not None:
            tg.start_soon(pump, clock)
        async with start_reactor(clock=clock, **settings) as reactor:
            run = await reactor.run_now(name, params)
            finished: RunRecord = await reactor.wait_run(run.id)
        tg.cancel_scope.cancel()
    return finished


async def tasks_of(store: Store, run_id: str) -> dict[str, TaskRecord]:
    return {t.task_id: t for t in await store.task_runs(run_id)}


async def system_log(store: Store, run_id: str, task_id: str | None = None) -> list[str]:
    lines = await store.logs(run_id, after=0, limit=100_000)
    return [
        x.line for x in lines if x.stream == "system" and (task_id is None or x.task_id == task_id)
    ]


# 1. Retries


async def test_exponential_backoff_waits_each_delay_up_to_max_delay_and_records_every_attempt(
    write_pipeline, write_module, start_reactor, store
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "backoff.yaml",
        f"""
        name: backoff
        tasks:
          - id: fetch
            python: {mod}:flaky
            args: {{key: fetch, fail_times: 5}}
            retries: {{max: 5, backoff: exponential, initial: 2s, max_delay: 10s}}
        """,
    )
    clock = FakeClock()
    run = await run_pipeline(start_reactor, "backoff", clock=clock)

    assert run.status == "succeeded", run.reason
    task = (await tasks_of(store, run.id))["fetch"]
    assert (task.status, task.attempts, task.output) == ("succeeded", 6, 6)
    attempts = await store.attempts(run.id)
    assert [(a.attempt, a.status) for a in attempts] == [
        *[(n, "failed") for n in range(1, 6)],
        (6, "succeeded"),
    ]
    assert [a.error for a in attempts[:5]] == [
        f"ConnectionRefusedError: fetch call {n}" for n in range(1, 6)
    ]
    delays = [2, 4, 8, 10, 10]  # doubled from 2 s, capped at max_delay 10 s
    assert await system_log(store, run.id, "fetch") == [
        f"attempt {n} failed: ConnectionRefusedError: fetch call {n}; retrying in {d}s"
        for n, d in enumerate(delays, start=1)
    ]
    # Each delay was waited on the executor's clock, no more and no less.
    waited = [
        (after.started_at - before.ended_at).total_seconds()
        for before, after in itertools.pairwise(attempts)
        if before.ended_at is not None
    ]
    assert waited == delays
    assert clock.monotonic() >= sum(delays)


async def test_retry_on_exception_names_retries_a_subclass_and_stops_on_other_errors(
    write_pipeline, write_module, start_reactor, store
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "names.yaml",
        f"""
        name: names
        tasks:
          - id: refused
            python: {mod}:flaky
            args: {{key: refused, fail_times: 2}}
            retries: 3
            retry_on: [ConnectionError]
          - id: invalid
            python: {mod}:flaky
            args: {{key: invalid, fail_times: 9, error: ValueError}}
            retries: 3
            retry_on: [ConnectionError, builtins.TimeoutError]
        """,
    )
    run = await run_pipeline(start_reactor, "names", clock=FakeClock())

    assert run.status == "failed"
    assert run.reason == "task invalid failed"
    tasks = await tasks_of(store, run.id)
    # ConnectionRefusedError is a ConnectionError: retried until it passed.
    assert (tasks["refused"].status, tasks["refused"].attempts) == ("succeeded", 3)
    # A ValueError is not named: the task ends after its first attempt.
    assert (tasks["invalid"].status, tasks["invalid"].attempts) == ("failed", 1)
    assert tasks["invalid"].error == "ValueError: invalid call 1"
    assert await system_log(store, run.id, "invalid") == [
        "not retried: retry_on does not match this failure"
    ]
    assert [a.attempt for a in await store.attempts(run.id) if a.task_id == "invalid"] == [1]


async def test_retry_on_exit_codes_retries_only_the_codes_listed(
    write_pipeline, start_reactor, store
) -> None:
    count = "n=$(cat {name}.count 2>/dev/null || echo 0); n=$((n+1)); echo $n > {name}.count"
    write_pipeline(
        "codes.yaml",
        f"""
        name: codes
        tasks:
          - id: busy
            shell: "{count.format(name="busy")}; test $n -ge 3 || exit 75; echo done after $n"
            retries: 5
            retry_on: [75]
          - id: broken
            shell: "{count.format(name="broken")}; echo no such table >&2; exit 4"
            retries: 5
            retry_on: {{exit_codes: [75, 3]}}
        """,
    )
    run = await run_pipeline(start_reactor, "codes", clock=FakeClock())

    assert run.status == "failed"
    tasks = await tasks_of(store, run.id)
    assert (tasks["busy"].status, tasks["busy"].attempts) == ("succeeded", 3)
    assert tasks["busy"].output == "done after 3"
    assert (tasks["broken"].status, tasks["broken"].attempts) == ("failed", 1)
    assert tasks["broken"].error == "exit code 4: no such table"
    busy = [a for a in await store.attempts(run.id) if a.task_id == "busy"]
    assert [(a.status, a.error) for a in busy] == [
        ("failed", "exit code 75"),
        ("failed", "exit code 75"),
        ("succeeded", None),
    ]
    assert await system_log(store, run.id, "broken") == [
        "not retried: retry_on does not match this failure"
    ]


async def test_retry_on_expression_sees_the_error_exit_code_exception_and_attempt(
    write_pipeline, write_module, start_reactor, store
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "expressions.yaml",
        f"""
        name: expressions
        tasks:
          - id: by_text
            shell: "echo service temporarily down >&2; exit 1"
            retries: 2
            retry_on: "exit_code == 75 or 'temporarily' in error"
          - id: by_code
            shell: "exit 75"
            retries: 1
            retry_on: "exit_code == 75 or 'temporarily' in error"
          - id: not_matched
            shell: "echo disk full >&2; exit 1"
            retries: 2
            retry_on: "exit_code == 75 or 'temporarily' in error"
          - id: by_attempt
            python: {mod}:flaky
            args: {{key: by_attempt, fail_times: 9}}
            retries: 5
            retry_on: "exception == 'ConnectionRefusedError' and attempt < 2"
          - id: by_bases
            python: {mod}:flaky
            args: {{key: by_bases, fail_times: 1}}
            retries: 1
            retry_on: "'OSError' in exceptions and outcome == 'failed'"
        """,
    )
    run = await run_pipeline(start_reactor, "expressions", clock=FakeClock())

    assert run.status == "failed"
    tasks = await tasks_of(store, run.id)
    summary = {t: (r.status, r.attempts) for t, r in tasks.items()}
    assert summary == {
        "by_text": ("failed", 3),
        "by_code": ("failed", 2),
        "not_matched": ("failed", 1),
        "by_attempt": ("failed", 2),
        "by_bases": ("succeeded", 2),
    }
    assert tasks["by_text"].error == "exit code 1: service temporarily down"
    assert await system_log(store, run.id, "by_attempt") == [
        "attempt 1 failed: ConnectionRefusedError: by_attempt call 1; retrying in 1s",
        "not retried: retry_on does not match this failure",
    ]


async def test_retry_on_timeout_retries_timed_out_attempts_only_when_named(
    write_pipeline, write_module, start_reactor, store
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "slow.yaml",
        f"""
        name: slow
        tasks:
          - id: named
            python: {mod}:forever
            args: {{name: named}}
            timeout: 5s
            retries: 2
            retry_on: [timeout]
          - id: not_named
            python: {mod}:forever
            args: {{name: not_named}}
            timeout: 5s
            retries: 2
            retry_on: [ConnectionError]
          - id: default
            python: {mod}:forever
            args: {{name: default}}
            timeout: 5s
            retries: 1
        """,
    )
    run = await run_pipeline(start_reactor, "slow", clock=FakeClock())

    assert run.status == "failed"
    tasks = await tasks_of(store, run.id)
    assert {t: (r.status, r.attempts) for t, r in tasks.items()} == {
        "named": ("timed_out", 3),
        "not_named": ("timed_out", 1),
        "default": ("timed_out", 2),  # without retry_on a timeout is retried like a failure
    }
    attempts = [a for a in await store.attempts(run.id) if a.task_id == "named"]
    assert [(a.status, a.error) for a in attempts] == [("timed_out", "timed out after 5s")] * 3
    assert await system_log(store, run.id, "named") == [
        "attempt 1 timed_out: timed out after 5s; retrying in 1s",
        "attempt 2 timed_out: timed out after 5s; retrying in 1s",
    ]
    assert await system_log(store, run.id, "not_named") == [
        "not retried: retry_on does not match this failure"
    ]


# 2. Timeouts


async def test_task_timeout_stops_a_shell_and_its_background_children(
    write_pipeline, start_reactor, store
) -> None:
    write_pipeline(
        "sleepy.yaml",
        """
        name: sleepy
        tasks:
          - id: sleepy
            shell: "sleep 300 & sleep 300"
            timeout: 5s
            kill_grace: 1s
          - id: after
            needs: sleepy
            shell: "echo never"
        """,
    )
    clock = FakeClock()
    async with start_reactor(clock=clock) as reactor:
        run = await reactor.run_now("sleepy")
        # The background sleep and the foreground one both run before time moves.
        await wait_for(
            lambda: len(processes_of(run.id)) >= 2, message="the shell's two sleeps to start"
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(pump, clock)
            finished = await reactor.wait_run(run.id)
            tg.cancel_scope.cancel()
        await wait_for(lambda: not processes_of(run.id), message="the task's processes to end")

    assert finished.status == "failed"
    assert finished.reason == "task sleepy failed"
    tasks = await tasks_of(store, run.id)
    assert (tasks["sleepy"].status, tasks["sleepy"].error) == ("timed_out", "timed out after 5s")
    assert tasks["after"].status == "upstream_failed"
    [attempt] = await store.attempts(run.id)
    assert (attempt.status, attempt.error) == ("timed_out", "timed out after 5s")
    assert clock.monotonic() >= 5


async def test_pipeline_timeout_fails_the_run_and_cancels_what_never_started(
    write_pipeline, write_module, start_reactor, store, recorder
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "bounded.yaml",
        f"""
        name: bounded
        timeout: 30s
        tasks:
          - id: quick
            python: {mod}:ok
          - id: extract
            shell: "sleep 300 & sleep 300"
            kill_grace: 1s
          - id: transform
            needs: extract
            python: {mod}:ok
          - id: load
            needs: transform
            python: {mod}:ok
        """,
    )
    clock = FakeClock()
    async with start_reactor(clock=clock) as reactor:
        run = await reactor.run_now("bounded")
        await wait_for(
            lambda: len(processes_of(run.id)) >= 2, message="extract's two sleeps to start"
        )
        # Time moves only once quick is done: it ends before the run's timeout.
        await wait_for(
            lambda: (run.id, "quick", "succeeded") in recorder.tasks, message="quick to end"
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(pump, clock)
            finished = await reactor.wait_run(run.id)
            tg.cancel_scope.cancel()
        await wait_for(lambda: not processes_of(run.id), message="extract's processes to end")

    assert finished.status == "failed"
    assert finished.reason == "the run timed out after 30s"
    tasks = await tasks_of(store, run.id)
    assert {t: r.status for t, r in tasks.items()} == {
        "quick": "succeeded",
        "extract": "timed_out",
        "transform": "cancelled",
        "load": "cancelled",
    }
    assert tasks["extract"].error == "the run timed out after 30s"
    assert tasks["transform"].attempts == 0
    [attempt] = [a for a in await store.attempts(run.id) if a.task_id == "extract"]
    assert attempt.status == "timed_out"
    assert clock.monotonic() >= 30


# 3. run_if


async def test_run_if_rules_in_a_run_with_a_failure(
    write_pipeline, write_module, start_reactor, store
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "cleanup.yaml",
        f"""
        name: cleanup
        tasks:
          - id: load
            python: {mod}:boom
          - id: fine
            python: {mod}:ok
          - id: report
            needs: load
            python: {mod}:ok
          - id: rollback
            needs: [load, report]
            run_if: at_least_one_failed
            python: {mod}:value
            args: {{v: rolled back}}
          - id: tidy
            needs: [load, report]
            run_if: all_done
            python: {mod}:value
            args: {{v: tidied}}
          - id: either
            needs: [load, fine]
            run_if: at_least_one_success
            python: {mod}:value
            args: {{v: one was enough}}
          - id: all_bad
            needs: [load, report]
            run_if: all_failed
            python: {mod}:value
            args: {{v: all failed}}
          - id: not_all_bad
            needs: [load, fine]
            run_if: all_failed
            python: {mod}:ok
          - id: no_failure_seen
            needs: fine
            run_if: at_least_one_failed
            python: {mod}:ok
          - id: strict_join
            needs: [load, fine]
            run_if: none_failed
            python: {mod}:ok
          - id: default_join
            needs: [load, fine]
            python: {mod}:ok
          - id: after_skipped
            needs: no_failure_seen
            python: {mod}:ok
        """,
    )
    run = await run_pipeline(start_reactor, "cleanup")

    # The cleanup ran and succeeded; the run still failed, because load did.
    assert run.status == "failed"
    assert run.reason == "task load failed"
    tasks = await tasks_of(store, run.id)
    assert {t: r.status for t, r in tasks.items()} == {
        "load": "failed",
        "fine": "succeeded",
        "report": "upstream_failed",
        "rollback": "succeeded",
        "tidy": "succeeded",
        "either": "succeeded",
        "all_bad": "succeeded",
        "not_all_bad": "skipped",
        "no_failure_seen": "skipped",
        "strict_join": "upstream_failed",
        "default_join": "upstream_failed",
        "after_skipped": "skipped",
    }
    outputs = {t: r.output for t, r in tasks.items() if r.status == "succeeded"}
    assert outputs == {
        "fine": "ok",
        "rollback": "rolled back",
        "tidy": "tidied",
        "either": "one was enough",
        "all_bad": "all failed",
    }
    for not_run in ("report", "not_all_bad", "no_failure_seen", "strict_join", "after_skipped"):
        assert tasks[not_run].attempts == 0, not_run
    assert tasks["rollback"].started_at >= tasks["load"].ended_at


async def test_all_done_and_failure_rules_after_a_run_that_went_well(
    write_pipeline, write_module, start_reactor, store
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "calm.yaml",
        f"""
        name: calm
        tasks:
          - id: load
            python: {mod}:ok
          - id: rollback
            needs: load
            run_if: at_least_one_failed
            python: {mod}:ok
          - id: tidy
            needs: [load, rollback]
            run_if: all_done
            python: {mod}:value
            args: {{v: tidied}}
        """,
    )
    run = await run_pipeline(start_reactor, "calm")

    # A skipped cleanup does not fail the run.
    assert run.status == "succeeded", run.reason
    tasks = await tasks_of(store, run.id)
    assert {t: r.status for t, r in tasks.items()} == {
        "load": "succeeded",
        "rollback": "skipped",
        "tidy": "succeeded",
    }
    assert tasks["tidy"].output == "tidied"


# 4. if: branches

BRANCHES = """
name: big_or_small
params:
  rows: {type: integer, default: 5000}
tasks:
  - id: is_big
    if: "params.rows > 1000"
  - id: bulk_load
    needs: [{task: is_big, outcome: true}]
    shell: "echo bulk loading {{ params.rows }} rows"
  - id: bulk_check
    needs: bulk_load
    shell: "echo checked bulk"
  - id: row_load
    needs: [{task: is_big, outcome: false}]
    shell: "echo loading {{ params.rows }} rows one by one"
  - id: row_check
    needs: row_load
    shell: "echo checked rows"
  - id: either_way
    needs: [is_big]
    shell: "echo decided"
  - id: publish
    needs: [bulk_check, row_check]
    run_if: none_failed
    shell: "echo published"
  - id: any_branch
    needs: [bulk_load, row_load]
    run_if: at_least_one_success
    shell: "echo one branch ran"
"""


@pytest.mark.parametrize(
    ("rows", "taken", "not_taken", "output"),
    [
        (5000, "bulk", "row", "bulk loading 5000 rows"),
        (10, "row", "bulk", "loading 10 rows one by one"),
    ],
)
async def test_if_runs_one_branch_and_skips_the_other_with_its_descendants(
    rows, taken, not_taken, output, write_pipeline, start_reactor, store
) -> None:
    write_pipeline("big_or_small.yaml", BRANCHES)
    run = await run_pipeline(start_reactor, "big_or_small", {"rows": rows})

    assert run.status == "succeeded", run.reason
    tasks = await tasks_of(store, run.id)
    assert tasks["is_big"].output is (rows > 1000)
    assert {t: r.status for t, r in tasks.items()} == {
        "is_big": "succeeded",
        f"{taken}_load": "succeeded",
        f"{taken}_check": "succeeded",
        f"{not_taken}_load": "skipped",
        f"{not_taken}_check": "skipped",
        "either_way": "succeeded",
        "publish": "succeeded",
        "any_branch": "succeeded",
    }
    assert tasks[f"{taken}_load"].output == output
    assert tasks[f"{not_taken}_load"].attempts == 0
    assert tasks["publish"].output == "published"


async def test_an_if_that_cannot_be_evaluated_fails_and_its_branches_are_upstream_failed(
    write_pipeline, write_module, start_reactor, store
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "broken_if.yaml",
        f"""
        name: broken_if
        tasks:
          - id: probe
            python: {mod}:value
            args: {{v: {{count: 3}}}}
          - id: is_big
            needs: probe
            if: "tasks.probe.output.rows > 1000"
          - id: bulk_load
            needs: [{{task: is_big, outcome: true}}]
            python: {mod}:ok
          - id: row_load
            needs: [{{task: is_big, outcome: false}}]
            python: {mod}:ok
          - id: publish
            needs: [bulk_load, row_load]
            run_if: none_failed
            python: {mod}:ok
        """,
    )
    run = await run_pipeline(start_reactor, "broken_if")

    assert run.status == "failed"
    assert run.reason == "task is_big failed"
    tasks = await tasks_of(store, run.id)
    assert {t: r.status for t, r in tasks.items()} == {
        "probe": "succeeded",
        "is_big": "failed",
        "bulk_load": "upstream_failed",
        "row_load": "upstream_failed",
        "publish": "upstream_failed",
    }
    error = tasks["is_big"].error
    assert error == (
        "cannot evaluate if: 'dict object' has no attribute 'rows'"
        " (in 'tasks.probe.output.rows > 1000')"
    )


# 5. for_each


async def test_for_each_over_a_literal_a_param_and_an_earlier_output(
    write_pipeline, write_module, start_reactor, store
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "loops.yaml",
        f"""
        name: loops
        params:
          regions: {{type: list, default: [eu, us, apac]}}
        tasks:
          - id: list_tables
            python: {mod}:value
            args: {{v: [{{name: orders}}, {{name: customers}}]}}
          - id: regions
            for_each: "{{{{ params.regions }}}}"
            concurrency: 2
            task:
              shell: "echo refreshing {{{{ item }}}} number {{{{ item_index }}}}"
          - id: tables
            needs: list_tables
            for_each: "{{{{ tasks.list_tables.output }}}}"
            task:
              python: {mod}:value
              args: {{v: "{{{{ item.name }}}}-{{{{ item_index }}}}"}}
          - id: literal
            for_each: [1, 3, 5]
            task:
              python: {mod}:times_ten
              args: {{item: "{{{{ item }}}}"}}
          - id: total
            needs: [literal, tables]
            python: {mod}:value
            args: {{v: "{{{{ tasks.literal.output }}}} {{{{ tasks.tables.output }}}}"}}
        """,
    )
    run = await run_pipeline(start_reactor, "loops", {"regions": ["eu", "us"]})

    assert run.status == "succeeded", run.reason
    tasks = await tasks_of(store, run.id)
    assert tasks["regions"].output == ["refreshing eu number 0", "refreshing us number 1"]
    assert tasks["tables"].output == ["orders-0", "customers-1"]
    # A single-expression template keeps the item's type: 3 * 10, not "3" * 10.
    assert tasks["literal"].output == [10, 30, 50]
    assert tasks["total"].output == '[10, 30, 50] ["orders-0", "customers-1"]'
    # Each iteration is a task of its own, with its own state and attempt.
    iterations = {t: r for t, r in tasks.items() if "[" in t}
    assert sorted(iterations) == [
        "literal[0]",
        "literal[1]",
        "literal[2]",
        "regions[0]",
        "regions[1]",
        "tables[0]",
        "tables[1]",
    ]
    assert all((r.status, r.attempts) == ("succeeded", 1) for r in iterations.values())
    assert iterations["literal[1]"].output == 30
    attempts = {(a.task_id, a.attempt, a.status) for a in await store.attempts(run.id)}
    assert ("regions[1]", 1, "succeeded") in attempts
    assert ("regions", 1, "succeeded") in attempts
    stdout = [
        (x.task_id, x.line)
        for x in await store.logs(run.id, after=0, limit=1000)
        if x.stream == "stdout"
    ]
    assert ("regions[0]", "refreshing eu number 0") in stdout
    assert "2 items" in await system_log(store, run.id, "regions")

    # Only the loop's end is an event (reactor.task.*), not each iteration's.
    stored = await store.events_received(datetime(2000, 1, 1, tzinfo=UTC), limit=10_000)
    task_events = sorted(
        (s.event.subject, s.event.type)
        for s in stored
        if s.event.type.startswith("reactor.task.") and s.event.data["run_id"] == run.id
    )
    assert task_events == [
        (f"loops/{t}", "reactor.task.succeeded")
        for t in ("list_tables", "literal", "regions", "tables", "total")
    ]


async def test_for_each_runs_concurrency_iterations_at_once_and_never_more(
    write_pipeline, write_module, start_reactor, store
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "wide.yaml",
        f"""
        name: wide
        tasks:
          - id: three_at_once
            for_each: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
            concurrency: 3
            task:
              python: {mod}:gate
              args: {{loop: three, total: 12, width: 3}}
          - id: one_at_once
            for_each: [0, 1, 2, 3]
            task:
              python: {mod}:gate
              args: {{loop: one, total: 4, width: 1}}
        """,
    )
    run = await run_pipeline(start_reactor, "wide")

    assert run.status == "succeeded", run.reason
    seen = module(mod).concurrency
    assert seen["three"]["max"] == 3
    assert seen["three"]["started"] == 12
    assert seen["one"]["max"] == 1
    tasks = await tasks_of(store, run.id)
    assert len(tasks["three_at_once"].output) == 12


async def test_for_each_output_is_in_item_order_when_iterations_end_out_of_order(
    write_pipeline, write_module, start_reactor, store
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "reverse.yaml",
        f"""
        name: reverse
        tasks:
          - id: each
            for_each: [a, b, c, d]
            concurrency: 4
            task:
              python: {mod}:in_reverse
              args: {{index: "{{{{ item_index }}}}", total: 4}}
        """,
    )
    run = await run_pipeline(start_reactor, "reverse")

    assert run.status == "succeeded", run.reason
    assert module(mod).finished == [3, 2, 1, 0]
    tasks = await tasks_of(store, run.id)
    assert tasks["each"].output == ["item 0", "item 1", "item 2", "item 3"]
    ended = [tasks[f"each[{i}]"].ended_at for i in range(4)]
    assert ended == sorted(ended, reverse=True)


async def test_each_iteration_retries_on_its_own(
    write_pipeline, write_module, start_reactor, store
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "retrying_loop.yaml",
        f"""
        name: retrying_loop
        tasks:
          - id: each
            for_each: [a, b, c]
            concurrency: 3
            task:
              python: {mod}:fails_once
              args: {{item: "{{{{ item }}}}"}}
              retries: {{max: 2, delay: 3s}}
              retry_on: [ConnectionError]
        """,
    )
    clock = FakeClock()
    run = await run_pipeline(start_reactor, "retrying_loop", clock=clock)

    assert run.status == "succeeded", run.reason
    tasks = await tasks_of(store, run.id)
    assert tasks["each"].output == ["A", "B", "C"]
    assert tasks["each"].attempts == 1
    assert {f"each[{i}]": tasks[f"each[{i}]"].attempts for i in range(3)} == {
        "each[0]": 1,
        "each[1]": 2,
        "each[2]": 1,
    }
    assert module(mod).calls == {"a": 1, "b": 2, "c": 1}
    attempts = await store.attempts(run.id)
    assert [(a.attempt, a.status, a.error) for a in attempts if a.task_id == "each[1]"] == [
        (1, "failed", "ConnectionError: b is not there yet"),
        (2, "succeeded", None),
    ]
    assert len(attempts) == 5  # the loop's one, and four of its iterations
    assert await system_log(store, run.id, "each[1]") == [
        "attempt 1 failed: ConnectionError: b is not there yet; retrying in 3s"
    ]
    assert clock.monotonic() >= 3


async def test_succeed_if_decides_the_loop_from_its_iterations(
    write_pipeline, write_module, start_reactor, store
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "judged.yaml",
        f"""
        name: judged
        tasks:
          - id: strict
            for_each: [1, 2, 3, 4]
            concurrency: 4
            task:
              python: {mod}:times_ten
              args: {{item: "{{{{ item }}}}"}}
          - id: lenient
            for_each: [1, 2, 3, 4]
            succeed_if: at_least_one_success
            task:
              python: {mod}:times_ten
              args: {{item: "{{{{ item }}}}"}}
          - id: none_good
            for_each: [2, 4]
            succeed_if: at_least_one_success
            task:
              python: {mod}:times_ten
              args: {{item: "{{{{ item }}}}"}}
          - id: after_strict
            needs: strict
            python: {mod}:ok
          - id: after_lenient
            needs: lenient
            python: {mod}:value
            args: {{v: "{{{{ tasks.lenient.output }}}}"}}
        """,
    )
    run = await run_pipeline(start_reactor, "judged")

    assert run.status == "failed"
    assert run.reason == "task strict, none_good failed"
    tasks = await tasks_of(store, run.id)
    assert tasks["strict"].status == "failed"
    assert tasks["strict"].error == (
        "2 of 4 iterations did not succeed (first: strict[1] failed: ValueError: bad item 2)"
    )
    # Every iteration ran, whatever happened to the others.
    assert [tasks[f"strict[{i}]"].status for i in range(4)] == [
        "succeeded",
        "failed",
        "succeeded",
        "failed",
    ]
    assert tasks["lenient"].status == "succeeded"
    assert tasks["lenient"].error is None
    assert tasks["lenient"].output == [10, None, 30, None]
    assert tasks["after_lenient"].output == [10, None, 30, None]
    assert tasks["after_strict"].status == "upstream_failed"
    assert tasks["none_good"].status == "failed"
    assert tasks["none_good"].error == (
        "2 of 2 iterations did not succeed (first: none_good[0] failed: ValueError: bad item 2)"
    )


async def test_for_each_over_something_that_is_not_a_list_fails_the_loop(
    write_pipeline, write_module, start_reactor, store
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "not_a_list.yaml",
        f"""
        name: not_a_list
        params:
          region: {{type: string, default: eu}}
        tasks:
          - id: config
            python: {mod}:value
            args: {{v: {{regions: [eu, us]}}}}
          - id: by_param
            for_each: "{{{{ params.region }}}}"
            task:
              python: {mod}:ok
          - id: by_output
            needs: config
            for_each: "{{{{ tasks.config.output }}}}"
            task:
              python: {mod}:ok
        """,
    )
    run = await run_pipeline(start_reactor, "not_a_list")

    assert run.status == "failed"
    tasks = await tasks_of(store, run.id)
    assert (tasks["by_param"].status, tasks["by_param"].error) == (
        "failed",
        "for_each needs a list, got str 'eu'",
    )
    assert (tasks["by_output"].status, tasks["by_output"].error) == (
        "failed",
        "for_each needs a list, got dict {'regions': ['eu', 'us']}",
    )
    assert not [t for t in tasks if "[" in t]


async def test_a_loop_timeout_ends_running_iterations_timed_out_and_cancels_the_rest(
    write_pipeline, write_module, start_reactor, store
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "slow_loop.yaml",
        f"""
        name: slow_loop
        tasks:
          - id: each
            for_each: [a, b, c, d]
            concurrency: 2
            timeout: 10s
            task:
              python: {mod}:forever
              args: {{name: "{{{{ item }}}}"}}
          - id: after
            needs: each
            run_if: all_done
            python: {mod}:ok
        """,
    )
    clock = FakeClock()
    run = await run_pipeline(start_reactor, "slow_loop", clock=clock)

    assert run.status == "failed"
    assert run.reason == "task each failed"
    assert module(mod).started == {"a", "b"}
    tasks = await tasks_of(store, run.id)
    assert (tasks["each"].status, tasks["each"].error) == ("timed_out", "timed out after 10s")
    assert [tasks[f"each[{i}]"].status for i in range(4)] == [
        "timed_out",
        "timed_out",
        "cancelled",
        "cancelled",
    ]
    assert [tasks[f"each[{i}]"].attempts for i in range(4)] == [1, 1, 0, 0]
    assert tasks["after"].status == "succeeded"
    attempts = {(a.task_id, a.status) for a in await store.attempts(run.id)}
    assert {("each[0]", "timed_out"), ("each[1]", "timed_out"), ("each", "timed_out")} <= attempts
    assert not [a for a in await store.attempts(run.id) if a.status == "running"]


async def test_the_run_timeout_stops_a_loop_in_the_middle(
    write_pipeline, write_module, start_reactor, store
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "bounded_loop.yaml",
        f"""
        name: bounded_loop
        timeout: 20s
        tasks:
          - id: each
            for_each: [a, b, c]
            task:
              python: {mod}:forever
              args: {{name: "{{{{ item }}}}"}}
        """,
    )
    run = await run_pipeline(start_reactor, "bounded_loop", clock=FakeClock())

    assert run.status == "failed"
    assert run.reason == "the run timed out after 20s"
    tasks = await tasks_of(store, run.id)
    assert {t: r.status for t, r in tasks.items()} == {
        "each": "timed_out",
        "each[0]": "timed_out",
        "each[1]": "cancelled",
        "each[2]": "cancelled",
    }
    assert not [a for a in await store.attempts(run.id) if a.status == "running"]


async def test_for_each_over_an_empty_list_succeeds_with_an_empty_output(
    write_pipeline, write_module, start_reactor, store
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "empty.yaml",
        f"""
        name: empty
        tasks:
          - id: nothing
            python: {mod}:value
            args: {{v: []}}
          - id: each
            needs: nothing
            for_each: "{{{{ tasks.nothing.output }}}}"
            task:
              python: {mod}:boom
          - id: after
            needs: each
            python: {mod}:value
            args: {{v: "{{{{ tasks.each.output }}}}"}}
        """,
    )
    run = await run_pipeline(start_reactor, "empty")

    assert run.status == "succeeded", run.reason
    tasks = await tasks_of(store, run.id)
    assert (tasks["each"].status, tasks["each"].output) == ("succeeded", [])
    assert tasks["after"].output == []
    assert sorted(tasks) == ["after", "each", "nothing"]


async def test_ten_thousand_iterations_finish_and_are_all_stored(
    write_pipeline, start_reactor, store
) -> None:
    write_pipeline(
        "many.yaml",
        """
        name: many
        params:
          n: {type: integer, default: 10000}
        tasks:
          - id: each
            for_each: "{{ range(params.n) | list }}"
            concurrency: 100
            task:
              if: "item_index == item"
        """,
    )
    run = await run_pipeline(start_reactor, "many", max_tasks=200)

    assert run.status == "succeeded", run.reason
    tasks = await tasks_of(store, run.id)
    assert len(tasks) == 10_001
    assert tasks["each"].output == [True] * 10_000
    assert all(r.status == "succeeded" and r.attempts == 1 for r in tasks.values())
    assert tasks["each[9999]"].output is True


# 6. Pools


async def test_a_pool_of_one_slot_runs_one_task_at_a_time_across_pipelines(
    write_pipeline, write_module, start_reactor, store, pipelines_dir
) -> None:
    mod = write_module(STEPS)
    (pipelines_dir / "reactor.yaml").write_text("pools:\n  warehouse: 1\n  other: 3\n")
    write_pipeline(
        "orders.yaml",
        f"""
        name: orders
        tasks:
          - id: load_orders
            python: {mod}:hold
            args: {{name: orders}}
            pool: warehouse
          - id: load_lines
            python: {mod}:hold
            args: {{name: lines}}
            pool: warehouse
        """,
    )
    write_pipeline(
        "customers.yaml",
        f"""
        name: customers
        tasks:
          - id: load_customers
            python: {mod}:hold
            args: {{name: customers}}
            pool: warehouse
        """,
    )
    async with start_reactor() as reactor:
        orders = await reactor.run_now("orders")
        customers = await reactor.run_now("customers")
        run_of = {
            "orders": f"{orders.id}/load_orders",
            "lines": f"{orders.id}/load_lines",
            "customers": f"{customers.id}/load_customers",
        }

        def warehouse() -> dict[str, Any]:
            [pool] = [p for p in reactor.pools.describe() if p["name"] == "warehouse"]
            return pool

        # One task holds the only slot; the other two wait for it, listed under the pool.
        await wait_for(
            lambda: imported(mod, "pool") is not None and len(warehouse()["waiting"]) == 2,
            message="two tasks to wait for the warehouse pool",
        )
        steps = module(mod)
        [holder] = steps.pool["holders"]
        assert steps.pool["running"] == 1
        pool = warehouse()
        assert (pool["size"], pool["in_use"]) == (1, 1)
        # The two runs start in either order: who waits first is not fixed.
        assert sorted(pool["waiting"]) == sorted(v for k, v in run_of.items() if k != holder)

        assert {"name": "other", "size": 3, "in_use": 0, "waiting": []} in (
            reactor.pools.describe()
        )
        waiter = "customers" if holder != "customers" else "orders"
        waiting_run = customers if waiter == "customers" else orders
        waiting_task = run_of[waiter].split("/")[1]

        async def logged() -> bool:
            return "waiting for pool warehouse (1 of 1 slots in use)" in await system_log(
                store, waiting_run.id, waiting_task
            )

        await wait_for(logged, message="the waiting task's log line")
        waiting = {t.task_id: t for t in await store.task_runs(waiting_run.id)}
        assert (waiting[waiting_task].status, waiting[waiting_task].attempts) == ("pending", 0)

        steps.event("go").set()
        finished = [await reactor.wait_run(r.id) for r in (orders, customers)]

    assert [r.status for r in finished] == ["succeeded", "succeeded"]
    assert steps.pool["max"] == 1
    assert sorted(steps.pool["holders"]) == ["customers", "lines", "orders"]
    assert warehouse()["in_use"] == 0
    # Whoever held the slot first ended before the others started.
    spans = []
    for run in finished:
        spans += [(t.started_at, t.ended_at) for t in await store.task_runs(run.id)]
    spans.sort()
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


async def test_a_task_waiting_for_a_pool_slot_is_reported_pending(
    write_pipeline, write_module, start_reactor, pipelines_dir, recorder
) -> None:
    mod = write_module(STEPS)
    (pipelines_dir / "reactor.yaml").write_text("pools:\n  warehouse: 1\n")
    write_pipeline(
        "two.yaml",
        f"""
        name: two
        tasks:
          - id: first
            python: {mod}:hold
            args: {{name: first}}
            pool: warehouse
          - id: second
            python: {mod}:hold
            args: {{name: second}}
            pool: warehouse
        """,
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("two")
        # The holder has its slot before its module is imported: wait for both.
        await wait_for(
            lambda: (
                bool((imported(mod, "pool") or {}).get("holders"))
                and any(p["waiting"] for p in reactor.pools.describe())
            ),
            message="one task to hold the pool and the other to wait for it",
        )
        [holder] = module(mod).pool["holders"]
        waiter = "second" if holder == "first" else "first"
        seen = [s for r, t, s in recorder.tasks if (r, t) == (run.id, waiter)]
        module(mod).event("go").set()
        assert (await reactor.wait_run(run.id)).status == "succeeded"

    # Observers (the CLI's lines, the UI stream) see it pending while it waits.
    assert seen == ["pending"]


async def test_an_undeclared_pool_is_a_validate_problem_at_its_line(
    write_pipeline, pipelines_dir
) -> None:
    (pipelines_dir / "reactor.yaml").write_text("pools:\n  warehouse: 4\n")
    write_pipeline(
        "typo.yaml",
        """
        name: typo
        tasks:
          - id: load
            shell: "echo load"
            pool: warehose
          - id: each
            for_each: [a, b]
            task:
              shell: "echo sync"
              pool: partner_api
        """,
    )
    write_pipeline(
        "fine.yaml",
        """
        name: fine
        tasks:
          - id: load
            shell: "echo load"
            pool: warehouse
        """,
    )
    loaded = load_folder(pipelines_dir)

    assert sorted(loaded.pipelines) == ["fine"]
    assert [str(p) for p in loaded.problems] == [
        "pipelines/typo.yaml:5: tasks[0].pool: unknown pool 'warehose': pools in reactor.yaml:"
        " warehouse",
        "pipelines/typo.yaml:10: tasks[1].task.pool: unknown pool 'partner_api': pools in"
        " reactor.yaml: warehouse",
    ]


# 7. Outputs


async def test_an_output_over_max_output_fails_the_task_and_is_not_retried(
    write_pipeline, write_module, start_reactor, store, pipelines_dir
) -> None:
    mod = write_module(STEPS)
    (pipelines_dir / "reactor.yaml").write_text("limits: {max_output: 100}\n")
    write_pipeline(
        "big.yaml",
        f"""
        name: big
        tasks:
          - id: big
            python: {mod}:value
            args: {{v: "{"x" * 1000}"}}
            retries: 2
          - id: small
            python: {mod}:value
            args: {{v: "{"x" * 98}"}}
            retries: 2
          - id: each
            for_each: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
            task:
              python: {mod}:value
              args: {{v: abcdef}}
        """,
    )
    run = await run_pipeline(start_reactor, "big", clock=FakeClock())

    assert run.status == "failed"
    assert run.reason == "task big, each failed"
    tasks = await tasks_of(store, run.id)
    limit = (
        " bytes, over the limit of 100 (limits.max_output in reactor.yaml): write large"
        " results to a file or table and pass its name"
    )
    assert (tasks["big"].status, tasks["big"].attempts) == ("failed", 1)
    assert tasks["big"].error == f"output is 1,002{limit}"
    assert tasks["big"].output is None
    assert [a.attempt for a in await store.attempts(run.id) if a.task_id == "big"] == [1]
    assert not [x for x in await system_log(store, run.id, "big") if "retrying" in x]
    # Exactly at the limit (98 characters and two quotes) is fine.
    assert (tasks["small"].status, tasks["small"].output) == ("succeeded", "x" * 98)
    # A loop's list of outputs is an output too; each iteration's own is small.
    assert tasks["each[0]"].output == "abcdef"
    assert (tasks["each"].status, tasks["each"].error) == ("failed", f"output is 200{limit}")
