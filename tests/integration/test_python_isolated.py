"""Python tasks in a child process: timeouts that stop sync code, outputs, logs and failures."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for

from connectors.python import PythonAction, PythonTaskSpec
from connectors.python_worker import load_function
from reactor.actions import LogStream, TaskRequest
from reactor.clock import FakeClock
from reactor.errors import ActionError, exception_names
from reactor.events import Event
from reactor.recovery import RUN_ID_VARIABLE

from .support import wait_run

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

STEPS = """
import asyncio
import datetime
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

state = {"calls": 0}


def stall(pids, mode="slow"):
    if mode == "fast":
        return "quick"
    sleeper = subprocess.Popen(["sleep", "300"])
    Path(pids + ".part").write_text(f"{os.getpid()} {sleeper.pid}")
    os.replace(pids + ".part", pids)
    print("stalling", flush=True)
    time.sleep(300)


def produce(n):
    state["calls"] += 1
    print("producing", n)
    print("a warning", file=sys.stderr)
    return {"n": n, "pid": os.getpid(), "calls": state["calls"]}


def consume(n):
    return {"n": n * 2, "pid": os.getpid()}


async def say(text):
    await asyncio.sleep(0)
    print("async says", text)
    return {"text": text, "pid": os.getpid()}


class Money:
    def __str__(self):
        return "12.50 EUR"


def odd_values():
    values = {"tags": {"a"}, "price": Money(), "ratio": float("nan")}
    return {**values, "when": datetime.date(2024, 1, 2), "pid": os.getpid()}


class LineDown(ConnectionError):
    pass


def fail():
    print("about to fail")
    raise LineDown("the line is down")


def give_up():
    print("giving up", file=sys.stderr, flush=True)
    os._exit(3)


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def loop():
    items = []
    items.append(items)
    return items


def echo(**kwargs):
    return kwargs
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; it only waits for whoever adopted it to reap it.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def started_by(run_id: str) -> list[int]:
    """Live processes with this run's id in their environment, as crash recovery finds them."""
    marker = f"{RUN_ID_VARIABLE}={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.mark.parametrize("how", ["timeout", "cancel"])
async def test_a_timeout_or_a_cancel_kills_the_function_and_its_children(
    how, write_pipeline, write_module, start_reactor, store, tmp_path
) -> None:
    mod = write_module(STEPS)
    # A sync function with a timeout runs in a child process; isolated: true does without one.
    stop = "timeout: 500ms" if how == "timeout" else "isolated: true"
    write_pipeline(
        "stall.yaml",
        f"""
        name: stall
        params:
          pids: {{type: string}}
          mode: {{type: string, default: slow}}
        concurrency: {{max_active_runs: 1, on_overlap: cancel_running}}
        triggers:
          - on: event
            type: job.requested
            params: {{mode: fast, pids: unused}}
        tasks:
          - id: work
            python: {mod}:stall
            args: {{pids: "{{{{ params.pids }}}}", mode: "{{{{ params.mode }}}}"}}
            {stop}
        """,
    )
    pids = tmp_path / "pids.txt"
    clock = FakeClock()
    async with start_reactor(clock=clock) as reactor:
        run = await reactor.run_now("stall", {"pids": str(pids)})
        await wait_for(pids.exists, message="the function to start its sleeper")
        started = [int(pid) for pid in pids.read_text().split()]
        assert os.getpid() not in started
        assert all(alive(pid) for pid in started)
        assert environ_of(started[0])[RUN_ID_VARIABLE] == run.id
        assert environ_of(started[0])["REACTOR_TASK_ID"] == "work"
        assert sorted(started_by(run.id)) == sorted(started)

        async def printed() -> bool:
            lines = await store.logs(run.id, after=0, limit=100)
            return ("stdout", "stalling") in [(x.stream, x.line) for x in lines]

        # What the child printed before it was stopped is in the run's log (read before the
        # stop: a line still in the pipe when the group is killed is lost with it).
        await wait_for(printed, message="the child's printed line in the log")
        if how == "timeout":
            clock.advance(0.5)
        else:
            await reactor.publish(Event(type="job.requested", source="test", data={}))
        finished = await wait_run(store, run.id)

    [task] = await store.task_runs(run.id)
    if how == "timeout":
        assert finished.status == "failed"
        assert (task.status, task.error) == ("timed_out", "timed out after 500ms")
    else:
        assert finished.status == "cancelled"
        assert task.status == "cancelled"
    [attempt] = await store.attempts(run.id)
    assert attempt.pid == started[0]
    await wait_for(lambda: not any(alive(pid) for pid in started), message=f"{started} to end")
    assert started_by(run.id) == []


async def test_outputs_logs_and_conversions_match_the_thread_path(
    write_pipeline, write_module, start_reactor, store
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "outputs.yaml",
        f"""
        name: outputs
        tasks:
          - id: produce
            python: {mod}:produce
            args: {{n: 21}}
            isolated: true
          - id: consume
            needs: [produce]
            python: {mod}:consume
            args: {{n: "{{{{ tasks.produce.output.n }}}}"}}
          - id: async_isolated
            python: {mod}:say
            args: {{text: hello}}
            isolated: true
          - id: odd_in_thread
            python: {mod}:odd_values
          - id: odd_in_child
            python: {mod}:odd_values
            timeout: 1m
        """,
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("outputs")
        finished = await reactor.wait_run(run.id)

    assert finished.status == "succeeded", finished.reason
    outputs = {t.task_id: t.output for t in await store.task_runs(run.id)}
    me = os.getpid()
    assert outputs["produce"]["n"] == 21
    assert outputs["produce"]["pid"] != me
    assert outputs["consume"] == {"n": 42, "pid": me}
    assert outputs["async_isolated"]["text"] == "hello"
    assert outputs["async_isolated"]["pid"] != me
    in_thread, in_child = outputs["odd_in_thread"], outputs["odd_in_child"]
    # A sync function with a timeout runs in a child; without one, in the service's thread.
    assert in_thread.pop("pid") == me
    assert in_child.pop("pid") != me
    assert (
        in_thread
        == in_child
        == {
            "tags": "{'a'}",
            "price": "12.50 EUR",
            "ratio": None,
            "when": "2024-01-02",
        }
    )
    # The child's module state is its own: the service's copy never counted a call.
    assert outputs["produce"]["calls"] == 1
    assert sys.modules[mod].state == {"calls": 0}
    logs = {(x.task_id, x.stream, x.line) for x in await store.logs(run.id, after=0, limit=100)}
    assert ("produce", "stdout", "producing 21") in logs
    assert ("produce", "stderr", "a warning") in logs
    assert ("async_isolated", "stdout", "async says hello") in logs


# Direct calls of the action: what the executor gets back, without a store.


async def attempt(
    pipelines_dir: Path, target: str, mode: str, args: dict[str, Any] | None = None
) -> tuple[Any, list[tuple[LogStream, str]], list[int]]:
    """One attempt in ``mode`` (thread, isolated, timeout): its output or ActionError, its
    log lines and the pids it reported. Checks that no result file is left behind."""
    fields: dict[str, Any] = {"isolated": True} if mode == "isolated" else {}
    if mode == "timeout":
        fields["timeout"] = 60  # selects the child process; the executor would enforce it
    spec = PythonTaskSpec(id="t", python=target, args=args or {}, **fields)
    action = PythonAction(spec, pipelines_dir)
    logs: list[tuple[LogStream, str]] = []
    pids: list[int] = []

    async def report_process(pid: int) -> None:
        pids.append(pid)

    request = TaskRequest(
        run_id="run-1",
        pipeline="direct",
        task_id="t",
        attempt=1,
        scope={},
        base_dir=pipelines_dir,
        log=lambda stream, line: logs.append((stream, line)),
        report_process=report_process,
    )
    try:
        result: Any = await action.execute(request)
    except ActionError as exc:
        result = exc
    return result, logs, pids


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp folder of this test's own, so a result file left behind would show."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.mark.parametrize("mode", ["thread", "isolated", "timeout"])
async def test_an_exception_gives_its_message_traceback_and_names(
    mode, write_module, pipelines_dir, private_tmp
) -> None:
    mod = write_module(STEPS)
    error, logs, pids = await attempt(pipelines_dir, f"{mod}:fail", mode)

    assert isinstance(error, ActionError)
    assert len(pids) == (0 if mode == "thread" else 1)
    assert str(error) == "LineDown: the line is down"
    line_down = load_function(f"{mod}:LineDown", str(pipelines_dir))
    assert error.exceptions == exception_names(line_down("x"))
    assert {"ConnectionError", f"{mod}.LineDown", "OSError"} <= set(error.exceptions)
    assert logs[0] == ("stdout", "about to fail")
    assert ("stderr", "Traceback (most recent call last):") in logs
    assert logs[-1] == ("stderr", f"{mod}.LineDown: the line is down")
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize(
    ("function", "message", "exit_code"),
    [
        ("give_up", "the function's process ended without a result (exit code 3): giving up", 3),
        ("die", "the function's process ended without a result (killed by signal 9)", None),
    ],
)
async def test_a_process_that_ends_without_a_result_says_how(
    function, message, exit_code, write_module, pipelines_dir, private_tmp
) -> None:
    mod = write_module(STEPS)
    error, _, _ = await attempt(pipelines_dir, f"{mod}:{function}", "isolated")

    assert isinstance(error, ActionError)
    assert (str(error), error.exit_code) == (message, exit_code)
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize("mode", ["thread", "isolated"])
async def test_a_return_value_json_cannot_hold_fails_clearly(
    mode, write_module, pipelines_dir
) -> None:
    mod = write_module(STEPS)
    error, _, _ = await attempt(pipelines_dir, f"{mod}:loop", mode)

    assert isinstance(error, ActionError)
    assert str(error) == (
        "the return value cannot be converted to JSON: ValueError: Circular reference detected"
    )


@pytest.mark.parametrize("mode", ["thread", "isolated"])
@pytest.mark.parametrize("broken", ["module", "function"])
async def test_a_function_that_does_not_import_fails_the_same_in_both_paths(
    mode, broken, write_module, pipelines_dir
) -> None:
    if broken == "module":
        mod = write_module("raise RuntimeError('broken at import')\n")
        expected = f"cannot import {mod!r}: RuntimeError: broken at import"
    else:
        mod = write_module(STEPS)
        expected = f"{mod!r} has no function 'nothing'"
    error, _, _ = await attempt(pipelines_dir, f"{mod}:nothing", mode)

    assert isinstance(error, ActionError)
    assert (str(error), error.exceptions) == (expected, ())


async def test_args_reach_the_child_as_json_values(write_module, pipelines_dir) -> None:
    mod = write_module(STEPS)
    args = {"n": "{{ 20 + 1 }}", "items": ["a", {"b": None}], "ratio": 0.5, "yes": True}
    output, _, _ = await attempt(pipelines_dir, f"{mod}:echo", "isolated", args)
    assert output == {"n": 21, "items": ["a", {"b": None}], "ratio": 0.5, "yes": True}

    error, _, pids = await attempt(
        pipelines_dir, f"{mod}:echo", "isolated", {"numbers": "{{ range(3) }}"}
    )
    assert isinstance(error, ActionError)
    assert str(error) == (
        "args must be JSON values to reach a child process:"
        " Object of type range is not JSON serializable"
    )
    assert pids == []
