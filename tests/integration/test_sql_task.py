"""``sql:`` tasks against the machine's PostgreSQL and a real SQLite file."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from helpers import wait_for
from pg import PostgresDatabases

from connectors.sql import SqlAction, SqlTaskSpec, prepare
from reactor.actions import TaskRequest
from reactor.errors import ActionError, ExpressionError
from reactor.pipelines import load_folder
from reactor.store import Store

from .support import wait_run

pytestmark = [pytest.mark.integration]

ORDERS = """
CREATE TABLE orders (id int PRIMARY KEY, customer text NOT NULL, amount numeric(10, 2));
INSERT INTO orders VALUES (1, 'ada', 10.50), (2, 'bob', 20.00), (3, 'ada', 5.25);
"""


@pytest.fixture
async def pg_url(postgres_databases: PostgresDatabases) -> AsyncIterator[str]:
    """A fresh PostgreSQL database holding three orders."""
    async with postgres_databases.scratch(ORDERS) as url:
        yield url


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Path:
    """A SQLite file beside the pipeline holding the same three orders."""
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as connection:
        connection.executescript(ORDERS.replace("numeric(10, 2)", "real"))
    connection.close()
    return path


def action(tmp_path: Path, **fields: Any) -> SqlAction:
    return SqlAction(SqlTaskSpec.model_validate({"id": "q", **fields}), tmp_path)


async def execute(sql: SqlAction, tmp_path: Path, **params: Any) -> Any:
    request = TaskRequest(
        run_id="run-1",
        pipeline="p",
        task_id="q",
        attempt=1,
        scope={"params": params},
        base_dir=tmp_path,
        log=lambda _stream, _text: None,
    )
    return await sql.execute(request)


def pg_count(url: str, query: str) -> Any:
    async def read() -> Any:
        connection = await asyncpg.connect(url, timeout=10)
        try:
            return await connection.fetchval(query)
        finally:
            await connection.close()

    return read()


# The placeholder tokenizer (no database)


def test_placeholders_become_numbered_parameters_once_per_name() -> None:
    statement = prepare("select * from t where a = :x and b > :y or c = :x", "postgresql")
    assert statement.text == "select * from t where a = $1 and b > $2 or c = $1"
    assert statement.names == ("x", "y")


@pytest.mark.parametrize(
    "sql",
    [
        "select ':x', 'it''s :x'",
        'select "col:x" from t',
        "select 1 -- where a = :x\n",
        "select 1 /* :x /* nested :y */ still :z */",
        "select $$ :x $$, $tag$ :y $tag$",
        "select E'it\\'s :x'",
        "select a::int, b::timestamptz from t",
        "select '{{1,2},{3,4}}'::int[][]",
    ],
)
def test_text_that_is_not_a_placeholder_stays_as_written(sql: str) -> None:
    statement = prepare(sql, "postgresql")
    assert statement.text == sql
    assert statement.names == ()


def test_sqlite_keeps_named_placeholders_and_skips_its_own_quoting() -> None:
    statement = prepare("select [a:b], `c:d` from t where e = :e and f = ':f'", "sqlite")
    assert statement.text == "select [a:b], `c:d` from t where e = :e and f = ':f'"
    assert statement.names == ("e",)


def test_templates_and_positional_parameters_are_refused(tmp_path: Path) -> None:
    with pytest.raises(
        ExpressionError, match=r"^\{\{ params.x \}\} in the statement: templates are not rendered"
    ) as caught:
        action(tmp_path, sql="select '{{ params.x }}'::int", connection="postgresql://h/db")
    assert caught.value.loc == ("sql",)
    with pytest.raises(ExpressionError, match=r"write placeholders as :name .* not \$1"):
        action(tmp_path, sql="select $1", connection="postgresql://h/db")


# Validation


@pytest.mark.parametrize(
    ("fields", "expected", "loc"),
    [
        (
            {"sql": "select :a, :b", "args": {"a": 1}},
            "placeholder :b has no value under args: (args: a)",
            ("sql",),
        ),
        (
            {"sql": "select :a", "args": {"a": 1, "extra": 2}},
            "args.extra is not used by the statement (placeholders: :a)",
            ("args",),
        ),
        (
            {"sql": "select ':a'", "args": {"a": 1}},
            "args.a is not used by the statement (placeholders: none)",
            ("args",),
        ),
    ],
)
def test_placeholders_and_args_must_match(
    tmp_path: Path, fields: dict[str, Any], expected: str, loc: tuple[str, ...]
) -> None:
    for connection in ("postgresql://127.0.0.1/db", "sqlite:///x.db", "warehouse"):
        with pytest.raises(ExpressionError) as caught:
            action(tmp_path, connection=connection, **fields)
        assert str(caught.value) == expected
        assert caught.value.loc == loc


def test_validate_reports_bad_sql_tasks_at_their_line(tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    for name, connection, sql in [
        ("a", "postgresql://127.0.0.1/db", "select * from t where a = :a"),
        ("b", "kafka://127.0.0.1:9092", "select 1"),
        ("c", "nowhere", "select 1"),
        ("d", "sqlite:///d.db", "select {{ params.x }}"),
    ]:
        (folder / f"{name}.yaml").write_text(
            f'name: {name}\ntasks:\n  - id: q\n    connection: {connection}\n    sql: "{sql}"\n'
        )
    problems = sorted(str(p) for p in load_folder(folder).problems)
    assert problems == [
        "pipelines/a.yaml:5: tasks[0].sql: placeholder :a has no value under args: (args: none)",
        "pipelines/b.yaml:4: tasks[0].connection: a sql: task connects to postgresql://..."
        " or sqlite:///..., not kafka://...",
        "pipelines/c.yaml:4: tasks[0].connection: unknown connection 'nowhere': write a URL"
        " (scheme://...) or a name under connections: in reactor.yaml (names: none)",
        "pipelines/d.yaml:5: tasks[0].sql: {{ params.x }} in the statement: templates are not"
        " rendered in SQL (a value would become code); write a :name placeholder and give its"
        " value under args:",
    ]


# PostgreSQL


@pytest.mark.anyio
async def test_select_with_args_returns_rows_as_json(tmp_path: Path, pg_url: str) -> None:
    sql = action(
        tmp_path,
        sql="select id, amount, now()::date as day from orders"
        " where customer = :who and amount > :least order by id",
        connection=pg_url,
        args={"who": "{{ params.who }}", "least": 1},
    )
    output = await execute(sql, tmp_path, who="ada")
    day = output["rows"][0]["day"]
    assert output == {
        "rows": [{"id": 1, "amount": "10.50", "day": day}, {"id": 3, "amount": "5.25", "day": day}],
        "row_count": 2,
        "truncated": False,
    }
    assert len(day) == 10 and day[4] == "-"  # ISO 8601 date


@pytest.mark.anyio
async def test_insert_returns_the_rows_changed_and_commits(tmp_path: Path, pg_url: str) -> None:
    sql = action(
        tmp_path,
        sql="insert into orders select id + 10, :who, amount from orders where customer = :who",
        connection=pg_url,
        args={"who": "ada"},
    )
    assert await execute(sql, tmp_path) == {"row_count": 2}
    assert await pg_count(pg_url, "select count(*) from orders") == 5


@pytest.mark.anyio
async def test_statement_from_a_file_beside_the_pipeline(tmp_path: Path, pg_url: str) -> None:
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "total.sql").write_text(
        "-- the total of one customer: :not_a_placeholder\n"
        "select sum(amount)::text as total\n"
        "from orders\n"
        "where customer = :who\n"
    )
    sql = action(tmp_path, sql={"file": "sql/total.sql"}, connection=pg_url, args={"who": "ada"})
    output = await execute(sql, tmp_path)
    assert output["rows"] == [{"total": "15.75"}]


@pytest.mark.anyio
async def test_a_missing_statement_file_names_the_path(tmp_path: Path, pg_url: str) -> None:
    sql = action(tmp_path, sql={"file": "gone.sql"}, connection=pg_url)
    with pytest.raises(ActionError, match=r"cannot read the statement from .*gone\.sql"):
        await execute(sql, tmp_path)


@pytest.mark.anyio
async def test_a_file_with_a_placeholder_and_no_arg_fails_at_run(
    tmp_path: Path, pg_url: str
) -> None:
    (tmp_path / "q.sql").write_text("select :who")
    sql = action(tmp_path, sql={"file": "q.sql"}, connection=pg_url)
    with pytest.raises(ActionError, match=r"^placeholder :who has no value under args:"):
        await execute(sql, tmp_path)


@pytest.mark.anyio
async def test_an_injection_attempt_in_an_arg_stays_data(tmp_path: Path, pg_url: str) -> None:
    attack = "x'; drop table orders; --"
    sql = action(
        tmp_path,
        sql="insert into orders values (99, :who, 0) returning customer",
        connection=pg_url,
        args={"who": "{{ params.who }}"},
    )
    output = await execute(sql, tmp_path, who=attack)
    assert output["rows"] == [{"customer": attack}]
    assert await pg_count(pg_url, "select count(*) from orders") == 4


@pytest.mark.anyio
async def test_placeholder_inside_a_literal_and_casts_reach_the_server_untouched(
    tmp_path: Path, pg_url: str
) -> None:
    sql = action(
        tmp_path,
        sql="select ':who' as text, :n::int + 1 as next, '7'::int as seven",
        connection=pg_url,
        args={"n": "41"},
    )
    output = await execute(sql, tmp_path)
    assert output["rows"] == [{"text": ":who", "next": 42, "seven": 7}]


@pytest.mark.anyio
async def test_a_syntax_error_shows_the_position(tmp_path: Path, pg_url: str) -> None:
    sql = action(tmp_path, sql="select id,\nfrom orders", connection=pg_url)
    with pytest.raises(ActionError) as caught:
        await execute(sql, tmp_path)
    assert str(caught.value) == (
        'syntax error at or near "from" (line 2, column 1): from orders\n^'
    )
    sql = action(tmp_path, sql="selec * from orders", connection=pg_url)
    with pytest.raises(ActionError, match=r'^syntax error at or near "selec" \(line 1, column 1\)'):
        await execute(sql, tmp_path)


@pytest.mark.anyio
async def test_an_unknown_column_is_named(tmp_path: Path, pg_url: str) -> None:
    sql = action(tmp_path, sql="select id, price from orders", connection=pg_url)
    with pytest.raises(ActionError) as caught:
        await execute(sql, tmp_path)
    assert str(caught.value).startswith(
        'column "price" does not exist (line 1, column 12): select id, price from orders\n'
        "           ^"
    )


@pytest.mark.anyio
async def test_a_failed_statement_changes_nothing(tmp_path: Path, pg_url: str) -> None:
    sql = action(
        tmp_path,
        sql="insert into orders select id + 100, customer, amount / 0 from orders",
        connection=pg_url,
    )
    with pytest.raises(ActionError, match="division by zero"):
        await execute(sql, tmp_path)
    assert await pg_count(pg_url, "select count(*) from orders") == 3


@pytest.mark.anyio
async def test_an_unreachable_server_is_named_without_the_password(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nobody listens there
    sql = action(tmp_path, sql="select 1", connection=f"postgresql://me:s3cret@127.0.0.1:{port}/db")
    with pytest.raises(ActionError) as caught:
        await execute(sql, tmp_path)
    message = str(caught.value)
    assert message.startswith(f"cannot connect to PostgreSQL at 127.0.0.1:{port}: ")
    assert "s3cret" not in message


@pytest.mark.anyio
async def test_rows_past_max_rows_are_counted_and_left_out(tmp_path: Path, pg_url: str) -> None:
    sql = action(
        tmp_path, sql="select g from generate_series(1, 2500) g", connection=pg_url, max_rows=3
    )
    output = await execute(sql, tmp_path)
    assert output == {"rows": [{"g": 1}, {"g": 2}, {"g": 3}], "row_count": 2500, "truncated": True}


# SQLite


@pytest.mark.anyio
async def test_sqlite_select_insert_and_errors(tmp_path: Path, sqlite_db: Path) -> None:
    select = action(
        tmp_path,
        sql="select id, amount, x'00ff' as raw from orders where customer = :who order by id",
        connection="sqlite:///shop.db",
        args={"who": "{{ params.who }}"},
        max_rows=1,
    )
    output = await execute(select, tmp_path, who="ada")
    assert output == {
        "rows": [{"id": 1, "amount": 10.5, "raw": "AP8="}],
        "row_count": 2,
        "truncated": True,
    }
    insert = action(
        tmp_path,
        sql="insert into orders values (9, :who, 1)",
        connection=f"sqlite:///{sqlite_db}",
        args={"who": "x'); drop table orders; --"},
    )
    assert await execute(insert, tmp_path) == {"row_count": 1}
    with sqlite3.connect(sqlite_db) as connection:
        assert connection.execute("select customer from orders where id = 9").fetchall() == [
            ("x'); drop table orders; --",)
        ]
    connection.close()
    wrong = action(tmp_path, sql="select price from orders", connection="sqlite:///shop.db")
    with pytest.raises(ActionError) as caught:
        await execute(wrong, tmp_path)
    assert str(caught.value) == (
        f"SQLite {sqlite_db}: no such column: price: select price from orders"
    )


# A pipeline run end to end

PIPELINE = """
name: totals
params:
  who: {{type: string}}
tasks:
  - id: q
    connection: warehouse
    sql: "select sum(amount)::float8 as total, count(*) as n from orders where customer = :who"
    args: {{who: "{{{{ params.who }}}}"}}
  - id: report
    needs: [q]
    python: {module}:report
    args:
      total: "{{{{ tasks.q.output.rows[0].total }}}}"
"""


@pytest.mark.anyio
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_a_later_task_reads_the_rows_of_a_named_connection(
    pg_url: str,
    pipelines_dir: Path,
    write_pipeline,
    write_module,
    start_reactor,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_WAREHOUSE_URL", pg_url)
    (pipelines_dir / "reactor.yaml").write_text(
        "connections:\n  warehouse: env:TEST_WAREHOUSE_URL\n"
    )
    module = write_module("def report(total):\n    return f'total {total}'\n")
    write_pipeline("totals.yaml", PIPELINE.format(module=module))
    async with start_reactor() as reactor:
        run = await reactor.run_now("totals", {"who": "ada"})
        done = await wait_run(store, run.id, timeout=20)
    assert done.status == "succeeded", done.reason
    tasks = {t.task_id: t for t in await store.task_runs(run.id)}
    assert tasks["q"].output == {
        "rows": [{"total": 15.75, "n": 2}],
        "row_count": 1,
        "truncated": False,
    }
    assert tasks["report"].output == "total 15.75"


@pytest.mark.anyio
async def test_text_args_are_read_as_the_type_the_statement_gives_them(
    tmp_path: Path, pg_url: str
) -> None:
    sql = action(
        tmp_path,
        sql="select :day::date + 1 as next, :n::int * 2 as twice, :ok::bool as ok",
        connection=pg_url,
        args={"day": "{{ params.day }}", "n": "21", "ok": "true"},
    )
    output = await execute(sql, tmp_path, day="2026-02-28")
    assert output["rows"] == [{"next": "2026-03-01", "twice": 42, "ok": True}]
    bad = action(tmp_path, sql="select :n::int", connection=pg_url, args={"n": "many"})
    with pytest.raises(ActionError) as caught:
        await execute(bad, tmp_path)
    assert str(caught.value) == "args.n: 'many' is not a int4 (the type the statement gives :n)"


@pytest.mark.anyio
async def test_a_cancelled_statement_leaves_no_session_behind(tmp_path: Path, pg_url: str) -> None:
    sql = action(tmp_path, sql="select pg_sleep(600)", connection=pg_url)
    sessions = "select count(*) from pg_stat_activity where application_name = 'reactor sql task q'"

    async def running() -> bool:
        return bool(await pg_count(pg_url, sessions))

    async def gone() -> bool:
        return not await pg_count(pg_url, sessions)

    async with anyio.create_task_group() as tg:
        tg.start_soon(execute, sql, tmp_path)
        await wait_for(running, message="the statement to start")
        tg.cancel_scope.cancel()
    await wait_for(gone, message="the session to end")


@pytest.mark.anyio
async def test_json_args_and_columns_are_values(tmp_path: Path, pg_url: str) -> None:
    sql = action(
        tmp_path,
        sql="select :doc::jsonb -> 'items' as items, :raw::json as raw",
        connection=pg_url,
        args={"doc": {"items": [1, "two"]}, "raw": '{"a": 1}'},
    )
    output = await execute(sql, tmp_path)
    assert output["rows"] == [{"items": [1, "two"], "raw": {"a": 1}}]
