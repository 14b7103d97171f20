"""``reactor validate`` and ``reactor run`` as a user runs them, in a fresh folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .commands import free_port, run_reactor

pytestmark = pytest.mark.e2e

HELLO = """
name: hello
params:
  name: {type: string}
  count: {type: integer, default: 1}
tasks:
  - id: greet
    shell: "echo hello {{ params.name }} x{{ params.count }}"
  - id: shout
    needs: [greet]
    shell: "echo {{ tasks.greet.output }} | tr a-z A-Z"
"""

FAILS = """
name: fails
tasks:
  - id: bad
    shell: "echo oops >&2; exit 2"
  - id: after
    needs: [bad]
    shell: "echo never"
"""

RUN_LINE = re.compile(r"^\d\d:\d\d:\d\d run ([0-9a-f]{32}) ")


def run_ids(out: str) -> set[str]:
    return {m[1] for line in out.splitlines() if (m := RUN_LINE.match(line))}


def test_validate_a_good_folder(folder) -> None:
    path = folder("pipelines", {"hello.yaml": HELLO, "fails.yaml": FAILS})
    result = run_reactor("validate", str(path))
    assert result.code == 0, result.err
    assert result.out == "ok: 2 pipeline(s): fails, hello\n"
    assert result.err == ""


def test_validate_prints_every_problem_with_file_line_and_field(folder) -> None:
    path = folder(
        "pipelines",
        {
            "hello.yaml": HELLO,
            "types.yaml": """
                name: types
                concurrency: {max_active_runs: many}
                colour: red
                tasks:
                  - id: one
                    shell: "echo"
                """,
            "graph.yaml": """
                name: graph
                tasks:
                  - id: x
                    needs: [y]
                    shell: "echo"
                  - id: y
                    needs: [x]
                    shell: "echo"
                """,
            "ids.yaml": """
                name: ids
                tasks:
                  - id: x
                    needs: [z]
                    shell: "echo"
                  - id: dup
                    shell: "echo"
                  - id: dup
                    shell: "echo {{ oops"
                """,
            "nested/params.yaml": """
                name: params
                params:
                  path: {type: string}
                triggers:
                  - on: event
                    type: orders.*
                tasks:
                  - id: one
                    shell: "echo {{ params.path }}"
                """,
        },
    )
    result = run_reactor("validate", str(path))
    assert result.code == 1
    assert result.out == ""
    problems = result.err.splitlines()
    assert problems[-1] == "error: 7 problem(s) found"
    assert sorted(problems[:-1]) == sorted(
        [
            "pipelines/graph.yaml:4: tasks[0].needs: dependency cycle: x -> y -> x",
            "pipelines/ids.yaml:4: tasks[0].needs[0]: unknown task 'z'",
            "pipelines/ids.yaml:6: tasks[1].id: duplicate task id 'dup'",
            "pipelines/ids.yaml:8: tasks[2].id: duplicate task id 'dup'",
            "pipelines/nested/params.yaml:5: triggers[0].params:"
            " required param 'path' is not given by this trigger",
            "pipelines/types.yaml:2: concurrency.max_active_runs:"
            " Input should be a valid integer, unable to parse string as an integer",
            "pipelines/types.yaml:3: colour: unknown field",
        ]
    )
    # Every problem is file:line: field: message.
    assert all(re.match(r"^pipelines/[\w/]+\.yaml:\d+: [\w\[\].]+: .+", p) for p in problems[:-1])


def test_validate_a_folder_that_does_not_exist(tmp_path: Path) -> None:
    result = run_reactor("validate", str(tmp_path / "nowhere"))
    assert result.code == 1
    assert result.err.splitlines() == [
        f"{tmp_path / 'nowhere'}: is not a folder",
        "error: 1 problem(s) found",
    ]


def test_run_prints_each_state_change_with_the_run_id_and_exits_0(folder) -> None:
    path = folder("pipelines", {"hello.yaml": HELLO})
    result = run_reactor("run", "hello", "-p", "name=world", "-p", "count=3", "--dir", str(path))
    assert result.code == 0, result.err
    assert len(run_ids(result.out)) == 1
    lines = [RUN_LINE.sub("", line).rstrip() for line in result.out.splitlines()]
    assert lines == [
        "hello queued on demand",
        "hello running",
        "  task greet running attempt 1",
        '  task greet succeeded output="hello world x3"',
        "  task shout running attempt 1",
        '  task shout succeeded output="HELLO WORLD X3"',
        "hello succeeded",
    ]
    assert "Traceback" not in result.err
    # The run is kept in the folder's default store.
    assert (path / ".reactor" / "reactor.db").exists()


def test_run_exits_1_when_the_run_failed(folder) -> None:
    path = folder("pipelines", {"fails.yaml": FAILS})
    result = run_reactor("run", "fails", "--dir", str(path))
    assert result.code == 1
    [run_id] = run_ids(result.out)
    assert f"run {run_id}   task bad failed exit code 2: oops" in result.out
    assert f"run {run_id}   task after upstream_failed" in result.out
    assert f"run {run_id} fails failed (task bad failed)" in result.out


def test_run_needs_only_its_own_pipeline_to_be_valid(folder) -> None:
    path = folder("pipelines", {"hello.yaml": HELLO, "broken.yaml": "name: broken\ntasks: 3\n"})
    result = run_reactor("run", "hello", "-p", "name=a", "--dir", str(path))
    assert result.code == 0, result.err
    assert "pipeline not loaded: pipelines/broken.yaml:2: tasks:" in result.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "error: no valid pipeline 'nope' in {dir} (found: hello)"),
        (
            ["hello", "-p", "name=a", "-p", "count=x"],
            "error: hello: param 'count': expected integer, got 'x':"
            " Input should be a valid integer, unable to parse string as an integer",
        ),
        (["hello"], "error: hello: param 'name' is required (string)"),
        (["hello", "-p", "name"], "error: -p 'name': write key=value"),
        (
            ["hello", "-p", "name=a", "-p", "colour=red"],
            "error: hello: unknown param 'colour' (declared: name, count)",
        ),
    ],
    ids=["unknown-pipeline", "bad-type", "missing", "no-equals", "unknown-param"],
)
def test_run_refuses_bad_input_with_a_clear_message(folder, args, message) -> None:
    path = folder("pipelines", {"hello.yaml": HELLO})
    result = run_reactor("run", *args, "--dir", str(path))
    assert result.code == 1
    assert result.err.strip().splitlines()[-1] == message.format(dir=path)
    assert "Traceback" not in result.err
    assert run_ids(result.out) == set()


def test_publish_and_runs_without_a_service_say_how_to_fix_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["publish", "x.y", "--url", url], ["runs", "--url", url]):
        result = run_reactor(*args)
        assert result.code == 1
        assert result.err.startswith(f"error: cannot reach Reactor at {url} (")
        assert result.err.rstrip().endswith("is `reactor serve` running?")
        assert "Traceback" not in result.err


def test_publish_refuses_data_that_is_not_json() -> None:
    result = run_reactor("publish", "x.y", "--data", "{nope", "--url", "http://127.0.0.1:9")
    assert result.code == 1
    assert result.err.startswith("error: --data is not JSON: ")
