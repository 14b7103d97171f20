"""Shell tasks for real: logs, outputs, exit codes, quoting, killing process groups."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import wait_for

from connectors.shell import ShellAction, ShellTaskSpec
from reactor.actions import LogStream, TaskRequest
from reactor.clock import FakeClock
from reactor.errors import ActionError, SpecErrorGroup
from reactor.events import Event

from .support import wait_run

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

# A command that leaves two children behind the shell, then waits: every pid goes to a file.
SLEEPERS = (
    "sleep 300 & echo $! >> {{ params.pids }}; sleep 301 & echo $! >> {{ params.pids }};"
    " echo $$ >> {{ params.pids }}; wait"
)
# The same, but one child ignores SIGTERM: only SIGKILL ends it.
STUBBORN = (
    "(trap '' TERM; exec sleep 302) & echo $! >> {{ params.pids }};"
    " sleep 303 & echo $! >> {{ params.pids }}; echo $$ >> {{ params.pids }}; wait"
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; it only waits for whoever adopted it to reap it.
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def read_pids(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [int(x) for x in path.read_text().split()]


async def test_stdout_and_stderr_go_to_the_run_logs_and_the_last_stdout_line_is_the_output(
    write_pipeline, start_reactor, store
) -> None:
    write_pipeline(
        "talk.yaml",
        """
        name: talk
        tasks:
          - id: say
            shell: "echo first line; echo to stderr >&2; echo run=$REACTOR_RUN_ID"
        """,
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("talk")
        finished = await reactor.wait_run(run.id)

    assert finished.status == "succeeded", finished.reason
    logs = await store.logs(run.id, after=0, limit=100)
    assert {x.task_id for x in logs} == {"say"}
    # The two streams are read concurrently: each keeps its own order.
    assert [x.line for x in logs if x.stream == "stdout"] == ["first line", f"run={run.id}"]
    assert [x.line for x in logs if x.stream == "stderr"] == ["to stderr"]
    [task] = await store.task_runs(run.id)
    assert task.output == f"run={run.id}"


async def test_non_zero_exit_fails_with_the_exit_code_and_stderr_tail(
    write_pipeline, start_reactor, store
) -> None:
    write_pipeline(
        "exit3.yaml",
        """
        name: exit3
        tasks:
          - id: fail
            shell: "echo partial; echo something went wrong >&2; exit 3"
          - id: never
            needs: [fail]
            shell: "echo never"
        """,
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("exit3")
        finished = await reactor.wait_run(run.id)

    assert finished.status == "failed"
    assert finished.reason == "task fail failed"
    tasks = {t.task_id: t for t in await store.task_runs(run.id)}
    assert tasks["fail"].status == "failed"
    assert tasks["fail"].error == "exit code 3: something went wrong"
    assert tasks["never"].status == "upstream_failed"
    lines = [x.line for x in await store.logs(run.id, after=0, limit=100)]
    assert "partial" in lines


@pytest.mark.parametrize(
    "body",
    [
        "; touch pwned",
        "$(touch pwned)",
        "`touch pwned`",
        "x && touch pwned",
        "' ; touch pwned ; '",
        "a\nTOUCH=1 touch pwned",
    ],
)
async def test_event_data_rendered_into_a_command_is_data_never_code(
    body, write_pipeline, start_reactor, store, pipelines_dir
) -> None:
    write_pipeline(
        "echo.yaml",
        """
        name: echo
        params:
          body: {type: string}
        triggers:
          - on: event
            type: hook.received
            params: {body: "{{ event.data.body }}"}
        tasks:
          - id: say
            shell: "echo {{ params.body }}"
          - id: say_twice
            shell: "printf '%s|%s\\n' {{ params.body }} {{ event.data.body }}"
          - id: via_env
            shell: 'printf "%s" "$BODY"'
            env: {BODY: "{{ params.body }}"}
        """,
    )
    async with start_reactor() as reactor:
        result = await reactor.publish(
            Event(type="hook.received", source="test/hooks", data={"body": body})
        )
        [run_id] = result.run_ids
        finished = await wait_run(store, run_id)

    assert finished.status == "succeeded", finished.reason
    assert not (pipelines_dir / "pwned").exists()
    assert not Path("pwned").exists()
    # Every line of the value reached the log as text; the output is its last line.
    printed = {"say": body, "say_twice": f"{body}|{body}", "via_env": body}
    logs = await store.logs(run_id, after=0, limit=100)
    for task_id, text in printed.items():
        assert "\n".join(x.line for x in logs if x.task_id == task_id) == text
    outputs = {t.task_id: t.output for t in await store.task_runs(run_id)}
    assert outputs == {k: text.splitlines()[-1].strip() for k, text in printed.items()}


@pytest.mark.parametrize("command", [SLEEPERS, STUBBORN], ids=["children", "ignores-sigterm"])
async def test_timeout_kills_the_whole_process_group(
    command, write_pipeline, start_reactor, store, tmp_path
) -> None:
    pids = tmp_path / "pids.txt"
    write_pipeline(
        "sleepy.yaml",
        f"""
        name: sleepy
        params:
          pids: {{type: string}}
        tasks:
          - id: nap
            shell: "{command}"
            timeout: 10s
            kill_grace: 5s
        """,
    )
    clock = FakeClock()
    async with start_reactor(clock=clock) as reactor:
        run = await reactor.run_now("sleepy", {"pids": str(pids)})
        await wait_for(lambda: len(read_pids(pids)) == 3, message="the shell and its children")
        started = read_pids(pids)
        assert all(alive(pid) for pid in started)
        clock.advance(10)
        finished = await wait_run(store, run.id)

    assert finished.status == "failed"
    [task] = await store.task_runs(run.id)
    assert (task.status, task.error) == ("timed_out", "timed out after 10s")
    await wait_for(lambda: not any(alive(pid) for pid in started), message=f"{started} to be gone")


async def test_cancelled_run_kills_the_command_and_its_children(
    write_pipeline, start_reactor, store, tmp_path
) -> None:
    write_pipeline(
        "latest.yaml",
        f"""
        name: latest
        params:
          mode: {{type: string, enum: [slow, fast]}}
          pids: {{type: string}}
        concurrency: {{max_active_runs: 1, on_overlap: cancel_running}}
        triggers:
          - on: event
            type: job.requested
            params: {{mode: "{{{{ event.data.mode }}}}", pids: "{{{{ event.data.pids }}}}"}}
        tasks:
          - id: work
            shell: "if [ {{{{ params.mode }}}} = slow ]; then {SLEEPERS}; else echo quick; fi"
        """,
    )
    pids = tmp_path / "pids.txt"
    async with start_reactor() as reactor:
        first = await reactor.publish(
            Event(type="job.requested", source="test", data={"mode": "slow", "pids": str(pids)})
        )
        await wait_for(lambda: len(read_pids(pids)) == 3, message="the shell and its children")
        started = read_pids(pids)
        second = await reactor.publish(
            Event(type="job.requested", source="test", data={"mode": "fast", "pids": "unused"})
        )
        cancelled = await wait_run(store, first.run_ids[0])
        newer = await wait_run(store, second.run_ids[0])

    assert cancelled.status == "cancelled"
    assert cancelled.reason == (
        f"cancelled for newer run {second.run_ids[0]} (on_overlap: cancel_running)"
    )
    [task] = await store.task_runs(cancelled.id)
    assert task.status == "cancelled"
    assert newer.status == "succeeded"
    await wait_for(lambda: not any(alive(pid) for pid in started), message=f"{started} to be gone")


async def test_a_command_that_cannot_start_fails_with_the_reason(
    write_pipeline, start_reactor, store
) -> None:
    write_pipeline(
        "nowhere.yaml",
        """
        name: nowhere
        tasks:
          - id: here
            shell: "pwd"
            cwd: does/not/exist
        """,
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("nowhere")
        finished = await reactor.wait_run(run.id)

    assert finished.status == "failed"
    [task] = await store.task_runs(run.id)
    assert task.error is not None
    assert task.error.startswith("cannot start shell in ")
    assert "does/not/exist" in task.error
    assert task.error.endswith("No such file or directory")


async def test_many_parallel_commands_all_finish(write_pipeline, start_reactor, store) -> None:
    tasks = "\n".join(f"          - id: t{i}\n            shell: 'echo {i}'" for i in range(20))
    write_pipeline(
        "fan.yaml",
        f"""
        name: fan
        tasks:
{tasks}
        """,
    )
    async with start_reactor(max_tasks=4) as reactor:
        run = await reactor.run_now("fan")
        with anyio.fail_after(30):
            finished = await reactor.wait_run(run.id)

    assert finished.status == "succeeded", finished.reason
    outputs = {t.task_id: t.output for t in await store.task_runs(run.id)}
    assert outputs == {f"t{i}": str(i) for i in range(20)}


@pytest.mark.parametrize(
    "command",
    ['echo "{{ params.body }}"', "echo '{{ params.body }}'", 'echo "x: {{ params.body }}"'],
)
async def test_a_value_written_inside_quotes_is_refused_when_the_pipeline_loads(
    command, write_pipeline, start_reactor, store
) -> None:
    # Inside quotes the shell-quoting is undone: "'$(touch pwned)'" runs touch. Refuse it.
    write_pipeline(
        "quoted.yaml",
        f"""
        name: quoted
        params:
          body: {{type: string, default: "$(touch pwned)"}}
        tasks:
          - id: say
            shell: {json.dumps(command)}
        """,
    )
    with pytest.raises(SpecErrorGroup) as caught:
        async with start_reactor():
            pass
    [problem] = caught.value.problems
    assert str(problem) == (
        "pipelines/quoted.yaml:6: tasks[0].shell: {{ params.body }} is inside quotes;"
        " remove them: every value is shell-quoted already, and quotes around it would let"
        " its text run as code (or pass it in env:)"
    )
    assert await store.list_runs(pipeline=None, limit=10, before=None) == []


async def test_json_written_to_reactor_output_is_the_output_else_the_last_stdout_line(
    write_pipeline, start_reactor, store
) -> None:
    write_pipeline(
        "outputs.yaml",
        """
        name: outputs
        tasks:
          - id: count
            shell: |
              echo counting
              echo '{"rows": 3}' > "$REACTOR_OUTPUT"
              echo done
          - id: use
            needs: [count]
            shell: "echo {{ tasks.count.output.rows + 1 }} rows"
          - id: lines
            shell: "echo first; echo '  second  '; echo; printf '  \\n'"
          - id: quiet
            shell: "echo only on stderr >&2"
          - id: number
            shell: 'echo 42 > "$REACTOR_OUTPUT"; echo not this'
        """,
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("outputs")
        finished = await reactor.wait_run(run.id)

    assert finished.status == "succeeded", finished.reason
    outputs = {t.task_id: t.output for t in await store.task_runs(run.id)}
    assert outputs == {
        "count": {"rows": 3},
        "use": "4 rows",
        "lines": "second",
        "quiet": None,
        "number": 42,
    }


async def test_invalid_json_in_reactor_output_fails_the_task_with_the_reason(
    write_pipeline, start_reactor, store
) -> None:
    write_pipeline(
        "broken.yaml",
        """
        name: broken
        tasks:
          - id: count
            shell: |
              echo '{"rows": ' > "$REACTOR_OUTPUT"
              echo 3
          - id: use
            needs: [count]
            shell: "echo {{ tasks.count.output }}"
        """,
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("broken")
        finished = await reactor.wait_run(run.id)

    assert finished.status == "failed"
    tasks = {t.task_id: t for t in await store.task_runs(run.id)}
    assert (tasks["count"].status, tasks["count"].error) == (
        "failed",
        "$REACTOR_OUTPUT is not valid JSON: Expecting value: line 2 column 1 (char 10)"
        " (first 200 chars: '{\"rows\": \\n')",
    )
    assert tasks["use"].status == "upstream_failed"


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp folder of this test's own, so an output file left behind would show."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.mark.parametrize(
    ("then", "status"),
    [
        ('echo "[1]" > "$REACTOR_OUTPUT"', "succeeded"),
        ("echo failing >&2; exit 1", "failed"),
        ('echo nope > "$REACTOR_OUTPUT"', "failed"),
        ('rm "$REACTOR_OUTPUT"', "succeeded"),
        ("sleep 300", "timed_out"),
    ],
    ids=["succeeds", "fails", "invalid-json", "removed-by-the-command", "times-out"],
)
async def test_the_reactor_output_file_is_fresh_and_gone_after_the_task(
    then, status, write_pipeline, start_reactor, store, tmp_path, private_tmp
) -> None:
    paths = tmp_path / "paths.txt"
    write_pipeline(
        "files.yaml",
        f"""
        name: files
        params:
          paths: {{type: string}}
        tasks:
          - id: write
            shell: |
              test -f "$REACTOR_OUTPUT" && test ! -s "$REACTOR_OUTPUT" || exit 9
              echo "$REACTOR_OUTPUT" >> {{{{ params.paths }}}}
              {then}
            timeout: 10s
        """,
    )
    clock = FakeClock()
    async with start_reactor(clock=clock) as reactor:
        run = await reactor.run_now("files", {"paths": str(paths)})
        await wait_for(paths.exists, message="the command to record its $REACTOR_OUTPUT")
        if status == "timed_out":
            clock.advance(10)
        finished = await wait_run(store, run.id)

    [task] = await store.task_runs(run.id)
    assert task.status == status, task.error
    [written] = paths.read_text().split()
    assert Path(written).parent == private_tmp
    assert not Path(written).exists()
    assert list(private_tmp.iterdir()) == []
    assert finished.status == ("succeeded" if status == "succeeded" else "failed")


# Direct calls of the action: what the executor gets back, without a store.


async def attempt(base_dir: Path, command: str) -> tuple[Any, list[tuple[LogStream, str]]]:
    """One attempt of ``command``: its output or ActionError, and its log lines."""
    action = ShellAction(ShellTaskSpec(id="t", shell=command), base_dir)
    logs: list[tuple[LogStream, str]] = []
    request = TaskRequest(
        run_id="run-1",
        pipeline="direct",
        task_id="t",
        attempt=1,
        scope={},
        base_dir=base_dir,
        log=lambda stream, line: logs.append((stream, line)),
    )
    try:
        result: Any = await action.execute(request)
    except ActionError as exc:
        result = exc
    return result, logs


@pytest.mark.parametrize(
    ("command", "message", "exit_code"),
    [
        ("echo partial; echo bad input >&2; exit 3", "exit code 3: bad input", 3),
        ("exit 1", "exit code 1", 1),
        ("kill -KILL $$", "killed by signal 9", None),
    ],
)
async def test_a_failed_command_gives_its_exit_code_for_retry_on(
    command, message, exit_code, tmp_path
) -> None:
    error, _ = await attempt(tmp_path, command)
    assert isinstance(error, ActionError)
    assert (str(error), error.exit_code) == (message, exit_code)


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("echo nope", "Expecting value: line 1 column 1 (char 0) (first 200 chars: 'nope\\n')"),
        ("echo '[NaN]'", "NaN is not a JSON value (first 200 chars: '[NaN]\\n')"),
        (
            f"printf '\"%s' {'y' * 300}",
            "Unterminated string starting at: line 1 column 1 (char 0)"
            f" (first 200 chars: '\"{'y' * 199}')",
        ),
        (
            "printf '\"\\377\"'",
            "'utf-8' codec can't decode byte 0xff in position 1: invalid start byte"
            " (first 200 chars: '\"\ufffd\"')",
        ),
    ],
    ids=["not-json", "nan", "long", "not-utf-8"],
)
async def test_invalid_json_in_reactor_output_names_the_reason_and_the_start(
    written, message, tmp_path
) -> None:
    error, _ = await attempt(tmp_path, f'{written} > "$REACTOR_OUTPUT"')
    assert isinstance(error, ActionError)
    assert str(error) == f"$REACTOR_OUTPUT is not valid JSON: {message}"
    assert error.exit_code is None


async def test_a_reactor_output_over_16_mib_is_refused(tmp_path) -> None:
    size = (16 << 20) + 1
    error, _ = await attempt(tmp_path, f'head -c {size} /dev/zero > "$REACTOR_OUTPUT"')
    assert isinstance(error, ActionError)
    assert str(error) == (
        f"$REACTOR_OUTPUT is {size:,} bytes, more than the 16 MiB a task may write there"
    )


async def test_reactor_output_cannot_be_overridden_by_env(tmp_path) -> None:
    # A pipeline's env: naming REACTOR_OUTPUT must not point the task at a file of its own.
    mine = tmp_path / "mine.json"
    mine.write_text('"planted"')
    spec = ShellTaskSpec(
        id="t", shell='echo \'"written"\' > "$REACTOR_OUTPUT"', env={"REACTOR_OUTPUT": str(mine)}
    )
    request = TaskRequest(
        run_id="run-1",
        pipeline="direct",
        task_id="t",
        attempt=1,
        scope={},
        base_dir=tmp_path,
        log=lambda stream, line: None,
    )
    assert await ShellAction(spec, tmp_path).execute(request) == "written"
    assert mine.read_text() == '"planted"'
