"""Shared fixtures: the asyncio backend, stores, and a pipelines folder to write into."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from kafka import kafka_broker  # noqa: F401  (the session's Kafka broker fixture)
from pg import PostgresDatabases

from reactor.store import Store, open_store

STORE_KINDS = ["sqlite", "postgres"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    """This session's PostgreSQL test databases (nothing is created until a test asks)."""
    databases = PostgresDatabases()
    yield databases
    databases.drop_all()


@pytest.fixture(params=STORE_KINDS)
async def store_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_databases: PostgresDatabases
) -> AsyncIterator[str]:
    """The URL of an empty store of every kind: a fresh SQLite file or PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state' / 'reactor.db'}"
        return
    name = await postgres_databases.create()
    try:
        yield postgres_databases.url(name)
    finally:
        await postgres_databases.drop(name)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """An opened, empty store of every kind (each test gets its own)."""
    opened = open_store(store_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def pipelines_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    return folder
