"""``check:`` tasks against the machine's PostgreSQL, a real SQLite file and real modules."""

from __future__ import annotations

import sqlite3
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pg import PostgresDatabases

from connectors.check_task import CheckAction, CheckTaskSpec
from reactor.actions import LogStream, TaskRequest
from reactor.clock import FakeClock
from reactor.errors import ActionError, ExpressionError
from reactor.pipelines import load_folder
from reactor.store import Store

from .test_chaining import wait_runs
from .test_control_flow import run_pipeline, system_log, tasks_of

pytestmark = [pytest.mark.integration]

ORDERS = """
CREATE TABLE orders (id int PRIMARY KEY, customer text NOT NULL, amount numeric(10, 2));
INSERT INTO orders VALUES (1, 'ada', 10.50), (2, 'bob', 20.00), (3, 'ada', 5.25);
"""

CHECKS = """
import datetime

def is_fresh(table):
    return table == "orders"

def assert_fresh(table):
    assert table == "orders", f"table {table} is stale"

def bare_assert():
    assert False

def broken(table):
    raise ConnectionError(f"cannot reach {table}")

def maybe():
    return "yes"
"""


@pytest.fixture
async def pg_url(postgres_databases: PostgresDatabases) -> AsyncIterator[str]:
    """A fresh PostgreSQL database holding three orders."""
    async with postgres_databases.scratch(ORDERS) as url:
        yield url


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Path:
    """A SQLite file holding the same three orders."""
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as connection:
        connection.executescript(ORDERS.replace("numeric(10, 2)", "real"))
    connection.close()
    return path


@pytest.fixture
def checks_module(tmp_path: Path) -> Iterator[str]:
    """``CHECKS`` as a module of its own in ``tmp_path``; its unique name."""
    name = f"checks_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(CHECKS), encoding="utf-8")
    yield name
    sys.modules.pop(name, None)
    while str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


def check(tmp_path: Path, **fields: Any) -> CheckAction:
    return CheckAction(CheckTaskSpec.model_validate({"id": "c", **fields}), tmp_path)


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[LogStream, str]] = []

    def __call__(self, stream: LogStream, line: str) -> None:
        self.lines.append((stream, line))

    @property
    def system(self) -> list[str]:
        return [line for stream, line in self.lines if stream == "system"]


async def execute(action: CheckAction, tmp_path: Path, log: Log | None = None) -> Any:
    request = TaskRequest(
        run_id="run-1",
        pipeline="p",
        task_id="c",
        attempt=1,
        scope={"params": {"least": 1}},
        base_dir=tmp_path,
        log=log or Log(),
    )
    return await action.execute(request)


async def failed_check(action: CheckAction, tmp_path: Path) -> ActionError:
    """The ActionError of a failed check: it carries the result and is never retried."""
    with pytest.raises(ActionError) as caught:
        await execute(action, tmp_path)
    assert caught.value.permanent
    assert caught.value.output is not None
    return caught.value


async def task_error(action: CheckAction, tmp_path: Path) -> str:
    """The message of an attempt that could not check (retried; no result)."""
    with pytest.raises(ActionError) as caught:
        await execute(action, tmp_path)
    assert not caught.value.permanent
    assert caught.value.output is None
    return str(caught.value)


# sql: "no rows"


@pytest.mark.anyio
async def test_a_query_returning_no_rows_passes(tmp_path: Path, pg_url: str) -> None:
    action = check(
        tmp_path,
        check={
            "sql": "select * from orders where amount < :least",
            "connection": pg_url,
            "args": {"least": "{{ params.least }}"},
        },
    )
    assert await execute(action, tmp_path) == {
        "passed": True,
        "severity": "fail",
        "observed": {"row_count": 0, "rows": []},
        "expectation": "no rows",
        "message": "found no rows",
        "outcome": "passed",
    }


@pytest.mark.anyio
async def test_rows_found_fail_the_task_with_the_rows_as_json(tmp_path: Path, pg_url: str) -> None:
    action = check(
        tmp_path,
        check={"sql": "select id, amount from orders order by id", "connection": pg_url},
    )
    failed = await failed_check(action, tmp_path)
    assert str(failed) == "check failed: found 3 rows, expected no rows"
    assert failed.output == {
        "passed": False,
        "severity": "fail",
        "observed": {
            "row_count": 3,
            "rows": [
                {"id": 1, "amount": "10.50"},
                {"id": 2, "amount": "20.00"},
                {"id": 3, "amount": "5.25"},
            ],
        },
        "expectation": "no rows",
        "message": "found 3 rows, expected no rows",
        "outcome": "failed",
    }


@pytest.mark.anyio
async def test_a_warning_succeeds_with_the_result_and_logs_it(tmp_path: Path, pg_url: str) -> None:
    action = check(
        tmp_path,
        check={"sql": "select g from generate_series(1, 25) g", "connection": pg_url},
        severity="warn",
    )
    log = Log()
    result = await execute(action, tmp_path, log)
    assert (result["passed"], result["outcome"]) == (False, "warned")
    # Every row is counted; the first ten are kept.
    assert result["observed"] == {"row_count": 25, "rows": [{"g": n} for n in range(1, 11)]}
    assert log.system == ["warning: check failed: found 25 rows, expected no rows"]


@pytest.mark.anyio
async def test_a_statement_without_rows_cannot_be_a_check(tmp_path: Path, pg_url: str) -> None:
    action = check(
        tmp_path,
        check={"sql": "update orders set amount = amount where id = 1", "connection": pg_url},
    )
    assert await task_error(action, tmp_path) == (
        "a check's query must return rows (a select); this statement changed 1 row"
    )


@pytest.mark.anyio
async def test_a_query_error_is_an_error_of_the_task(tmp_path: Path, pg_url: str) -> None:
    action = check(tmp_path, check={"sql": "select price from orders", "connection": pg_url})
    message = await task_error(action, tmp_path)
    assert message.startswith('column "price" does not exist (line 1, column 8)')


# sql: between


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("sql", "between", "passed", "observed", "message", "expectation"),
    [
        ("select count(*) from orders", [1, 1000000], True, 3, "found 3", "between 1 and 1000000"),
        ("select count(*) from orders", [3, 3], True, 3, "found 3", "between 3 and 3"),
        (
            "select count(*) from orders",
            [5, None],
            False,
            3,
            "found 3, expected at least 5",
            "at least 5",
        ),
        (
            "select sum(amount) from orders",
            [None, 35.75],
            True,
            35.75,
            "found 35.75",
            "at most 35.75",
        ),
        (
            "select sum(amount) from orders",
            [None, 35.7],
            False,
            35.75,
            "found 35.75, expected at most 35.7",
            "at most 35.7",
        ),
        (
            "select max(amount) from orders",
            [20, 1e6],
            True,
            20,
            "found 20",
            "between 20 and 1000000",
        ),
        (
            "select avg(id)::float8 from orders",
            [2.5, 9],
            False,
            2.0,
            "found 2.0, expected between 2.5 and 9",
            "between 2.5 and 9",
        ),
    ],
)
async def test_between_compares_the_one_number_the_query_returns(
    tmp_path: Path,
    pg_url: str,
    sql: str,
    between: list[Any],
    passed: bool,
    observed: Any,
    message: str,
    expectation: str,
) -> None:
    action = check(
        tmp_path, check={"sql": sql, "connection": pg_url, "between": between}, severity="warn"
    )
    result = await execute(action, tmp_path)
    assert result == {
        "passed": passed,
        "severity": "warn",
        "observed": observed,
        "expectation": expectation,
        "message": message,
        "outcome": "passed" if passed else "warned",
    }
    assert type(result["observed"]) is type(observed)


@pytest.mark.anyio
async def test_between_fails_the_task_below_the_range(tmp_path: Path, pg_url: str) -> None:
    action = check(
        tmp_path,
        check={"sql": "select count(*) from orders", "connection": pg_url, "between": [4, 10]},
    )
    failed = await failed_check(action, tmp_path)
    assert str(failed) == "check failed: found 3, expected between 4 and 10"
    assert failed.output["observed"] == 3


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("select id from orders", "it returned 3 rows"),
        ("select id from orders where id < 0", "it returned no rows"),
        ("select count(*) as n, sum(id) as total from orders", "it returned 2 columns: n, total"),
        ("select customer from orders where id = 1", "column customer is 'ada', not a number"),
        ("select '5'::text as n", "column n is '5', not a number"),
        ("select true as ok", "column ok is True, not a number"),
        ("select sum(amount) as total from orders where id < 0", "column total is NULL"),
        ("select 'NaN'::numeric as n", "column n is NaN, not a finite number"),
    ],
)
async def test_between_needs_one_row_with_one_number(
    tmp_path: Path, pg_url: str, sql: str, problem: str
) -> None:
    action = check(tmp_path, check={"sql": sql, "connection": pg_url, "between": [0, 10]})
    message = await task_error(action, tmp_path)
    assert message.startswith(
        "a check with between: needs its query to return one row with one number"
        f" (between 0 and 10); {problem}"
    ), message


# SQLite


@pytest.mark.anyio
async def test_sqlite_checks_pass_fail_and_warn(tmp_path: Path, sqlite_db: Path) -> None:
    url = "sqlite:///shop.db"  # beside the pipeline
    clean = check(
        tmp_path, check={"sql": "select * from orders where amount < 0", "connection": url}
    )
    assert (await execute(clean, tmp_path))["outcome"] == "passed"

    dirty = check(
        tmp_path,
        check={"sql": "select id from orders where customer = 'ada'", "connection": url},
    )
    failed = await failed_check(dirty, tmp_path)
    assert str(failed) == "check failed: found 2 rows, expected no rows"
    assert failed.output["observed"] == {"row_count": 2, "rows": [{"id": 1}, {"id": 3}]}

    count = f"sqlite:///{sqlite_db}"
    sums = check(
        tmp_path,
        check={"sql": "select sum(amount) from orders", "connection": count, "between": [0, 30]},
        severity="warn",
    )
    log = Log()
    result = await execute(sums, tmp_path, log)
    assert (result["outcome"], result["observed"]) == ("warned", 35.75)
    assert log.system == ["warning: check failed: found 35.75, expected between 0 and 30"]
    text = check(
        tmp_path,
        check={"sql": "select customer from orders limit 1", "connection": url, "between": [0, 1]},
    )
    assert (await task_error(text, tmp_path)).endswith("column customer is 'ada', not a number")


# python:


@pytest.mark.anyio
@pytest.mark.parametrize("timeout", [None, 60], ids=["thread", "child process"])
async def test_python_checks(tmp_path: Path, checks_module: str, timeout: int | None) -> None:
    def python(target: str, severity: str = "fail", **args: Any) -> CheckAction:
        fields: dict[str, Any] = {"python": f"{checks_module}:{target}", "args": args}
        return check(tmp_path, check=fields, severity=severity, timeout=timeout)

    passed = await execute(python("is_fresh", table="orders"), tmp_path)
    assert passed == {
        "passed": True,
        "severity": "fail",
        "observed": True,
        "expectation": f"{checks_module}:is_fresh is true",
        "message": f"{checks_module}:is_fresh returned True",
        "outcome": "passed",
    }

    failed = await failed_check(python("is_fresh", table="users"), tmp_path)
    assert str(failed) == f"check failed: {checks_module}:is_fresh returned False"
    assert failed.output["observed"] is False

    failed = await failed_check(python("assert_fresh", table="users"), tmp_path)
    assert str(failed) == f"check failed: {checks_module}:assert_fresh: table users is stale"
    assert failed.output["observed"] is None

    failed = await failed_check(python("bare_assert"), tmp_path)
    assert str(failed) == f"check failed: {checks_module}:bare_assert raised AssertionError"

    log = Log()
    warned = await execute(python("assert_fresh", "warn", table="users"), tmp_path, log)
    assert warned["outcome"] == "warned"
    assert log.system == [
        f"warning: check failed: {checks_module}:assert_fresh: table users is stale"
    ]

    # Any other exception is an error of the task: retried, no result.
    assert await task_error(python("broken", table="orders"), tmp_path) == (
        "ConnectionError: cannot reach orders"
    )
    assert await task_error(python("maybe"), tmp_path) == (
        f"{checks_module}:maybe returned 'yes'; a python check returns True (passed) or False"
        " (failed), or raises AssertionError (failed)"
    )


# Validation


def test_validate_names_what_is_wrong_with_a_check(tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "bad.yaml").write_text(
        textwrap.dedent(
            """
            name: bad
            tasks:
              - id: nothing
                check: {args: {a: 1}}
              - id: both
                check: {sql: "select 1", connection: "sqlite:///x.db", python: "m:f"}
              - id: python_between
                check: {python: "m:f", between: [1, 2]}
              - id: python_connection
                check: {python: "m:f", connection: warehouse}
              - id: no_connection
                check: {sql: "select 1"}
              - id: severity
                check: {sql: "select 1", connection: "sqlite:///x.db"}
                severity: error
              - id: no_bounds
                check: {sql: "select 1", connection: "sqlite:///x.db", between: [null, null]}
              - id: upside_down
                check: {sql: "select 1", connection: "sqlite:///x.db", between: [10, 1]}
              - id: text_bound
                check: {sql: "select 1", connection: "sqlite:///x.db", between: ["1", 2]}
              - id: not_a_database
                check: {sql: "select 1", connection: "kafka://127.0.0.1:9092"}
            """
        ).lstrip()
    )
    (folder / "args.yaml").write_text(
        textwrap.dedent(
            """
            name: args
            tasks:
              - id: placeholder
                check:
                  sql: "select * from t where a = :a"
                  connection: "sqlite:///x.db"
              - id: template
                check: {python: "m:f", args: {a: "{{ params.x"}}
            """
        ).lstrip()
    )
    (folder / "names.yaml").write_text(
        "name: names\ntasks:\n  - id: q\n    check: {sql: select 1, connection: warehouse}\n"
    )
    problems = sorted(str(p) for p in load_folder(folder).problems)
    assert problems == [
        "pipelines/args.yaml:5: tasks[0].check.sql: placeholder :a has no value under args:"
        " (args: none)",
        "pipelines/args.yaml:8: tasks[1].check.args: unexpected end of template, expected"
        " 'end of print statement'. (in '{{ params.x')",
        "pipelines/bad.yaml:10: tasks[3].check: connection: belongs to a sql: check, not a"
        " python: one",
        "pipelines/bad.yaml:12: tasks[4].check: a sql: check needs connection: (a URL or a name"
        " under connections: in reactor.yaml)",
        "pipelines/bad.yaml:15: tasks[5].severity: Input should be 'warn' or 'fail', got 'error'",
        "pipelines/bad.yaml:17: tasks[6].check: between: needs at least one bound ([1, null]"
        " means at least 1)",
        "pipelines/bad.yaml:19: tasks[7].check: between: the low bound 10 is above the high"
        " bound 1",
        "pipelines/bad.yaml:21: tasks[8].check.between: write [low, high], each a number or"
        " null (unbounded), not ['1', 2]",
        "pipelines/bad.yaml:23: tasks[9].check.connection: a sql: task connects to"
        " postgresql://... or sqlite:///..., not kafka://...",
        "pipelines/bad.yaml:4: tasks[0].check: a check needs sql: (a query, with connection:)"
        " or python: (module:function)",
        "pipelines/bad.yaml:6: tasks[1].check: a check runs sql: or python:, not both",
        "pipelines/bad.yaml:8: tasks[2].check: between: belongs to a sql: check; a python:"
        " check passes when its function returns True",
        "pipelines/names.yaml:4: tasks[0].check.connection: unknown connection 'warehouse': write a"
        " URL (scheme://...) or a name under connections: in reactor.yaml (names: none)",
    ]


def test_action_errors_point_into_check(tmp_path: Path) -> None:
    with pytest.raises(ExpressionError) as caught:
        check(tmp_path, check={"sql": "select :a", "connection": "postgresql://127.0.0.1/db"})
    assert caught.value.loc == ("check", "sql")


# Pipelines: events, triggers, gating, retries, the API

QUALITY = """
name: quality
tasks:
  - id: load
    shell: "echo loaded"
  - id: no_negative_amounts
    needs: [load]
    check: {{sql: "select id, amount from orders where amount > 20", connection: warehouse}}
  - id: row_count
    needs: [load]
    check: {{sql: "select count(*) from orders", connection: warehouse, between: [1, 2]}}
    severity: warn
  - id: fresh
    needs: [load]
    check: {{python: "{module}:is_fresh", args: {{table: orders}}}}
  - id: publish
    needs: [no_negative_amounts, row_count, fresh]
    shell: "echo published"
"""

ALERT = """
name: alert
params:
  task: {type: string}
  message: {type: string}
triggers:
  - on: event
    type: reactor.check.failed
    source: reactor/pipelines/quality
    params:
      task: "{{ event.data.task_id }}"
      message: "{{ event.data.message }}"
tasks:
  - id: page
    shell: "echo {{ params.task }}: {{ params.message }}"
"""


@pytest.fixture
def quality(
    pipelines_dir: Path,
    write_pipeline: Any,
    write_module: Any,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The quality pipeline on a warehouse holding one order over 20, and its alert."""
    monkeypatch.setenv("TEST_WAREHOUSE_URL", pg_url)
    (pipelines_dir / "reactor.yaml").write_text(
        "connections:\n  warehouse: env:TEST_WAREHOUSE_URL\n"
    )
    module = write_module(CHECKS)
    write_pipeline("quality.yaml", QUALITY.format(module=module))
    write_pipeline("alert.yaml", ALERT)


async def check_event(store: Store, run_id: str, task_id: str, attempt: int = 1) -> Any:
    stored = await store.get_event(
        "reactor/pipelines/quality", f"{run_id}/{task_id}/{attempt}/check"
    )
    assert stored is not None, f"no check event for {task_id} of run {run_id}"
    return stored.event


async def add_order(url: str, amount: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url, timeout=10)
    try:
        await connection.execute("insert into orders values (4, 'cy', $1::numeric)", amount)
    finally:
        await connection.close()


@pytest.mark.anyio
async def test_check_results_are_events_that_start_pipelines(
    quality: None, pg_url: str, start_reactor: Any, store: Store
) -> None:
    await add_order(pg_url, "25.00")
    async with start_reactor() as reactor:
        run = await reactor.run_now("quality", {})
        done = await reactor.wait_run(run.id)
        [alert] = await wait_runs(store, "alert", 1)

    assert (done.status, done.reason) == ("failed", "task no_negative_amounts failed")
    tasks = await tasks_of(store, run.id)
    statuses = {task_id: t.status for task_id, t in tasks.items()}
    assert statuses == {
        "load": "succeeded",
        "no_negative_amounts": "failed",
        "row_count": "succeeded",
        "fresh": "succeeded",
        "publish": "upstream_failed",
    }
    failed = tasks["no_negative_amounts"]
    assert failed.error == "check failed: found 1 row, expected no rows"
    # The result of a failed check is kept as the task's output.
    assert failed.output["observed"] == {"row_count": 1, "rows": [{"id": 4, "amount": "25.00"}]}
    assert tasks["row_count"].output["outcome"] == "warned"
    assert await system_log(store, run.id, "row_count") == [
        "warning: check failed: found 4, expected between 1 and 2"
    ]

    event = await check_event(store, run.id, "no_negative_amounts")
    assert event.type == "reactor.check.failed"
    assert event.subject == "quality/no_negative_amounts"
    assert event.data == {
        "pipeline": "quality",
        "run_id": run.id,
        "task_id": "no_negative_amounts",
        **failed.output,
    }
    assert (await check_event(store, run.id, "row_count")).type == "reactor.check.warned"
    fresh = await check_event(store, run.id, "fresh")
    assert (fresh.type, fresh.data["observed"]) == ("reactor.check.passed", True)
    # Tasks that are not checks end with a task event only.
    assert await store.get_event("reactor/pipelines/quality", f"{run.id}/load/1/check") is None

    assert alert.status == "succeeded"
    assert alert.params == {
        "task": "no_negative_amounts",
        "message": "found 1 row, expected no rows",
    }


@pytest.mark.anyio
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_a_failed_check_is_not_retried_but_a_query_error_is(
    write_pipeline: Any, start_reactor: Any, store: Store, sqlite_db: Path, pipelines_dir: Path
) -> None:
    write_pipeline(
        "retried.yaml",
        f"""
        name: retried
        tasks:
          - id: finding
            check: {{sql: "select id from orders", connection: "sqlite:///{sqlite_db}"}}
            retries: 2
          - id: broken
            check: {{sql: "select id from nowhere", connection: "sqlite:///{sqlite_db}"}}
            retries: 2
        """,
    )
    run = await run_pipeline(start_reactor, "retried", clock=FakeClock())

    assert run.status == "failed"
    tasks = await tasks_of(store, run.id)
    assert (tasks["finding"].status, tasks["finding"].attempts) == ("failed", 1)
    assert tasks["finding"].output["outcome"] == "failed"
    assert (tasks["broken"].status, tasks["broken"].attempts) == ("failed", 3)
    assert tasks["broken"].error == (
        f"SQLite {sqlite_db}: no such table: nowhere: select id from nowhere"
    )
    assert tasks["broken"].output is None
    # A check that never checked has a task event, not a check event.
    source = "reactor/pipelines/retried"
    assert await store.get_event(source, f"{run.id}/finding/1/check") is not None
    for attempt in (1, 2, 3):
        assert await store.get_event(source, f"{run.id}/broken/{attempt}/check") is None


@pytest.mark.anyio
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_the_api_lists_a_runs_check_results(
    quality: None, start_reactor: Any, store: Store
) -> None:
    async with start_reactor(http=("127.0.0.1", 0)) as reactor:
        run = await reactor.run_now("quality", {})
        done = await reactor.wait_run(run.id)
        base = f"http://127.0.0.1:{reactor.http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            answer = await client.get(f"/api/runs/{run.id}/checks")
            unknown = await client.get("/api/runs/nope/checks")

    assert done.status == "succeeded"
    assert answer.status_code == 200
    tasks = await tasks_of(store, run.id)
    body = answer.json()
    assert sorted(c["task_id"] for c in body) == ["fresh", "no_negative_amounts", "row_count"]
    by_task = {c["task_id"]: c for c in body}
    assert by_task["row_count"] == {
        "task_id": "row_count",
        "outcome": "warned",
        "passed": False,
        "severity": "warn",
        "observed": 3,
        "expectation": "between 1 and 2",
        "message": "found 3, expected between 1 and 2",
        "ended_at": tasks["row_count"].ended_at.isoformat(),
    }
    assert by_task["no_negative_amounts"]["outcome"] == "passed"
    assert by_task["fresh"]["observed"] is True
    assert (unknown.status_code, unknown.json()) == (404, {"error": "no run 'nope'"})
