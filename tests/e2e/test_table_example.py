"""examples/table served for real: its schema.sql on a database of its own, rows in, runs out."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from helpers import wait_for
from pg import PostgresDatabases

from .commands import REACTOR

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "table"


@pytest.fixture
async def shop(postgres_databases: PostgresDatabases) -> AsyncIterator[str]:
    """A database with the example's schema.sql applied, as a user would with psql -f."""
    name = await postgres_databases.create(migrated=False)
    url = postgres_databases.url(name)
    connection = await asyncpg.connect(url)
    try:
        await connection.execute((EXAMPLE / "schema.sql").read_text(encoding="utf-8"))
    finally:
        await connection.close()
    try:
        yield url
    finally:
        await postgres_databases.drop(name)


async def test_the_table_example_runs_for_an_insert_and_for_an_update(
    shop: str, tmp_path: Path
) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "table")
    out = tmp_path / "serve.out"
    with out.open("wb") as stdout, (tmp_path / "serve.err").open("wb") as stderr:
        process = subprocess.Popen(
            [REACTOR, "serve", "table", "--http", "127.0.0.1:0", "--exit-after", "2"],
            cwd=tmp_path,
            env={**os.environ, "SHOP_DATABASE_URL": shop, "NO_COLOR": "1", "COLUMNS": "200"},
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    db = await asyncpg.connect(shop)
    try:
        await wait_for(lambda: "API on" in out.read_text(), timeout=30, message="serve to start")
        order = await db.fetchval(
            "INSERT INTO orders (customer, amount) VALUES ('ada', 250) RETURNING id"
        )
        await wait_for(
            lambda: f'output="order {order} of ada: 250.00"' in out.read_text(),
            timeout=30,
            message="the insert's run",
        )
        await db.execute("UPDATE orders SET amount = 300 WHERE id = $1", order)
        await wait_for(
            lambda: f'output="order {order} of ada: 300.00"' in out.read_text(),
            timeout=30,
            message="the update's run",
        )
        await wait_for(lambda: process.poll() is not None, timeout=60, message="serve to exit")
        assert process.returncode == 0, (tmp_path / "serve.err").read_text()
    finally:
        await db.close()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert out.read_text().count("new_orders succeeded") == 2
