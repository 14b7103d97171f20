"""The production store: PostgreSQL through a pool of asyncpg connections.

Same schema, same migrations and same behaviour as the SQLite store (timestamps
are the same ISO 8601 text), so either passes the same tests. Each protocol
method is one transaction and, on the hot path, one round trip: what must happen
together is one statement (data-modifying ``WITH`` clauses, rows sent as arrays
through ``unnest``), which PostgreSQL runs as one implicit transaction; log lines
go through ``executemany``, which is pipelined and atomic.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import asyncpg

from reactor.assets import (
    ASSET_COLUMNS,
    ASSET_GROUPS_SQL,
    AssetSummary,
    AssetUse,
    last_seqs,
    summarize,
)
from reactor.audit import AuditEntry
from reactor.errors import StoreError
from reactor.events import Event
from reactor.pauses import Pause
from reactor.specs import run_event_source
from reactor.store.base import (
    BACKFILL_COLUMNS,
    INCIDENT_COLUMNS,
    Admitted,
    BackfillRow,
    OutcomeToRecord,
    StoredEvent,
    TaskEvent,
    incident_values,
)
from reactor.store.migrations import LATEST, MIGRATIONS, render
from reactor.store.records import (
    AttemptRecord,
    DeadLetter,
    LogLine,
    ProcessRecord,
    RunRecord,
    TaskRecord,
    WindowRow,
)
from reactor.store.rows import (
    ATTEMPT_COLUMNS,
    DEAD_LETTER_COLUMNS,
    EVENT_COLUMNS,
    PRUNE_WINDOWS,
    RUN_COLUMNS,
    RUN_FIELDS,
    SAVE_WINDOW,
    WINDOW_COLUMNS,
    attempt_from,
    attempt_values,
    dead_letter_from,
    dt,
    event_from,
    event_values,
    run_from,
    run_values,
    task_values,
    ts,
    window_from,
    window_values,
)

__all__ = ["PostgresStore", "redact_url"]

# Any process that migrates holds this transaction-scoped advisory lock ("reactor" in ASCII),
# so two processes starting at once apply each migration exactly once.
_MIGRATION_LOCK = 0x7265_6163_746F_72
_CLOSE_TIMEOUT = 10.0
_DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)


def redact_url(url: str) -> str:
    """``url`` without its password (in the authority or as a ``password=`` query parameter)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url.split("@", 1)[-1] if "@" in url else url
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hostinfo = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}@{hostinfo}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset hook: the store leaves no session state behind, so skip the reset query.

    asyncpg still rolls back an open transaction before calling this; the default
    reset would cost one more round trip on every release.
    """


# Creates the runs that are new (idempotent by run key, in the order given), reads the
# ones that existed, and records the event's outcome: one statement, one round trip. All
# parts see the same snapshot, so ``existing`` holds exactly the rows from before.
_RECORD_OUTCOME = f"""
WITH given AS (
    SELECT * FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
        $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[]
    ) WITH ORDINALITY AS g({RUN_FIELDS}, n)
), inserted AS (
    INSERT INTO runs ({RUN_FIELDS})
    SELECT {RUN_FIELDS} FROM given ORDER BY n
    ON CONFLICT (run_key) DO NOTHING
    RETURNING seq, run_key
), existing AS (
    SELECT {RUN_COLUMNS} FROM runs WHERE run_key = ANY($2::text[])
), evaluated AS (
    UPDATE events SET evaluated_at = $14, outcome = $15 WHERE source = $16 AND id = $17
)
SELECT g.n, inserted.seq AS new_seq, existing.*
FROM given g
LEFT JOIN inserted ON inserted.run_key = g.run_key
LEFT JOIN existing ON existing.run_key = g.run_key
ORDER BY g.n
"""


class PostgresStore:
    """The store for ``postgresql://USER[:PASSWORD]@HOST:PORT/DB``; processes may share it."""

    def __init__(self, url: str, *, min_connections: int = 1, max_connections: int = 10) -> None:
        self._dsn = url
        self._min = min_connections
        self._max = max_connections
        self._pool: asyncpg.Pool | None = None
        self._users = 0

    @property
    def url(self) -> str:
        """The URL without its password, fit for messages and logs."""
        return redact_url(self._dsn)

    async def open(self) -> None:
        """Open (counted: a store opened twice stays open until closed twice; reopenable)."""
        self._users += 1
        if self._users > 1:
            return
        try:
            try:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=self._min,
                    max_size=self._max,
                    reset=_keep_session,
                )
            except (*_DRIVER_ERRORS, ValueError) as exc:
                raise StoreError(
                    f"cannot connect to PostgreSQL at {self.url}: {_describe(exc)}"
                ) from exc
            await self._migrate()
        except BaseException:
            self._users = 1
            await self.close()
            raise

    async def close(self) -> None:
        if self._users == 0:
            return
        self._users -= 1
        if self._users > 0:
            return
        pool, self._pool = self._pool, None
        if pool is None:
            return
        closed = False
        try:
            with anyio.move_on_after(_CLOSE_TIMEOUT):
                await pool.close()
                closed = True
        except _DRIVER_ERRORS:
            pass
        finally:
            if not closed:
                # Stuck, failed or cancelled: drop the connections rather than leak them.
                pool.terminate()

    @contextmanager
    def _failing(self, what: str) -> Iterator[asyncpg.Pool]:
        """The pool; driver errors inside the block become a StoreError saying ``what`` failed."""
        if self._pool is None:
            raise StoreError(f"the store {self.url} is not open")
        try:
            yield self._pool
        except _DRIVER_ERRORS as exc:
            raise StoreError(f"PostgreSQL at {self.url}: cannot {what}: {_describe(exc)}") from exc

    async def _migrate(self) -> None:
        with self._failing("migrate the schema") as pool:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version"
                    " (version INTEGER NOT NULL, applied_at TEXT)"
                )
                current = await conn.fetchval(
                    "SELECT coalesce(max(version), 0) FROM schema_version"
                )
                if current > LATEST:
                    raise StoreError(
                        f"the database {self.url} has schema version {current}, newer than this"
                        f" Reactor's {LATEST}; upgrade Reactor"
                    )
                for migration in MIGRATIONS:
                    if migration.version <= current:
                        continue
                    for statement in migration.statements:
                        await conn.execute(render(statement, "postgresql"))
                    await conn.execute(
                        "INSERT INTO schema_version VALUES"
                        " ($1, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'))",
                        migration.version,
                    )

    # Events

    async def ingest(
        self, event: Event, received_at: datetime, *, evaluated: bool = False
    ) -> tuple[str, bool]:
        with self._failing(f"ingest event {event.id} from {event.source}") as pool:
            seq = await pool.fetchval(
                "INSERT INTO events (id, source, type, subject, time, received_at, body,"
                " evaluated_at, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                " ON CONFLICT (source, id) DO NOTHING RETURNING seq",
                *event_values(event, received_at),
                ts(received_at) if evaluated else None,
                "[]" if evaluated else None,
            )
        return event.id, seq is not None

    async def ingest_many(
        self,
        events: Sequence[Event],
        received_at: datetime,
        cursor: tuple[str, Any] | None = None,
    ) -> list[tuple[str, bool]]:
        if not events and cursor is None:
            return []
        columns = list(zip(*(event_values(e, received_at) for e in events), strict=True))
        arrays: list[list[Any]] = [list(c) for c in columns] if columns else [[]] * 7
        key, value = cursor if cursor is not None else (None, None)
        # One statement: the new rows and the cursor commit together or not at all.
        with self._failing(f"ingest {len(events)} events") as pool:
            rows = await pool.fetch(
                "WITH new AS ("
                " INSERT INTO events (id, source, type, subject, time, received_at, body)"
                " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],"
                " $5::text[], $6::text[], $7::text[])"
                " ON CONFLICT (source, id) DO NOTHING RETURNING source, id),"
                " saved AS ("
                " INSERT INTO sensor_cursors (trigger_key, cursor, updated_at)"
                " SELECT $8, $9, $10 WHERE $8::text IS NOT NULL"
                " ON CONFLICT (trigger_key) DO UPDATE SET cursor = excluded.cursor,"
                " updated_at = excluded.updated_at RETURNING 1)"
                " SELECT source, id FROM new",
                *arrays,
                key,
                json.dumps(value),
                ts(received_at),
            )
        inserted = {(row["source"], row["id"]) for row in rows}
        results = []
        for event in events:
            key_of = (event.source, event.id)
            # The same event twice in one batch: only its first copy is new.
            results.append((event.id, key_of in inserted))
            inserted.discard(key_of)
        return results

    async def get_event(self, source: str, event_id: str) -> StoredEvent | None:
        with self._failing(f"read event {event_id} from {source}") as pool:
            row = await pool.fetchrow(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE source = $1 AND id = $2",
                source,
                event_id,
            )
        return event_from(row) if row else None

    async def find_event(self, event_id: str) -> StoredEvent | None:
        with self._failing(f"read event {event_id}") as pool:
            row = await pool.fetchrow(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE id = $1 ORDER BY seq LIMIT 1",
                event_id,
            )
        return event_from(row) if row else None

    async def find_events(self, event_id: str, limit: int) -> list[StoredEvent]:
        with self._failing(f"read events {event_id}") as pool:
            rows = await pool.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE id = $1 ORDER BY seq LIMIT $2",
                event_id,
                limit,
            )
        return [event_from(r) for r in rows]

    async def events_received(
        self, since: datetime, *, after: tuple[datetime, int] | None = None, limit: int
    ) -> list[StoredEvent]:
        start, seq = (since, 0) if after is None else after
        with self._failing(f"read events received since {since.isoformat()}") as pool:
            # Timestamps are UTC ISO text: compared as text, in the index's order.
            rows = await pool.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE received_at >= $1"
                " AND (received_at, seq) > ($2, $3) ORDER BY received_at, seq LIMIT $4",
                ts(since.astimezone(UTC)),
                ts(start.astimezone(UTC)),
                seq,
                limit,
            )
        return [event_from(r) for r in rows]

    async def last_event(self, source: str) -> StoredEvent | None:
        with self._failing(f"read the last event from {source}") as pool:
            row = await pool.fetchrow(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE source = $1 ORDER BY seq DESC LIMIT 1",
                source,
            )
        return event_from(row) if row else None

    async def list_events(
        self,
        *,
        limit: int,
        before: int | None = None,
        type_pattern: str | None = None,
        source: str | None = None,
        exclude_prefixes: Sequence[str] = (),
    ) -> list[StoredEvent]:
        # Newest first by seq: a backward scan of the primary key, the filters checked on
        # the way (or the (source, id) index, when the planner finds the source rare).
        where: list[str] = []
        args: list[Any] = []
        if before is not None:
            args.append(before)
            where.append(f"seq < ${len(args)}")
        if type_pattern is not None:
            if "*" in type_pattern:
                args.append(_like(type_pattern))
                where.append(f"type LIKE ${len(args)} ESCAPE '\\'")
            else:
                args.append(type_pattern)
                where.append(f"type = ${len(args)}")
        if source is not None:
            args.append(source)
            where.append(f"source = ${len(args)}")
        for prefix in exclude_prefixes:
            args.append(prefix)
            where.append(f"NOT starts_with(type, ${len(args)})")
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        args.append(limit)
        sql = f"SELECT {EVENT_COLUMNS} FROM events {clause} ORDER BY seq DESC LIMIT ${len(args)}"
        with self._failing("list events") as pool:
            rows = await pool.fetch(sql, *args)
        return [event_from(r) for r in rows]

    async def unevaluated_events(self, limit: int) -> list[StoredEvent]:
        with self._failing("read unevaluated events") as pool:
            rows = await pool.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE evaluated_at IS NULL"
                " ORDER BY seq LIMIT $1",
                limit,
            )
        return [event_from(r) for r in rows]

    async def record_outcome(
        self,
        event: Event,
        decisions: list[dict[str, Any]],
        runs: Sequence[RunRecord],
        at: datetime,
        windows: Sequence[WindowRow] = (),
    ) -> list[Admitted]:
        with self._failing(f"record the outcome of event {event.id}") as pool:
            if not windows:
                return await self._record_outcome(pool, event, decisions, runs, at)
            # Grouping triggers: their window states commit with the outcome.
            async with pool.acquire() as conn, conn.transaction():
                admitted = await self._record_outcome(conn, event, decisions, runs, at)
                await _save_windows(conn, windows, at)
                return admitted

    async def _record_outcome(
        self,
        pool: Any,
        event: Event,
        decisions: list[dict[str, Any]],
        runs: Sequence[RunRecord],
        at: datetime,
    ) -> list[Admitted]:
        outcome = json.dumps(decisions, default=str)
        if not runs:
            await pool.execute(
                "UPDATE events SET evaluated_at = $1, outcome = $2 WHERE source = $3 AND id = $4",
                ts(at),
                outcome,
                event.source,
                event.id,
            )
            return []
        columns = list(zip(*(run_values(run) for run in runs), strict=True))
        rows = await pool.fetch(_RECORD_OUTCOME, *columns, ts(at), outcome, event.source, event.id)
        admitted: list[Admitted] = []
        created: dict[str, RunRecord] = {}
        missing: list[int] = []
        for run, row in zip(runs, rows, strict=True):
            if run.run_key in created:
                # The same key twice in one call: the first one created it.
                admitted.append(Admitted(dataclasses.replace(created[run.run_key]), False))
            elif row["new_seq"] is not None:
                run.seq = row["new_seq"]
                created[run.run_key] = run
                admitted.append(Admitted(run, True))
            elif row["seq"] is not None:
                admitted.append(Admitted(run_from(row), False))
            else:
                # Another process committed this run key after our snapshot was taken.
                missing.append(len(admitted))
                admitted.append(Admitted(run, False))
        for index in missing:
            key = admitted[index].run.run_key
            found = await pool.fetchrow(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_key = $1", key)
            if found is None:
                raise StoreError(f"run key {key} was neither created nor found")
            admitted[index] = Admitted(run_from(found), False)
        return admitted

    async def record_outcomes(
        self, outcomes: Sequence[OutcomeToRecord], at: datetime
    ) -> list[list[Admitted] | Exception]:
        async def one(item: OutcomeToRecord) -> list[Admitted] | Exception:
            try:
                return await self.record_outcome(
                    item.event, item.decisions, item.runs, at, item.windows
                )
            except Exception as exc:
                return exc

        # Concurrently, over the pool's connections: each is its own transaction.
        return list(await asyncio.gather(*(one(item) for item in outcomes)))

    # Trigger windows

    async def save_windows(
        self, windows: Sequence[WindowRow], runs: Sequence[RunRecord], at: datetime
    ) -> list[Admitted]:
        with self._failing("save trigger windows") as pool:
            async with pool.acquire() as conn, conn.transaction():
                admitted = [await _create_run(conn, run) for run in runs]
                await _save_windows(conn, windows, at)
        return admitted

    async def open_windows(self) -> list[WindowRow]:
        with self._failing("read trigger windows") as pool:
            rows = await pool.fetch(
                f"SELECT {WINDOW_COLUMNS} FROM trigger_windows WHERE state IS NOT NULL"
                " ORDER BY trigger_key, window_key"
            )
        return [window_from(tuple(row)) for row in rows]

    async def prune_windows(self, before: datetime) -> int:
        with self._failing("prune trigger windows") as pool:
            status = await pool.execute(PRUNE_WINDOWS, ts(before))
        return int(status.split()[-1])

    # Sensors

    async def get_cursor(self, trigger_key: str) -> Any | None:
        with self._failing(f"read the cursor of {trigger_key}") as pool:
            value = await pool.fetchval(
                "SELECT cursor FROM sensor_cursors WHERE trigger_key = $1", trigger_key
            )
        return json.loads(value) if value is not None else None

    async def save_cursor(self, trigger_key: str, cursor: Any, at: datetime) -> None:
        with self._failing(f"save the cursor of {trigger_key}") as pool:
            await pool.execute(
                "INSERT INTO sensor_cursors (trigger_key, cursor, updated_at) VALUES ($1,$2,$3)"
                " ON CONFLICT (trigger_key) DO UPDATE SET cursor = excluded.cursor,"
                " updated_at = excluded.updated_at",
                trigger_key,
                json.dumps(cursor),
                ts(at),
            )

    async def add_dead_letter(self, letter: DeadLetter) -> int:
        with self._failing(f"record a dead letter of {letter.trigger_key}") as pool:
            seq = await pool.fetchval(
                "INSERT INTO dead_letters (trigger_key, ref, reason, payload, time)"
                " VALUES ($1,$2,$3,$4,$5) RETURNING seq",
                letter.trigger_key,
                letter.ref,
                letter.reason,
                json.dumps(letter.payload, default=str),
                ts(letter.time),
            )
        return int(seq)

    async def dead_letters(
        self, trigger_key: str | None = None, *, limit: int = 100, before: int | None = None
    ) -> list[DeadLetter]:
        with self._failing("read dead letters") as pool:
            rows = await pool.fetch(
                f"SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters"
                " WHERE ($1::text IS NULL OR trigger_key = $1)"
                " AND ($2::bigint IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3",
                trigger_key,
                before,
                limit,
            )
        return [dead_letter_from(tuple(row)) for row in rows]

    # Pipelines

    async def save_pipeline_version(
        self, pipeline: str, version: str, path: str, text: str, at: datetime
    ) -> None:
        with self._failing(f"save version {version} of pipeline {pipeline}") as pool:
            await pool.execute(
                "INSERT INTO pipeline_versions VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (pipeline, version) DO NOTHING",
                pipeline,
                version,
                path,
                text,
                ts(at),
            )

    async def pipeline_version(self, pipeline: str, version: str) -> str | None:
        with self._failing(f"read version {version} of pipeline {pipeline}") as pool:
            text: str | None = await pool.fetchval(
                "SELECT text FROM pipeline_versions WHERE pipeline = $1 AND version = $2",
                pipeline,
                version,
            )
        return text

    # Pauses

    async def pauses(self) -> list[Pause]:
        with self._failing("read the pauses") as pool:
            rows = await pool.fetch("SELECT key, paused_at, actor FROM pauses ORDER BY key")
        return [Pause(row[0], datetime.fromisoformat(row[1]), row[2]) for row in rows]

    async def add_audit(self, entry: AuditEntry) -> None:
        with self._failing(f"record {entry.action} by {entry.actor}") as pool:
            await pool.execute(
                "INSERT INTO audit (time, actor, action, target, detail)"
                " VALUES ($1, $2, $3, $4, $5)",
                ts(entry.time),
                entry.actor,
                entry.action,
                entry.target,
                entry.detail_text(),
            )

    async def audit(
        self, *, limit: int, before: int | None = None, target: str | None = None
    ) -> list[AuditEntry]:
        with self._failing("read the audit") as pool:
            rows = await pool.fetch(
                "SELECT seq, time, actor, action, target, detail FROM audit"
                " WHERE ($1::bigint IS NULL OR seq < $1) AND ($2::text IS NULL OR target = $2)"
                " ORDER BY seq DESC LIMIT $3",
                before,
                target,
                limit,
            )
        return [
            AuditEntry(
                datetime.fromisoformat(r[1]), r[2], r[3], r[4], AuditEntry.detail_from(r[5]), r[0]
            )
            for r in rows
        ]

    async def add_pause(self, pause: Pause) -> bool:
        with self._failing(f"pause {pause.key}") as pool:
            inserted = await pool.fetchval(
                "INSERT INTO pauses (key, paused_at, actor) VALUES ($1, $2, $3)"
                " ON CONFLICT (key) DO NOTHING RETURNING key",
                pause.key,
                ts(pause.paused_at),
                pause.actor,
            )
        return inserted is not None

    async def remove_pause(self, key: str) -> Pause | None:
        with self._failing(f"resume {key}") as pool:
            row = await pool.fetchrow(
                "DELETE FROM pauses WHERE key = $1 RETURNING key, paused_at, actor", key
            )
        return Pause(row[0], datetime.fromisoformat(row[1]), row[2]) if row else None

    # Runs

    async def create_run(self, run: RunRecord) -> Admitted:
        with self._failing(f"create run {run.id} of pipeline {run.pipeline}") as pool:
            return await _create_run(pool, run)

    async def get_run(self, run_id: str) -> RunRecord | None:
        with self._failing(f"read run {run_id}") as pool:
            row = await pool.fetchrow(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = $1", run_id)
        return run_from(row) if row else None

    async def list_runs(
        self, *, pipeline: str | None, limit: int, before: int | None
    ) -> list[RunRecord]:
        # Newest first by seq: the primary key, or runs_pipeline (pipeline, seq) when filtered.
        where: list[str] = []
        args: list[Any] = []
        if pipeline is not None:
            args.append(pipeline)
            where.append(f"pipeline = ${len(args)}")
        if before is not None:
            args.append(before)
            where.append(f"seq < ${len(args)}")
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        args.append(limit)
        sql = f"SELECT {RUN_COLUMNS} FROM runs {clause} ORDER BY seq DESC LIMIT ${len(args)}"
        with self._failing("list runs") as pool:
            rows = await pool.fetch(sql, *args)
        return [run_from(r) for r in rows]

    async def runs_with_status(self, status: str, pipeline: str | None = None) -> list[RunRecord]:
        with self._failing(f"list {status} runs") as pool:
            if pipeline is None:
                rows = await pool.fetch(
                    f"SELECT {RUN_COLUMNS} FROM runs WHERE status = $1 ORDER BY seq", status
                )
            else:
                rows = await pool.fetch(
                    f"SELECT {RUN_COLUMNS} FROM runs WHERE status = $1 AND pipeline = $2"
                    " ORDER BY seq",
                    status,
                    pipeline,
                )
        return [run_from(r) for r in rows]

    async def runs_without_event(self, source_prefix: str, limit: int) -> list[RunRecord]:
        with self._failing("list runs without their end event") as pool:
            rows = await pool.fetch(
                f"SELECT {RUN_COLUMNS} FROM runs r"
                " WHERE r.status IN ('succeeded', 'failed', 'cancelled') AND NOT EXISTS"
                " (SELECT 1 FROM events e WHERE e.source = $1::text || r.pipeline AND e.id = r.id)"
                " ORDER BY r.seq LIMIT $2",
                source_prefix,
                limit,
            )
        return [run_from(r) for r in rows]

    async def set_run_status(
        self,
        run_id: str,
        status: str,
        *,
        at: datetime,
        reason: str | None = None,
        owner: str | None = None,
    ) -> None:
        column = {"running": "started_at", "queued": "created_at"}.get(status, "ended_at")
        with self._failing(f"set run {run_id} {status}") as pool:
            await pool.execute(
                f"UPDATE runs SET status = $1, {column} = coalesce({column}, $2),"
                " reason = coalesce($3, reason), owner = coalesce($4, owner) WHERE id = $5",
                status,
                ts(at),
                reason,
                owner,
                run_id,
            )

    async def claim_run(self, run_id: str, old_owner: str | None, new_owner: str) -> bool:
        with self._failing(f"claim run {run_id}") as pool:
            result: str = await pool.execute(
                "UPDATE runs SET owner = $1 WHERE id = $2 AND owner IS NOT DISTINCT FROM $3",
                new_owner,
                run_id,
                old_owner,
            )
        return result == "UPDATE 1"

    async def reopen_run(
        self,
        run_id: str,
        *,
        version: str,
        params: dict[str, Any],
        reason: str,
        owner: str,
        at: datetime,
    ) -> bool:
        with self._failing(f"reopen run {run_id}") as pool:
            result: str = await pool.execute(
                "UPDATE runs SET status = 'running', version = $1, params = $2, reason = $3,"
                " owner = $4, started_at = $5, ended_at = NULL"
                " WHERE id = $6 AND status IN ('succeeded', 'failed', 'cancelled')",
                version,
                json.dumps(params),
                reason,
                owner,
                ts(at),
                run_id,
            )
        return result == "UPDATE 1"

    # Tasks

    async def save_tasks(
        self,
        tasks: Sequence[TaskRecord],
        attempts: Sequence[AttemptRecord] = (),
        events: Sequence[TaskEvent] = (),
    ) -> list[Event]:
        if not tasks and not attempts and not events:
            return []
        # One statement (so one round trip and one implicit transaction) for all three
        # tables; PostgreSQL refuses to upsert a row twice in one statement, so repeats are
        # merged first into what saving them one after the other would leave.
        task_rows = [task_values(t) for t in _latest_tasks(tasks)]
        attempt_rows = [attempt_values(a) for a in _merged_attempts(attempts)]
        event_rows = [
            (
                *event_values(e.event, e.at),
                None if e.evaluate else ts(e.at),
                None if e.evaluate else "[]",
            )
            for e in {(e.event.source, e.event.id): e for e in events}.values()
        ]
        first = tasks[0].run_id if tasks else attempts[0].run_id if attempts else "?"
        with self._failing(f"save the tasks of run {first}") as pool:
            rows = await pool.fetch(
                _SAVE_TASKS,
                *_columns(task_rows, 8),
                *_columns(attempt_rows, 11),
                *_columns(event_rows, 9),
            )
        inserted = {(row["source"], row["id"]) for row in rows}
        return [e.event for e in events if e.evaluate and (e.event.source, e.event.id) in inserted]

    async def task_runs(self, run_id: str) -> list[TaskRecord]:
        # SQLite breaks ties by rowid (insertion order); PostgreSQL has no such column, so
        # tasks that never started (or started at the same instant) come in task id order.
        with self._failing(f"read the tasks of run {run_id}") as pool:
            rows = await pool.fetch(
                "SELECT run_id, task_id, status, attempts, started_at, ended_at, output, error"
                " FROM task_runs WHERE run_id = $1"
                ' ORDER BY started_at IS NULL, started_at COLLATE "C", task_id COLLATE "C"',
                run_id,
            )
        return [
            TaskRecord(
                r["run_id"],
                r["task_id"],
                r["status"],
                r["attempts"],
                dt(r["started_at"]),
                dt(r["ended_at"]),
                json.loads(r["output"]) if r["output"] is not None else None,
                r["error"],
            )
            for r in rows
        ]

    async def attempts(self, run_id: str) -> list[AttemptRecord]:
        with self._failing(f"read the task attempts of run {run_id}") as pool:
            rows = await pool.fetch(
                f"SELECT {ATTEMPT_COLUMNS} FROM task_attempts WHERE run_id = $1"
                ' ORDER BY started_at COLLATE "C", attempt, task_id COLLATE "C"',
                run_id,
            )
        return [attempt_from(r) for r in rows]

    async def running_attempts(self) -> list[AttemptRecord]:
        with self._failing("read running task attempts") as pool:
            rows = await pool.fetch(
                f"SELECT {ATTEMPT_COLUMNS} FROM task_attempts WHERE status = 'running'"
                ' ORDER BY started_at COLLATE "C", run_id, task_id, attempt'
            )
        return [attempt_from(r) for r in rows]

    async def register_process(self, process: ProcessRecord) -> None:
        with self._failing(f"register process {process.owner}") as pool:
            await pool.execute(
                "INSERT INTO processes VALUES ($1, $2, $3, $4, $5) ON CONFLICT (owner)"
                " DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                process.owner,
                process.host,
                process.pid,
                ts(process.started_at),
                ts(process.heartbeat_at),
            )

    async def processes(self) -> list[ProcessRecord]:
        with self._failing("read processes") as pool:
            rows = await pool.fetch(
                "SELECT owner, host, pid, started_at, heartbeat_at FROM processes"
                ' ORDER BY started_at COLLATE "C", owner'
            )
        return [
            ProcessRecord(
                r["owner"],
                r["host"],
                r["pid"],
                datetime.fromisoformat(r["started_at"]),
                datetime.fromisoformat(r["heartbeat_at"]),
            )
            for r in rows
        ]

    async def heartbeat(self, owner: str, at: datetime) -> None:
        with self._failing(f"record the heartbeat of {owner}") as pool:
            await pool.execute(
                "WITH process AS (UPDATE processes SET heartbeat_at = $1 WHERE owner = $2)"
                " UPDATE task_attempts SET heartbeat_at = $1 WHERE owner = $2"
                " AND status = 'running'",
                ts(at),
                owner,
            )

    # Logs

    async def append_logs(self, lines: Sequence[LogLine]) -> None:
        if not lines:
            return
        rows = [(x.run_id, x.task_id, x.attempt, x.stream, ts(x.time), x.line) for x in lines]
        with self._failing(f"append {len(rows)} log lines of run {lines[0].run_id}") as pool:
            await pool.executemany(
                "INSERT INTO logs (run_id, task_id, attempt, stream, time, line)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                rows,
            )

    async def logs(
        self, run_id: str, *, after: int, limit: int, task_id: str | None = None
    ) -> list[LogLine]:
        with self._failing(f"read the logs of run {run_id}") as pool:
            rows = await pool.fetch(
                "SELECT run_id, task_id, attempt, stream, time, line, seq FROM logs"
                " WHERE run_id = $1 AND seq > $2 AND ($4::text IS NULL OR task_id = $4)"
                " ORDER BY seq LIMIT $3",
                run_id,
                after,
                limit,
                task_id,
            )
        return [
            LogLine(
                r["run_id"],
                r["task_id"],
                r["attempt"],
                r["stream"],
                datetime.fromisoformat(r["time"]),
                r["line"],
                r["seq"],
            )
            for r in rows
        ]

    # Retention

    async def run_pipelines(self) -> list[str]:
        with self._failing("list the pipelines with runs") as pool:
            rows = await pool.fetch("SELECT DISTINCT pipeline FROM runs ORDER BY pipeline")
        return [row[0] for row in rows]

    async def prune_runs(
        self, pipeline: str, *, ended_before: datetime | None, keep: int, limit: int
    ) -> tuple[int, int]:
        before = ts(ended_before.astimezone(UTC)) if ended_before is not None else None
        with self._failing(f"remove old runs of {pipeline}") as pool:
            async with pool.acquire() as conn, conn.transaction():
                chosen = await conn.fetch(_PRUNABLE_RUNS, pipeline, before, keep, limit)
                # Only runs still final when deleted: their status may have changed since.
                gone = await conn.fetch(
                    "DELETE FROM runs WHERE id = ANY($1::text[])"
                    " AND status IN ('succeeded', 'failed', 'cancelled') RETURNING id",
                    [row[0] for row in chosen],
                )
                ids = [row[0] for row in gone]
                if not ids:
                    return 0, 0
                status = await conn.execute("DELETE FROM logs WHERE run_id = ANY($1::text[])", ids)
                for table in ("task_attempts", "task_runs"):
                    await conn.execute(f"DELETE FROM {table} WHERE run_id = ANY($1::text[])", ids)
        return len(ids), int(status.split()[-1])

    async def prune_events(
        self, before: datetime, *, keep: Collection[tuple[str, str]], limit: int
    ) -> int:
        with self._failing("remove old events") as pool:
            status = await pool.execute(
                _PRUNE_EVENTS,
                ts(before.astimezone(UTC)),
                run_event_source(""),
                [ref[0] for ref in keep],
                [ref[1] for ref in keep],
                limit,
            )
        return int(status.split()[-1])

    # Backfills

    async def create_backfill(self, backfill: BackfillRow) -> tuple[BackfillRow, bool]:
        with self._failing(f"create backfill {backfill.id} of {backfill.pipeline}") as pool:
            async with pool.acquire() as conn, conn.transaction():
                status = await conn.execute(
                    f"INSERT INTO backfills ({BACKFILL_COLUMNS}) VALUES"
                    " ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13) ON CONFLICT (id) DO NOTHING",
                    *backfill.values(),
                )
                if status.split()[-1] == "1":
                    return backfill, True
                row = await conn.fetchrow(
                    f"SELECT {BACKFILL_COLUMNS} FROM backfills WHERE id = $1", backfill.id
                )
        return BackfillRow.from_row(row), False

    async def get_backfill(self, backfill_id: str) -> BackfillRow | None:
        with self._failing(f"read backfill {backfill_id}") as pool:
            row = await pool.fetchrow(
                f"SELECT {BACKFILL_COLUMNS} FROM backfills WHERE id = $1", backfill_id
            )
        return BackfillRow.from_row(row) if row else None

    async def list_backfills(
        self, *, status: str | None = None, limit: int = 100
    ) -> list[BackfillRow]:
        with self._failing("list backfills") as pool:
            if status is None:
                rows = await pool.fetch(
                    f"SELECT {BACKFILL_COLUMNS} FROM backfills"
                    " ORDER BY created_at DESC, id LIMIT $1",
                    limit,
                )
            else:
                rows = await pool.fetch(
                    f"SELECT {BACKFILL_COLUMNS} FROM backfills WHERE status = $1"
                    " ORDER BY created_at DESC, id LIMIT $2",
                    status,
                    limit,
                )
        return [BackfillRow.from_row(r) for r in rows]

    async def set_backfill_status(
        self, backfill_id: str, status: str, *, at: datetime | None, reason: str | None = None
    ) -> None:
        with self._failing(f"set backfill {backfill_id} {status}") as pool:
            await pool.execute(
                "UPDATE backfills SET status = $1, ended_at = $2, reason = $3 WHERE id = $4",
                status,
                ts(at.astimezone(UTC)) if at else None,
                reason,
                backfill_id,
            )

    async def runs_with_key_prefix(self, pipeline: str, prefix: str) -> list[RunRecord]:
        with self._failing(f"read the runs of {prefix}") as pool:
            rows = await pool.fetch(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE pipeline = $1"
                " AND substr(run_key, 1, length($2)) = $2 ORDER BY seq",
                pipeline,
                prefix,
            )
        return [run_from(r) for r in rows]

    # Lineage

    async def record_assets(self, uses: Sequence[AssetUse]) -> None:
        rows = [use.values() for use in uses]
        if not rows:
            return
        with self._failing(f"record {len(rows)} asset uses") as pool:
            await pool.executemany(
                f"INSERT INTO lineage ({ASSET_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7)"
                " ON CONFLICT (run_id, task_id, attempt, direction, asset) DO NOTHING",
                rows,
            )

    async def list_assets(self, *, limit: int) -> list[AssetSummary]:
        with self._failing("list the assets") as pool:
            groups = await pool.fetch(ASSET_GROUPS_SQL)
            rows = await pool.fetch(
                f"SELECT seq, {ASSET_COLUMNS} FROM lineage WHERE seq = ANY($1::bigint[])",
                last_seqs(groups),
            )
        last = {row["seq"]: AssetUse.from_row(row) for row in rows}
        return summarize(groups, last)[:limit]

    async def asset_history(
        self, asset: str, *, limit: int, before: int | None = None
    ) -> list[tuple[int, AssetUse]]:
        with self._failing(f"read the history of asset {asset}") as pool:
            rows = await pool.fetch(
                f"SELECT seq, {ASSET_COLUMNS} FROM lineage WHERE asset = $1"
                " AND ($2::bigint IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3",
                asset,
                before,
                limit,
            )
        return [(row["seq"], AssetUse.from_row(row)) for row in rows]

    # Alert incidents

    async def save_incidents(self, incidents: Sequence[Mapping[str, Any]]) -> None:
        rows = [incident_values(incident) for incident in incidents]
        if not rows:
            return
        with self._failing(f"save {len(rows)} incidents") as pool:
            await pool.executemany(
                f"INSERT INTO incidents ({INCIDENT_COLUMNS})"
                " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (id) DO UPDATE SET"
                " status = EXCLUDED.status, updated_at = EXCLUDED.updated_at,"
                " closed_at = EXCLUDED.closed_at, state = EXCLUDED.state",
                rows,
            )

    async def incidents(self, *, include_closed: bool, limit: int) -> list[dict[str, Any]]:
        where = "" if include_closed else "WHERE status = 'open'"
        with self._failing("read the incidents") as pool:
            rows = await pool.fetch(
                f"SELECT state FROM incidents {where} ORDER BY opened_at DESC, id LIMIT $1",
                limit,
            )
        return [json.loads(row[0]) for row in rows]


def _like(pattern: str) -> str:
    """``pattern`` (``*`` any run of characters, all else literal) as a LIKE pattern with
    the escape character ``\\``."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


# The newest ``keep`` final runs of the pipeline stay whatever their age (a run that never
# recorded its end counts from its creation).
_PRUNABLE_RUNS = """
SELECT id FROM runs
WHERE pipeline = $1 AND status IN ('succeeded', 'failed', 'cancelled')
  AND ($2::text IS NULL OR coalesce(ended_at, created_at) < $2::text)
  AND seq NOT IN (
    SELECT seq FROM runs WHERE pipeline = $1 AND status IN ('succeeded', 'failed', 'cancelled')
    ORDER BY seq DESC LIMIT $3
  )
ORDER BY seq LIMIT $4
"""
# A stored run stays explainable: the events it names and its own end event stay (a run
# without its end event would make it again at the next start).
_PRUNE_EVENTS = """
WITH named AS MATERIALIZED (
  SELECT DISTINCT json_array_elements_text(event_ids::json) AS id FROM runs
)
DELETE FROM events WHERE seq IN (
  SELECT e.seq FROM events e
  WHERE e.received_at < $1 AND e.evaluated_at IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM named WHERE named.id = e.id)
    AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = e.id AND e.source = $2 || r.pipeline)
    AND NOT EXISTS (
      SELECT 1 FROM unnest($3::text[], $4::text[]) AS k(source, id)
      WHERE k.source = e.source AND k.id = e.id
    )
  ORDER BY e.received_at, e.seq LIMIT $5
)
"""

_SAVE_TASKS = """
WITH saved_tasks AS (
    INSERT INTO task_runs (run_id, task_id, status, attempts, started_at, ended_at, output, error)
    SELECT * FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::integer[], $5::text[], $6::text[], $7::text[],
        $8::text[]
    )
    ON CONFLICT (run_id, task_id) DO UPDATE SET status = excluded.status,
        attempts = excluded.attempts, started_at = excluded.started_at,
        ended_at = excluded.ended_at, output = excluded.output, error = excluded.error
), saved_attempts AS (
    INSERT INTO task_attempts (
        run_id, task_id, attempt, status, owner, started_at, heartbeat_at, ended_at, error, host,
        pid
    )
    SELECT * FROM unnest(
        $9::text[], $10::text[], $11::integer[], $12::text[], $13::text[], $14::text[],
        $15::text[], $16::text[], $17::text[], $18::text[], $19::integer[]
    )
    ON CONFLICT (run_id, task_id, attempt) DO UPDATE SET status = excluded.status,
        heartbeat_at = excluded.heartbeat_at, ended_at = excluded.ended_at,
        error = excluded.error, host = coalesce(excluded.host, task_attempts.host),
        pid = coalesce(excluded.pid, task_attempts.pid)
)
INSERT INTO events (
    id, source, type, subject, time, received_at, body, evaluated_at, outcome
)
SELECT * FROM unnest(
    $20::text[], $21::text[], $22::text[], $23::text[], $24::text[], $25::text[], $26::text[],
    $27::text[], $28::text[]
)
ON CONFLICT (source, id) DO NOTHING
RETURNING source, id
"""


async def _save_windows(conn: Any, windows: Sequence[WindowRow], at: datetime) -> None:
    if windows:
        await conn.executemany(SAVE_WINDOW, [window_values(w, at) for w in windows])


async def _create_run(conn: Any, run: RunRecord) -> Admitted:
    """``run`` created (new) or the run already holding its key; in ``conn``'s transaction."""
    seq = await conn.fetchval(
        f"INSERT INTO runs ({RUN_FIELDS}) VALUES"
        " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        " ON CONFLICT (run_key) DO NOTHING RETURNING seq",
        *run_values(run),
    )
    if seq is not None:
        run.seq = seq
        return Admitted(run, True)
    row = await conn.fetchrow(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_key = $1", run.run_key)
    if row is None:
        raise StoreError(f"run key {run.run_key} was neither created nor found")
    return Admitted(run_from(row), False)


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one list per column: the arrays ``unnest`` turns back into rows."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


def _latest_tasks(tasks: Sequence[TaskRecord]) -> list[TaskRecord]:
    """One record per task: a later record of the same task replaces every column."""
    latest: dict[tuple[str, str], TaskRecord] = {}
    for task in tasks:
        latest[(task.run_id, task.task_id)] = task
    return list(latest.values())


def _merged_attempts(attempts: Sequence[AttemptRecord]) -> list[AttemptRecord]:
    """One record per attempt, as the upsert would leave it after each one in turn."""
    merged: dict[tuple[str, str, int], AttemptRecord] = {}
    for attempt in attempts:
        key = (attempt.run_id, attempt.task_id, attempt.attempt)
        first = merged.get(key)
        if first is not None:
            attempt = dataclasses.replace(
                attempt,
                owner=first.owner,
                started_at=first.started_at,
                host=attempt.host if attempt.host is not None else first.host,
                pid=attempt.pid if attempt.pid is not None else first.pid,
            )
        merged[key] = attempt
    return list(merged.values())
