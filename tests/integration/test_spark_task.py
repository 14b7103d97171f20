"""``spark:`` tasks: the spark-submit command line, validation, and runs of a fake spark-submit.

Spark is not installed on the test machines: a shell script named ``spark-submit`` stands
in for it (it records its argv and environment), and the test with the real one skips.
"""

from __future__ import annotations

import shutil
import stat
import textwrap
from pathlib import Path
from typing import Any

import pytest

from connectors.spark import NOT_FOUND, SparkAction, SparkTaskSpec, spark_command
from reactor.actions import LogStream, TaskRequest
from reactor.errors import ActionError
from reactor.pipelines import load_folder

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

FAKE_SPARK_SUBMIT = """\
#!/bin/sh
# Records how it was called beside itself, then behaves as the test's variables say.
printf '%s\\0' "$@" > "$0.argv"
printf '%s\\n' "run=$REACTOR_RUN_ID" "task=$REACTOR_TASK_ID" "cwd=$(pwd)" > "$0.env"
echo "submitting $# arguments"
if [ -n "$FAKE_SPARK_JSON" ]; then printf '%s' "$FAKE_SPARK_JSON" > "$REACTOR_OUTPUT"; fi
if [ -n "$FAKE_SPARK_EXIT" ]; then
    echo "Exception in thread main: the job failed" >&2
    exit "$FAKE_SPARK_EXIT"
fi
echo "rows=42"
"""


def write_executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def called_with(fake: Path) -> list[str]:
    return Path(f"{fake}.argv").read_bytes().decode().split("\0")[:-1]


def called_in(fake: Path) -> dict[str, str]:
    lines = Path(f"{fake}.env").read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines)


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder that is all of PATH besides /bin (for sh), with a fake ``spark-submit``."""
    folder = tmp_path / "bin"
    write_executable(folder / "spark-submit", FAKE_SPARK_SUBMIT)
    monkeypatch.setenv("PATH", f"{folder}:/bin:/usr/bin")
    monkeypatch.delenv("SPARK_HOME", raising=False)
    for name in ("FAKE_SPARK_JSON", "FAKE_SPARK_EXIT"):
        monkeypatch.delenv(name, raising=False)
    return folder


@pytest.fixture
def job_dir(pipelines_dir: Path) -> Path:
    (pipelines_dir / "jobs").mkdir()
    (pipelines_dir / "jobs" / "aggregate.py").write_text("print('aggregating')\n")
    (pipelines_dir / "jobs" / "aggregate.jar").write_bytes(b"PK\x03\x04")
    return pipelines_dir


async def attempt(
    base_dir: Path, spark: dict[str, Any], scope: dict[str, Any] | None = None
) -> tuple[Any, list[tuple[LogStream, str]], list[int]]:
    """One attempt of a spark task: its output or ActionError, its log lines and pids."""
    spec = SparkTaskSpec.model_validate({"id": "aggregate", "spark": spark})
    logs: list[tuple[LogStream, str]] = []
    pids: list[int] = []

    async def report_process(pid: int) -> None:
        pids.append(pid)

    request = TaskRequest(
        run_id="run-1",
        pipeline="direct",
        task_id="aggregate",
        attempt=1,
        scope=scope or {},
        base_dir=base_dir,
        log=lambda stream, line: logs.append((stream, line)),
        report_process=report_process,
    )
    try:
        result: Any = await SparkAction(spec, base_dir).execute(request)
    except ActionError as exc:
        result = exc
    return result, logs, pids


def test_the_command_line_puts_options_before_the_application_and_its_args() -> None:
    app = Path("/p/jobs/aggregate.py")
    assert spark_command("spark-submit", app, master="local[*]") == [
        "spark-submit",
        "--master",
        "local[*]",
        "/p/jobs/aggregate.py",
    ]
    jar = Path("/p/jobs/aggregate.jar")
    assert spark_command(
        "/opt/spark/bin/spark-submit",
        jar,
        master="yarn",
        main_class="com.example.Main",
        conf={"spark.sql.shuffle.partitions": "8", "spark.app.name": "daily agg"},
        args=["--day", "2024-05-06", "two words"],
    ) == [
        "/opt/spark/bin/spark-submit",
        "--master",
        "yarn",
        "--class",
        "com.example.Main",
        "--conf",
        "spark.sql.shuffle.partitions=8",
        "--conf",
        "spark.app.name=daily agg",
        "/p/jobs/aggregate.jar",
        "--day",
        "2024-05-06",
        "two words",
    ]


async def test_argv_env_and_the_last_stdout_line(fake_bin: Path, job_dir: Path) -> None:
    output, logs, pids = await attempt(
        job_dir,
        {
            "application": "jobs/aggregate.py",
            "master": "local[2]",
            "args": ["--day", "{{ params.day }}", "; rm -rf /", 3],
            "conf": {"spark.sql.shuffle.partitions": 8, "spark.ui.enabled": False},
        },
        {"params": {"day": "2024-05-06"}},
    )

    fake = fake_bin / "spark-submit"
    assert output == "rows=42"
    assert called_with(fake) == [
        "--master",
        "local[2]",
        "--conf",
        "spark.sql.shuffle.partitions=8",
        "--conf",
        "spark.ui.enabled=false",
        str(job_dir / "jobs" / "aggregate.py"),
        "--day",
        "2024-05-06",
        "; rm -rf /",
        "3",
    ]
    assert called_in(fake) == {"run": "run-1", "task": "aggregate", "cwd": str(job_dir)}
    assert logs == [("stdout", "submitting 11 arguments"), ("stdout", "rows=42")]
    assert len(pids) == 1


async def test_json_in_reactor_output_is_the_output(
    fake_bin: Path, job_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SPARK_JSON", '{"rows": 42, "partitions": ["a", "b"]}')
    output, _logs, _pids = await attempt(
        job_dir,
        {"application": "jobs/aggregate.jar", "main_class": "com.example.Main"},
    )

    assert output == {"rows": 42, "partitions": ["a", "b"]}
    argv = called_with(fake_bin / "spark-submit")
    assert argv == [
        "--master",
        "local[*]",
        "--class",
        "com.example.Main",
        str(job_dir / "jobs" / "aggregate.jar"),
    ]


async def test_a_failed_job_gives_its_exit_code_and_stderr(
    fake_bin: Path, job_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SPARK_EXIT", "3")
    error, logs, _pids = await attempt(job_dir, {"application": "jobs/aggregate.py"})

    assert isinstance(error, ActionError)
    assert str(error) == (
        "spark-submit ended with exit code 3: Exception in thread main: the job failed"
    )
    assert error.exit_code == 3
    assert ("stderr", "Exception in thread main: the job failed") in logs


async def test_spark_home_and_a_configured_spark_submit(
    tmp_path: Path, job_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/bin:/usr/bin")
    home = tmp_path / "spark"
    fake = write_executable(home / "bin" / "spark-submit", FAKE_SPARK_SUBMIT)
    monkeypatch.setenv("SPARK_HOME", str(home))
    output, _logs, _pids = await attempt(job_dir, {"application": "jobs/aggregate.py"})
    assert output == "rows=42"
    assert called_with(fake)[-1] == str(job_dir / "jobs" / "aggregate.py")

    # A path in spark_submit: is relative to the pipeline's folder, and wins over SPARK_HOME.
    own = write_executable(job_dir / "tools" / "submit", FAKE_SPARK_SUBMIT)
    output, _logs, _pids = await attempt(
        job_dir, {"application": "jobs/aggregate.py", "spark_submit": "tools/submit"}
    )
    assert output == "rows=42"
    assert called_with(own) == ["--master", "local[*]", str(job_dir / "jobs" / "aggregate.py")]


async def test_without_spark_submit_the_attempt_says_how_to_get_one(
    tmp_path: Path, job_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("SPARK_HOME", raising=False)
    error, _logs, pids = await attempt(job_dir, {"application": "jobs/aggregate.py"})
    assert isinstance(error, ActionError)
    assert str(error) == NOT_FOUND
    assert str(error) == "spark-submit not found: install Spark or set spark_submit: / SPARK_HOME"
    assert pids == []

    # SPARK_HOME set to a folder without Spark is no better.
    monkeypatch.setenv("SPARK_HOME", str(tmp_path))
    error, _logs, _pids = await attempt(job_dir, {"application": "jobs/aggregate.py"})
    assert str(error) == NOT_FOUND

    error, _logs, _pids = await attempt(
        job_dir, {"application": "jobs/aggregate.py", "spark_submit": "spark3-submit"}
    )
    assert str(error) == (
        "spark_submit 'spark3-submit' not found: install Spark or fix spark_submit:"
    )


async def test_a_missing_application_is_named(fake_bin: Path, pipelines_dir: Path) -> None:
    error, _logs, pids = await attempt(pipelines_dir, {"application": "jobs/gone.py"})

    assert isinstance(error, ActionError)
    assert str(error) == f"application {pipelines_dir / 'jobs' / 'gone.py'} does not exist"
    assert pids == []


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_a_pipeline_passes_params_to_the_job(
    fake_bin, job_dir, write_pipeline, start_reactor, store, monkeypatch
) -> None:
    monkeypatch.setenv("FAKE_SPARK_JSON", '{"rows": 42}')
    write_pipeline(
        "aggregate.yaml",
        """
        name: aggregate
        params:
          day: {type: string}
        tasks:
          - id: aggregate
            spark:
              application: jobs/aggregate.py
              master: "local[2]"
              args: ["--day", "{{ params.day }}"]
              conf: {spark.sql.shuffle.partitions: "8"}
          - id: report
            needs: [aggregate]
            shell: echo {{ tasks.aggregate.output.rows }}
        """,
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("aggregate", {"day": "2024-05-06"})
        finished = await reactor.wait_run(run.id)

    assert finished.status == "succeeded", finished.reason
    outputs = {t.task_id: t.output for t in await store.task_runs(run.id)}
    assert outputs == {"aggregate": {"rows": 42}, "report": "42"}
    fake = fake_bin / "spark-submit"
    assert called_with(fake)[-3:] == [str(job_dir / "jobs" / "aggregate.py"), "--day", "2024-05-06"]
    assert called_in(fake)["run"] == run.id
    pids = {a.task_id: a.pid for a in await store.attempts(run.id)}
    assert pids["aggregate"] is not None


def test_bad_specs_are_reported_at_their_lines(pipelines_dir: Path) -> None:
    (pipelines_dir / "bad.yaml").write_text(
        textwrap.dedent("""\
        name: bad
        tasks:
          - id: notebook
            spark: {application: jobs/report.ipynb}
          - id: main_class
            spark:
              application: jobs/aggregate.py
              main_class: com.example.Main
          - id: conf
            spark:
              application: jobs/aggregate.jar
              conf: {"a=b": "1"}
          - id: args
            spark:
              application: jobs/aggregate.py
              args: [{day: 1}]
          - id: nothing
            spark: {master: "local[2]"}
          - id: extra
            spark:
              application: jobs/aggregate.py
              class: com.example.Main
          - id: class_name
            spark:
              application: jobs/aggregate.jar
              main_class: "com example"
        """)
    )
    found = [str(p) for p in load_folder(pipelines_dir).problems]
    bad = "pipelines/bad.yaml:"
    assert found == [
        bad + "4: tasks[0].spark: application names a .py or .jar file, got 'jobs/report.ipynb'",
        bad + "6: tasks[1].spark: main_class is for a .jar application; a .py one runs as it is",
        bad + "10: tasks[2].spark: conf key 'a=b' is not a Spark setting name",
        bad + "16: tasks[3].spark.args: args lists text, numbers or booleans, got {'day': 1}",
        bad + "18: tasks[4].spark.application: field required",
        bad + "22: tasks[5].spark.class: unknown field",
        bad + "26: tasks[6].spark.main_class: 'com example' is not a Java class name"
        " (like com.example.Main)",
    ]


def test_a_broken_template_is_reported_at_its_field(pipelines_dir: Path) -> None:
    (pipelines_dir / "bad.yaml").write_text(
        textwrap.dedent("""\
        name: bad
        tasks:
          - id: t
            spark:
              application: jobs/aggregate.py
              args: ["{{ params.day"]
        """)
    )
    [found] = [str(p) for p in load_folder(pipelines_dir).problems]
    assert found == (
        "pipelines/bad.yaml:6: tasks[0].spark.args: unexpected end of template,"
        " expected 'end of print statement'. (in '{{ params.day')"
    )


@pytest.mark.skipif(
    shutil.which("spark-submit") is None,
    reason="Spark is not installed here: spark-submit is not on PATH",
)
async def test_a_real_spark_job(pipelines_dir: Path) -> None:
    (pipelines_dir / "jobs").mkdir()
    (pipelines_dir / "jobs" / "count.py").write_text(
        textwrap.dedent("""\
        import json, os, sys
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.getOrCreate()
        rows = spark.range(int(sys.argv[1])).count()
        with open(os.environ["REACTOR_OUTPUT"], "w") as out:
            json.dump({"rows": rows}, out)
        spark.stop()
        """)
    )
    output, logs, _pids = await attempt(
        pipelines_dir,
        {"application": "jobs/count.py", "master": "local[1]", "args": ["{{ params.n }}"]},
        {"params": {"n": 7}},
    )
    assert output == {"rows": 7}, logs
