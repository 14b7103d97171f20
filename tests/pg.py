"""Test databases on the local PostgreSQL: one migrated template per session, a clone per test.

Names carry a random per-session suffix, so two test sessions at once never touch each
other's databases. ``CREATE DATABASE ... TEMPLATE`` fails while anyone is connected to the
template, so the template is closed to connections once it is migrated.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from reactor.store import PostgresStore

__all__ = ["SERVER", "PostgresDatabases"]

SERVER = os.environ.get("REACTOR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
"""The server the tests use (no database in it); trust authentication for ``postgres``."""


class PostgresDatabases:
    """Hands out fresh, migrated databases cloned from this session's template."""

    def __init__(self, server: str = SERVER) -> None:
        self.server = server.rstrip("/")
        self.prefix = f"reactor_test_{secrets.token_hex(4)}"
        self.template = f"{self.prefix}_template"
        self._numbers = itertools.count(1)
        self._ready = False
        self._failure: str | None = None

    def url(self, name: str) -> str:
        return f"{self.server}/{name}"

    async def _admin(self) -> asyncpg.Connection:
        if self._failure is None:
            try:
                return await asyncpg.connect(self.url("postgres"), timeout=10)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self._failure = (
                    f"PostgreSQL is not reachable at {self.server} ({type(exc).__name__}: {exc});"
                    " the postgres store tests need it: start PostgreSQL with trust authentication"
                    " for user postgres on 127.0.0.1:5432 (or set REACTOR_TEST_POSTGRES)"
                )
        # Failed outside the except block, so the report is the message alone.
        pytest.fail(self._failure, pytrace=False)

    async def _make_template(self, admin: asyncpg.Connection) -> None:
        await admin.execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{self.template}"')
        store = PostgresStore(self.url(self.template))
        await store.open()
        await store.close()
        # Nobody may connect to it any more, so every clone below can be made.
        await admin.execute(f'ALTER DATABASE "{self.template}" ALLOW_CONNECTIONS false')
        self._ready = True

    async def create(self, *, migrated: bool = True) -> str:
        """A new database, with the schema migrated unless ``migrated`` is false; its name."""
        admin = await self._admin()
        try:
            if not self._ready:
                await self._make_template(admin)
            name = f"{self.prefix}_{next(self._numbers)}"
            template = self.template if migrated else "template0"
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            return name
        finally:
            await admin.close()

    @asynccontextmanager
    async def scratch(self, schema: str) -> AsyncIterator[str]:
        """A new unmigrated database with ``schema`` (SQL) run in it; its URL, dropped after."""
        name = await self.create(migrated=False)
        url = self.url(name)
        connection = await asyncpg.connect(url, timeout=10)
        try:
            await connection.execute(schema)
        finally:
            await connection.close()
        try:
            yield url
        finally:
            await self.drop(name)

    async def drop(self, name: str) -> None:
        """Drop ``name``; FORCE terminates whatever is still connected to it first."""
        admin = await self._admin()
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    def drop_all(self) -> None:
        """At the end of the session: the template and any database a test left behind."""
        if not self._ready:
            return

        async def drop() -> None:
            admin = await asyncpg.connect(self.url("postgres"), timeout=10)
            try:
                names = await admin.fetch(
                    "SELECT datname FROM pg_database WHERE datname LIKE $1",
                    f"{self.prefix}\\_%",
                )
                for row in names:
                    await admin.execute(f'DROP DATABASE IF EXISTS "{row[0]}" WITH (FORCE)')
            finally:
                await admin.close()

        # No test's event loop runs at the end of the session, so this one may run here.
        asyncio.run(drop())
