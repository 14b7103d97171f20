"""Table triggers written wrong: each problem reported at its file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connectors.table import TABLE_BATCH, TABLE_CHANGED, TABLE_NOTIFIED, TableTriggerSpec
from reactor.cli import app
from reactor.pipelines import load_folder

pytestmark = [pytest.mark.integration]

HEAD = """\
name: bad
tasks:
  - id: t
    shell: "true"
triggers:
"""

URL = "postgresql://postgres@127.0.0.1:5432/shop"


def problems(folder: Path, trigger: str, settings: str | None = None) -> list[str]:
    (folder / "bad.yaml").write_text(HEAD + textwrap.indent(textwrap.dedent(trigger), "  "))
    if settings is not None:
        (folder / "reactor.yaml").write_text(settings)
    return [str(p) for p in load_folder(folder).problems]


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        (
            f"""\
            - on: table
              connection: {URL}
              table: orders
            """,
            "pipelines/bad.yaml:6: triggers[0]: a table trigger needs 'watermark:' (poll a column"
            " that grows), 'notify:' (LISTEN on a channel), or both (NOTIFY wakes the poll,"
            " nothing is lost)",
        ),
        (
            f"""\
            - on: table
              connection: {URL}
              watermark: updated_at
            """,
            "pipelines/bad.yaml:6: triggers[0]: watermark: needs 'table:' (the table to poll,"
            " schema.name)",
        ),
        (
            f"""\
            - on: table
              connection: {URL}
              notify: orders
              overlap: 30s
              key: id
            """,
            "pipelines/bad.yaml:6: triggers[0]: 'key:' and 'overlap:' only go with 'watermark:'",
        ),
        (
            f"""\
            - on: table
              connection: {URL}
              notify: orders
              per: batch
            """,
            "pipelines/bad.yaml:6: triggers[0]: per: batch needs 'watermark:'; a notification is"
            " always one event",
        ),
        (
            f"""\
            - on: table
              connection: {URL}
              table: orders
              watermark: id
              interval: 0s
            """,
            "pipelines/bad.yaml:10: triggers[0].interval: interval: must be longer than 0s",
        ),
        (
            f"""\
            - on: table
              connection: {URL}
              table: orders
              watermark: id
              interval: soon
            """,
            "pipelines/bad.yaml:10: triggers[0].interval: 'soon' is not a duration; write a number"
            " of seconds or 500ms, 10s, 5m, 1h, 1d",
        ),
        (
            f"""\
            - on: table
              connection: {URL}
              table: orders
              watermark: id
              overlap: a while
            """,
            "pipelines/bad.yaml:10: triggers[0].overlap: 'a while' is not a duration; write a"
            " number of seconds or 500ms, 10s, 5m, 1h, 1d",
        ),
        (
            """\
            - on: table
              connection: kafka://127.0.0.1:9092
              table: orders
              watermark: id
            """,
            "pipelines/bad.yaml:7: triggers[0].connection: kafka:// is not a PostgreSQL URL; write"
            " postgresql://USER@HOST:PORT/DATABASE or a name under connections: in reactor.yaml",
        ),
        (
            """\
            - on: table
              connection: postgresql://postgres:secret@db:fivefour/shop
              table: orders
              watermark: id
            """,
            "pipelines/bad.yaml:7: triggers[0].connection: postgresql://postgres:***@db:fivefour/shop:"
            " port could not be cast to integer value as 'fivefour'",
        ),
        (
            f"""\
            - on: table
              connection: {URL}
              table: "orders; drop table orders"
              watermark: id
            """,
            "pipelines/bad.yaml:8: triggers[0].table: table 'orders; drop table orders' is not a"
            " plain PostgreSQL name (letters, digits, _ and $, not starting with a digit)",
        ),
        (
            f"""\
            - on: table
              connection: {URL}
              table: sales.orders
              watermark: updated-at
            """,
            "pipelines/bad.yaml:9: triggers[0].watermark: watermark column 'updated-at' is not a"
            " plain PostgreSQL name (letters, digits, _ and $, not starting with a digit)",
        ),
        (
            f"""\
            - on: table
              connection: {URL}
              table: orders
              watermark: id
              per: rows
            """,
            "pipelines/bad.yaml:10: triggers[0].per: Input should be 'row' or 'batch', got 'rows'",
        ),
        (
            f"""\
            - on: table
              connection: {URL}
              table: orders
              watermark: id
              max_rows: 0
            """,
            "pipelines/bad.yaml:10: triggers[0].max_rows: Input should be greater than or equal"
            " to 1",
        ),
    ],
)
def test_bad_trigger(pipelines_dir: Path, trigger: str, expected: str) -> None:
    assert problems(pipelines_dir, trigger) == [expected]


def test_unknown_connection_name(pipelines_dir: Path) -> None:
    trigger = """\
    - on: table
      connection: warehouse
      table: orders
      watermark: id
    """
    settings = "connections:\n  shop: postgresql://postgres@127.0.0.1:5432/shop\n"
    assert problems(pipelines_dir, trigger, settings) == [
        "pipelines/bad.yaml:7: triggers[0].connection: unknown connection 'warehouse': write a URL"
        " (scheme://...) or a name under connections: in reactor.yaml (names: shop)"
    ]


def test_reactor_validate_prints_the_problem_and_fails(pipelines_dir: Path) -> None:
    (pipelines_dir / "bad.yaml").write_text(
        HEAD + f"  - on: table\n    connection: {URL}\n    table: orders\n"
    )
    result = CliRunner().invoke(app, ["validate", str(pipelines_dir)])
    assert result.exit_code == 1
    assert "bad.yaml:6: triggers[0]: a table trigger needs 'watermark:'" in result.output


def test_good_triggers_and_their_defaults(pipelines_dir: Path) -> None:
    trigger = """\
    - on: table
      connection: shop
      table: public.orders
      watermark: updated_at
    - on: table
      connection: shop
      table: orders
      watermark: id
      notify: orders_changed
      per: batch
      key: [region, id]
      overlap: 500
      from: earliest
    - on: table
      connection: shop
      notify: jobs
    """
    settings = "connections:\n  shop: env:SHOP_DATABASE_URL\n"
    assert problems(pipelines_dir, trigger, settings) == []
    [pipeline] = load_folder(pipelines_dir).pipelines.values()
    polled, both, listened = (t.spec for t in pipeline.triggers)
    assert isinstance(polled, TableTriggerSpec)
    assert (polled.interval, polled.per, polled.max_rows, polled.from_) == (
        5.0,
        "row",
        1000,
        "latest",
    )
    assert polled.overlap is None and polled.key is None
    assert polled.event_filter("bad/table").type == TABLE_CHANGED
    assert isinstance(both, TableTriggerSpec)
    assert (both.key, both.overlap, both.from_) == (["region", "id"], 500, "earliest")
    assert both.event_filter("bad/table_2").type == TABLE_BATCH
    assert isinstance(listened, TableTriggerSpec)
    assert listened.event_filter("bad/table_3").type == TABLE_NOTIFIED
    assert [t.key for t in pipeline.triggers] == ["bad/table_1", "bad/table_2", "bad/table_3"]
