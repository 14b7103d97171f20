"""``dbt:`` tasks running the real dbt CLI (``.venv/dbt``) on a small project and PostgreSQL.

dbt lives in its own virtualenv (``make .venv/dbt/.installed``); each invocation costs
seconds, so the tests share one copy of tests/data/dbt_project and run dbt five times.
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from pg import PostgresDatabases

from connectors.dbt import DbtAction, DbtTaskSpec, failure_summary
from reactor.actions import LogStream, TaskRequest
from reactor.errors import ActionError
from reactor.pipelines import load_folder
from reactor.store import Store

from .support import wait_run

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
DBT = ROOT / ".venv" / "dbt" / "bin" / "dbt"
PROJECT = ROOT / "tests" / "data" / "dbt_project"

SHOP = """
CREATE SCHEMA shop;
CREATE TABLE shop.orders (id int PRIMARY KEY, customer text NOT NULL, amount numeric(10, 2));
INSERT INTO shop.orders VALUES (1, 'ada', 10.50), (2, 'bob', 20.00), (3, 'ada', 5.25);
"""


@pytest.fixture(scope="session")
def dbt_executable() -> Path:
    """The dbt of ``.venv/dbt``; CI must have it, a developer without it is told how."""
    if not os.access(DBT, os.X_OK):
        reason = f"dbt is not installed at {DBT}: run `make .venv/dbt/.installed`"
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return DBT


@pytest.fixture(scope="session")
def dbt_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy of the test project for the session (each attempt has its own target folder)."""
    copy = tmp_path_factory.mktemp("dbt") / "dbt_project"
    shutil.copytree(PROJECT, copy)
    return copy


@pytest.fixture
async def shop_db(
    postgres_databases: PostgresDatabases, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    """A fresh database holding shop.orders; profiles.yml reads where it is from the env."""
    async with postgres_databases.scratch(SHOP) as url:
        parts = urlsplit(url)
        monkeypatch.setenv("REACTOR_DBT_HOST", parts.hostname or "127.0.0.1")
        monkeypatch.setenv("REACTOR_DBT_PORT", str(parts.port or 5432))
        monkeypatch.setenv("REACTOR_DBT_USER", parts.username or "postgres")
        monkeypatch.setenv("REACTOR_DBT_DATABASE", parts.path.lstrip("/"))
        yield url


class Log:
    """A task's log sink that keeps every line."""

    def __init__(self) -> None:
        self.lines: list[tuple[LogStream, str]] = []

    def __call__(self, stream: LogStream, line: str) -> None:
        self.lines.append((stream, line))

    def text(self, stream: LogStream) -> list[str]:
        return [line for s, line in self.lines if s == stream]


def action(base_dir: Path, **dbt: Any) -> DbtAction:
    return DbtAction(DbtTaskSpec.model_validate({"id": "dbt", "dbt": dbt}), base_dir)


async def execute(dbt: DbtAction, base_dir: Path, log: Log | None = None, **params: Any) -> Any:
    request = TaskRequest(
        run_id=f"run-{uuid.uuid4().hex[:8]}",
        pipeline="p",
        task_id="dbt",
        attempt=1,
        scope={"params": params},
        base_dir=base_dir,
        log=log or Log(),
    )
    return await dbt.execute(request)


async def fetch(url: str, query: str) -> list[dict[str, Any]]:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        return [dict(row) for row in await connection.fetch(query)]
    finally:
        await connection.close()


PIPELINE = """
name: warehouse
params:
  day: {type: string}
tasks:
  - id: build
    dbt:
      command: build
      project_dir: dbt_project
      select: "tag:daily"
      exclude: [tag:strict, tag:broken]
      vars: {day: "{{ params.day }}"}
      target: dev
      threads: 2
      executable: tools/dbt
  - id: report
    needs: [build]
    shell: "echo {{ tasks.build.output.counts.success }} models"
"""


@pytest.mark.anyio
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_a_build_runs_the_selected_models_and_tests_with_vars(
    shop_db: str,
    dbt_executable: Path,
    dbt_project: Path,
    pipelines_dir: Path,
    write_pipeline,
    start_reactor,
    store: Store,
) -> None:
    # project_dir and executable are relative to the pipeline's folder.
    (pipelines_dir / "dbt_project").symlink_to(dbt_project)
    (pipelines_dir / "tools").mkdir()
    (pipelines_dir / "tools" / "dbt").symlink_to(dbt_executable)
    write_pipeline("warehouse.yaml", PIPELINE)
    async with start_reactor() as reactor:
        run = await reactor.run_now("warehouse", {"day": "2026-03-01"})
        done = await wait_run(store, run.id, timeout=120)
    assert done.status == "succeeded", done.reason
    tasks = {t.task_id: t for t in await store.task_runs(run.id)}
    output = tasks["build"].output
    assert output["command"] == "build"
    assert output["success"] is True
    assert isinstance(output["elapsed"], float)
    assert output["counts"] == {"pass": 1, "success": 2}
    assert [(r["unique_id"], r["status"]) for r in output["results"]] == [
        ("model.reactor_shop.stg_orders", "success"),
        ("test.reactor_shop.not_null_stg_orders_id.8cf5724805", "pass"),
        ("model.reactor_shop.customer_totals", "success"),
    ]
    assert output["results"][0]["message"] == "SELECT 3"
    assert output["results"][1]["failures"] == 0
    # Each attempt has a target folder of its own inside the project.
    target = Path(output["target_path"])
    assert target == dbt_project.resolve() / "target" / "reactor" / run.id / "build" / "1"
    assert (target / "run_results.json").is_file()
    assert tasks["report"].output == "2 models"
    logs = [x.line for x in await store.logs(run.id, after=0, limit=1000) if x.task_id == "build"]
    assert any(line.endswith("Completed successfully") for line in logs)
    # The var reached the model.
    rows = await fetch(shop_db, "select * from analytics.customer_totals order by customer")
    assert [(r["customer"], float(r["total"]), r["day"]) for r in rows] == [
        ("ada", 15.75, "2026-03-01"),
        ("bob", 20.0, "2026-03-01"),
    ]


@pytest.mark.anyio
async def test_a_failing_model_fails_the_task_with_the_database_error(
    shop_db: str, dbt_executable: Path, dbt_project: Path, tmp_path: Path
) -> None:
    dbt = action(
        tmp_path,
        command="run",
        project_dir=str(dbt_project),
        select="{{ params.model }}",
        executable=str(dbt_executable),
    )
    log = Log()
    with pytest.raises(ActionError) as caught:
        await execute(dbt, tmp_path, log, model="broken_orders")
    assert str(caught.value) == (
        "dbt run failed (exit code 1): model.reactor_shop.broken_orders error:"
        ' relation "shop.missing_table" does not exist'
    )
    assert caught.value.exit_code == 1
    # The output the task could not return is in the log.
    [logged] = [x for x in log.text("system") if x.startswith("dbt output: ")]
    output = json.loads(logged.removeprefix("dbt output: "))
    assert output["success"] is False
    assert output["counts"] == {"error": 1}
    assert "Database Error in model broken_orders" in output["results"][0]["message"]
    assert any("ERROR creating sql table model" in line for line in log.text("stdout"))


@pytest.mark.anyio
async def test_a_failing_dbt_test_fails_the_task_and_skips_what_depends_on_it(
    shop_db: str, dbt_executable: Path, dbt_project: Path, tmp_path: Path
) -> None:
    dbt = action(
        tmp_path,
        project_dir=str(dbt_project),
        profiles_dir=str(dbt_project),
        select="tag:daily",
        executable=str(dbt_executable),
    )
    log = Log()
    with pytest.raises(ActionError) as caught:
        await execute(dbt, tmp_path, log)
    assert str(caught.value) == (
        "dbt build failed (exit code 1): test.reactor_shop.no_large_orders fail:"
        " Got 1 result, configured to fail if != 0"
    )
    [logged] = [x for x in log.text("system") if x.startswith("dbt output: ")]
    output = json.loads(logged.removeprefix("dbt output: "))
    assert output["counts"] == {"fail": 1, "pass": 1, "skipped": 1, "success": 1}
    [failed] = [r for r in output["results"] if r["status"] == "fail"]
    assert failed["failures"] == 1


@pytest.mark.anyio
async def test_ls_lists_the_selected_nodes(
    shop_db: str, dbt_executable: Path, dbt_project: Path, tmp_path: Path
) -> None:
    dbt = action(
        tmp_path,
        command="ls",
        project_dir=str(dbt_project),
        select=["tag:daily", "tag:broken"],
        exclude="tag:strict",
        executable=str(dbt_executable),
    )
    output = await execute(dbt, tmp_path)
    assert sorted(output["nodes"]) == [
        "model.reactor_shop.broken_orders",
        "model.reactor_shop.customer_totals",
        "model.reactor_shop.stg_orders",
        "test.reactor_shop.not_null_stg_orders_id.8cf5724805",
    ]
    assert output["success"] is True
    assert output["results"] == []


@pytest.mark.anyio
async def test_dbt_failing_before_any_node_says_why(
    shop_db: str,
    dbt_executable: Path,
    dbt_project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REACTOR_DBT_DATABASE", "reactor_no_such_database")
    dbt = action(
        tmp_path, command="run", project_dir=str(dbt_project), executable=str(dbt_executable)
    )
    with pytest.raises(ActionError) as caught:
        await execute(dbt, tmp_path)
    message = str(caught.value)
    assert message.startswith("dbt run failed (exit code 2): Database Error"), message
    assert 'database "reactor_no_such_database" does not exist' in message
    assert caught.value.exit_code == 2


# What is checked before dbt starts (dbt is not needed)


@pytest.mark.anyio
async def test_a_missing_project_or_profile_is_named(tmp_path: Path) -> None:
    true = shutil.which("true")
    assert true is not None
    with pytest.raises(ActionError, match=r"^dbt project folder \S+/nowhere does not exist$"):
        await execute(action(tmp_path, project_dir="nowhere", executable=true), tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ActionError, match=r"^dbt project folder \S+/empty has no dbt_project.yml$"):
        await execute(action(tmp_path, project_dir="empty", executable=true), tmp_path)
    shutil.copytree(PROJECT, tmp_path / "project")
    with pytest.raises(ActionError, match=r"^dbt profiles_dir \S+/empty has no profiles.yml$"):
        await execute(
            action(tmp_path, project_dir="project", profiles_dir="empty", executable=true),
            tmp_path,
        )


@pytest.mark.anyio
async def test_a_missing_executable_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(PROJECT, tmp_path / "project")
    with pytest.raises(ActionError, match=r"^dbt executable \S+/venv/bin/dbt does not exist$"):
        await execute(action(tmp_path, project_dir="project", executable="venv/bin/dbt"), tmp_path)
    (tmp_path / "dbt").write_text("#!/bin/sh\n")
    with pytest.raises(ActionError, match=r"^dbt executable \S+/dbt is not executable$"):
        await execute(action(tmp_path, project_dir="project", executable="./dbt"), tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(ActionError) as caught:
        await execute(action(tmp_path, project_dir="project"), tmp_path)
    assert str(caught.value) == (
        "'dbt' is not on PATH; install dbt or set dbt.executable to its path"
        " (e.g. .venv/dbt/bin/dbt)"
    )


@pytest.mark.anyio
async def test_a_selection_that_renders_empty_is_refused(tmp_path: Path) -> None:
    dbt = action(tmp_path, select="{{ params.models }}", executable="/bin/true")
    with pytest.raises(ActionError) as caught:
        await execute(dbt, tmp_path, models="")
    assert str(caught.value) == "dbt.select rendered empty (''); remove it to select all"


def test_failures_are_summarised_five_at_most() -> None:
    results = [
        {"unique_id": f"model.p.m{i}", "status": "error", "message": "boom"} for i in range(7)
    ]
    results.append({"unique_id": "model.p.ok", "status": "success", "message": "SELECT 1"})
    results.append({"unique_id": "test.p.t", "status": "fail", "message": None})
    assert failure_summary(results) == (
        "model.p.m0 error: boom; model.p.m1 error: boom; model.p.m2 error: boom;"
        " model.p.m3 error: boom; model.p.m4 error: boom; and 3 more"
    )
    assert failure_summary(results[-2:]) == "test.p.t fail"
    assert failure_summary(results[-2:-1]) is None


def test_validate_reports_bad_dbt_tasks(pipelines_dir: Path) -> None:
    (pipelines_dir / "bad.yaml").write_text(
        textwrap.dedent("""\
        name: bad
        tasks:
          - id: verb
            dbt: {command: deploy}
          - id: threads
            dbt: {command: ls, threads: 4}
          - id: zero
            dbt: {threads: 0}
          - id: unknown
            dbt: {models: orders}
          - id: vars
            dbt: {vars: [day]}
        """)
    )
    (pipelines_dir / "template.yaml").write_text(
        'name: template\ntasks:\n  - id: t\n    dbt: {select: "{{ params.x"}\n'
    )
    found = [str(p) for p in load_folder(pipelines_dir).problems]
    bad = "pipelines/bad.yaml:"
    assert found[:5] == [
        bad + "4: tasks[0].dbt.command: Input should be 'build', 'run', 'test', 'seed',"
        " 'snapshot', 'compile' or 'ls', got 'deploy'",
        bad + "6: tasks[1].dbt: threads does not apply to dbt ls (it runs no node)",
        bad + "8: tasks[2].dbt.threads: Input should be greater than or equal to 1",
        bad + "10: tasks[3].dbt.models: unknown field",
        bad + "12: tasks[4].dbt.vars: Input should be a valid dictionary",
    ]
    assert found[5].startswith(
        "pipelines/template.yaml:4: tasks[0].dbt: unexpected end of template"
    ), found[5]
    assert len(found) == 6
