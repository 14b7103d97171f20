"""The PostgreSQL store alone: task transitions/s and events/s, in a throwaway database."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg

from bench.measure import Figure
from bench.store import WRITERS, _rate, measure
from reactor.store.postgres import PostgresStore

__all__ = ["postgres_store_throughput"]

Report = Callable[[str], None]
TARGET_TRANSITIONS = 5000.0
SERVER = os.environ.get("REACTOR_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


def _quiet(_line: str) -> None:
    return None


@asynccontextmanager
async def _database() -> AsyncIterator[str]:
    """A new, empty database on the server, dropped afterwards."""
    name = f"reactor_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(f"{SERVER}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{SERVER}/{name}"
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def postgres_store_throughput(
    operations: int = 4000, report: Report = _quiet
) -> list[Figure]:
    """Task state transitions/s and events ingested/s on the PostgreSQL store."""
    async with _database() as url:
        store = PostgresStore(url, max_connections=WRITERS)
        await store.open()
        try:
            sequential, concurrent, ingested, ingested_concurrent = await measure(
                store, operations, report
            )
        finally:
            await store.close()
        floor = await _round_trip_floor(url, operations)
    note = "floor: one trivial INSERT per call over one asyncpg connection"
    return [
        Figure(
            "store PostgreSQL",
            "task transitions/s, sequential",
            sequential,
            "/s",
            floor,
            better="higher",
            note="save_tasks([task], [attempt]) awaited one at a time; " + note,
        ),
        Figure(
            "store PostgreSQL",
            f"task transitions/s, {WRITERS} writers",
            concurrent,
            "/s",
            floor,
            TARGET_TRANSITIONS,
            better="higher",
            note=f"{WRITERS} coroutines over a pool of {WRITERS} connections",
        ),
        Figure(
            "store PostgreSQL",
            "events ingested/s, sequential",
            ingested,
            "/s",
            floor,
            better="higher",
        ),
        Figure(
            "store PostgreSQL",
            f"events ingested/s, {WRITERS} writers",
            ingested_concurrent,
            "/s",
            floor,
            better="higher",
        ),
    ]


async def _round_trip_floor(url: str, operations: int) -> float:
    """One autocommitted INSERT per call on one connection: what any store call starts from."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE floor (id BIGSERIAL PRIMARY KEY, body TEXT)")

        async def one(i: int) -> None:
            await conn.execute("INSERT INTO floor (body) VALUES ($1)", str(i))

        return await _rate(operations, 1, one)
    finally:
        await conn.close()
