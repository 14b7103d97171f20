"""The embedded store: SQLite in WAL mode, one writer thread with group commit.

Every write is a function run on the writer thread; whatever is queued when
the thread wakes is committed in one transaction (each op in its own
savepoint), so a burst of task transitions costs one fsync-free commit, and
the event loop pays one thread hop per operation instead of one per
statement.
"""

from __future__ import annotations

import asyncio
import json
import queue
import re
import sqlite3
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

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
from reactor.failpoints import hit
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

__all__ = ["SqliteStore"]

T = TypeVar("T")
_Op = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]
_MAX_BATCH = 512


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class _Worker:
    """A thread that owns one SQLite connection and runs queued functions on it."""

    def __init__(self, path: str, *, writer: bool) -> None:
        self._path = path
        self._writer = writer
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._run, name=f"reactor-sqlite-{'w' if writer else 'r'}", daemon=True
        )
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise StoreError(f"cannot open SQLite database {self._path}: {self._error}")

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if not self._thread.is_alive():
            # Queued work would wait forever on a thread that is not there.
            raise StoreError(f"the store {self._path} is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, future, loop))
        return await future

    async def call_all(
        self, fns: Sequence[Callable[[sqlite3.Connection], T]]
    ) -> list[T | Exception]:
        """Each of ``fns`` as by :meth:`call`, queued at once; failures in their places."""
        if not self._thread.is_alive():
            raise StoreError(f"the store {self._path} is not open")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[T]] = []
        for fn in fns:
            future: asyncio.Future[T] = loop.create_future()
            self._queue.put((fn, future, loop))
            futures.append(future)
        results: list[T | Exception] = []
        for future in futures:
            try:
                results.append(await future)
            except Exception as exc:
                results.append(exc)
        return results

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 10000")
        if self._writer:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _run(self) -> None:
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while (item := self._queue.get()) is not None:
                batch = [item]
                stop = False
                while len(batch) < _MAX_BATCH:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.append(more)
                self._run_batch(conn, batch)
                if stop:
                    break
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        results: list[tuple[Any, BaseException | None]] = []
        if not self._writer:
            for fn, _, _ in batch:
                try:
                    results.append((fn(conn), None))
                except Exception as exc:
                    results.append((None, _store_error(exc)))
        else:
            try:
                conn.execute("BEGIN IMMEDIATE")
                for fn, _, _ in batch:
                    conn.execute("SAVEPOINT op")
                    try:
                        results.append((fn(conn), None))
                        conn.execute("RELEASE op")
                    except Exception as exc:
                        conn.execute("ROLLBACK TO op")
                        conn.execute("RELEASE op")
                        results.append((None, _store_error(exc)))
                hit("store.before_commit")
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                failure = _store_error(exc)
                results = [(None, failure)] * len(batch)
        for (_, future, loop), (result, error) in zip(batch, results, strict=True):
            loop.call_soon_threadsafe(_resolve, future, result, error)


def _store_error(exc: Exception) -> BaseException:
    if isinstance(exc, sqlite3.Error):
        return StoreError(f"SQLite: {exc}")
    return exc


def _insert_run(conn: sqlite3.Connection, run: RunRecord) -> Admitted:
    cursor = conn.execute(
        f"INSERT INTO runs ({RUN_FIELDS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
        " ON CONFLICT (run_key) DO NOTHING",
        run_values(run),
    )
    if cursor.rowcount == 1:
        run.seq = cursor.lastrowid
        return Admitted(run, True)
    row = conn.execute(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE run_key = ?", (run.run_key,)
    ).fetchone()
    return Admitted(run_from(row), False)


def _qmarks(sql: str) -> str:
    """A statement shared with PostgreSQL, its ``$n`` parameters written as SQLite's ``?``."""
    return re.sub(r"\$\d+", "?", sql)


def _sqlite_glob(pattern: str) -> str:
    """``pattern`` (``*`` any run of characters, all else literal) as a SQLite GLOB."""
    return pattern.replace("[", "[[]").replace("?", "[?]")


_SAVE_WINDOW = _qmarks(SAVE_WINDOW)
_PRUNE_WINDOWS = _qmarks(PRUNE_WINDOWS)


def _save_windows(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        conn.executemany(_SAVE_WINDOW, rows)


def _save_cursor(conn: sqlite3.Connection, trigger_key: str, cursor: Any, at: datetime) -> None:
    conn.execute(
        "INSERT INTO sensor_cursors (trigger_key, cursor, updated_at) VALUES (?,?,?)"
        " ON CONFLICT (trigger_key) DO UPDATE SET cursor = excluded.cursor,"
        " updated_at = excluded.updated_at",
        (trigger_key, json.dumps(cursor), ts(at)),
    )


class SqliteStore:
    """The default store; ``path`` may be ``:memory:`` only in tests of a single process."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._writer = _Worker(self.path, writer=True)
        self._reader = _Worker(self.path, writer=False)
        self._users = 0

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    async def open(self) -> None:
        """Open (counted: a store opened twice stays open until closed twice; reopenable)."""
        self._users += 1
        if self._users > 1:
            return
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._writer.start()
            await self._writer.call(self._migrate)
            self._reader.start()
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
        for worker in (self._reader, self._writer):
            if worker.started:
                worker.stop()
        self._writer = _Worker(self.path, writer=True)
        self._reader = _Worker(self.path, writer=False)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TEXT)"
        )
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        current = row[0] or 0
        if current > LATEST:
            raise StoreError(
                f"the database {self.path} has schema version {current}, newer than this"
                f" Reactor's {LATEST}; upgrade Reactor"
            )
        for migration in MIGRATIONS:
            if migration.version <= current:
                continue
            for statement in migration.statements:
                conn.execute(render(statement, "sqlite"))
            conn.execute(
                "INSERT INTO schema_version VALUES (?, datetime('now'))", (migration.version,)
            )

    # Events

    async def ingest(
        self, event: Event, received_at: datetime, *, evaluated: bool = False
    ) -> tuple[str, bool]:
        row = (
            *event_values(event, received_at),
            ts(received_at) if evaluated else None,
            "[]" if evaluated else None,
        )

        def op(conn: sqlite3.Connection) -> tuple[str, bool]:
            cursor = conn.execute(
                "INSERT INTO events (id, source, type, subject, time, received_at, body,"
                " evaluated_at, outcome) VALUES (?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (source, id) DO NOTHING",
                row,
            )
            return event.id, cursor.rowcount == 1

        return await self._writer.call(op)

    async def ingest_many(
        self,
        events: Sequence[Event],
        received_at: datetime,
        cursor: tuple[str, Any] | None = None,
    ) -> list[tuple[str, bool]]:
        rows = [event_values(event, received_at) for event in events]

        def op(conn: sqlite3.Connection) -> list[tuple[str, bool]]:
            results = []
            for event, row in zip(events, rows, strict=True):
                inserted = conn.execute(
                    "INSERT INTO events (id, source, type, subject, time, received_at, body)"
                    " VALUES (?,?,?,?,?,?,?) ON CONFLICT (source, id) DO NOTHING",
                    row,
                )
                results.append((event.id, inserted.rowcount == 1))
            if cursor is not None:
                _save_cursor(conn, cursor[0], cursor[1], received_at)
            return results

        return await self._writer.call(op)

    async def get_event(self, source: str, event_id: str) -> StoredEvent | None:
        def op(conn: sqlite3.Connection) -> StoredEvent | None:
            row = conn.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE source = ? AND id = ?",
                (source, event_id),
            ).fetchone()
            return event_from(row) if row else None

        return await self._reader.call(op)

    async def find_event(self, event_id: str) -> StoredEvent | None:
        def op(conn: sqlite3.Connection) -> StoredEvent | None:
            row = conn.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ? ORDER BY seq LIMIT 1",
                (event_id,),
            ).fetchone()
            return event_from(row) if row else None

        return await self._reader.call(op)

    async def find_events(self, event_id: str, limit: int) -> list[StoredEvent]:
        def op(conn: sqlite3.Connection) -> list[StoredEvent]:
            rows = conn.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ? ORDER BY seq LIMIT ?",
                (event_id, limit),
            ).fetchall()
            return [event_from(r) for r in rows]

        return await self._reader.call(op)

    async def events_received(
        self, since: datetime, *, after: tuple[datetime, int] | None = None, limit: int
    ) -> list[StoredEvent]:
        start, seq = (since, 0) if after is None else after
        # Timestamps are UTC ISO text: compared as text, in the index's order.
        args = (ts(since.astimezone(UTC)), ts(start.astimezone(UTC)), seq, limit)

        def op(conn: sqlite3.Connection) -> list[StoredEvent]:
            rows = conn.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE received_at >= ?"
                " AND (received_at, seq) > (?, ?) ORDER BY received_at, seq LIMIT ?",
                args,
            ).fetchall()
            return [event_from(r) for r in rows]

        return await self._reader.call(op)

    async def last_event(self, source: str) -> StoredEvent | None:
        def op(conn: sqlite3.Connection) -> StoredEvent | None:
            row = conn.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE source = ? ORDER BY seq DESC LIMIT 1",
                (source,),
            ).fetchone()
            return event_from(row) if row else None

        return await self._reader.call(op)

    async def list_events(
        self,
        *,
        limit: int,
        before: int | None = None,
        type_pattern: str | None = None,
        source: str | None = None,
        exclude_prefixes: Sequence[str] = (),
    ) -> list[StoredEvent]:
        # Walked backwards by seq (the rowid), the filters checked on the way, so a page
        # costs the rows it skips, never a sort. ``+source`` keeps SQLite off the
        # (source, id) index, which would make it sort all of a source's events.
        where: list[str] = []
        args: list[Any] = []
        if before is not None:
            where.append("seq < ?")
            args.append(before)
        if type_pattern is not None and "*" in type_pattern:
            # GLOB, not LIKE: SQLite's LIKE ignores case, PostgreSQL's does not.
            where.append("type GLOB ?")
            args.append(_sqlite_glob(type_pattern))
        elif type_pattern is not None:
            where.append("type = ?")
            args.append(type_pattern)
        if source is not None:
            where.append("+source = ?")
            args.append(source)
        for prefix in exclude_prefixes:
            where.append("substr(type, 1, ?) <> ?")
            args.extend((len(prefix), prefix))
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {EVENT_COLUMNS} FROM events {clause} ORDER BY seq DESC LIMIT ?"
        args.append(limit)

        def op(conn: sqlite3.Connection) -> list[StoredEvent]:
            return [event_from(r) for r in conn.execute(sql, args).fetchall()]

        return await self._reader.call(op)

    async def unevaluated_events(self, limit: int) -> list[StoredEvent]:
        def op(conn: sqlite3.Connection) -> list[StoredEvent]:
            rows = conn.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE evaluated_at IS NULL"
                " ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
            return [event_from(r) for r in rows]

        return await self._reader.call(op)

    async def record_outcome(
        self,
        event: Event,
        decisions: list[dict[str, Any]],
        runs: Sequence[RunRecord],
        at: datetime,
        windows: Sequence[WindowRow] = (),
    ) -> list[Admitted]:
        rows = [window_values(w, at) for w in windows]

        def op(conn: sqlite3.Connection) -> list[Admitted]:
            admitted = [_insert_run(conn, run) for run in runs]
            conn.execute(
                "UPDATE events SET evaluated_at = ?, outcome = ? WHERE source = ? AND id = ?",
                (ts(at), json.dumps(decisions, default=str), event.source, event.id),
            )
            _save_windows(conn, rows)
            return admitted

        return await self._writer.call(op)

    async def record_outcomes(
        self, outcomes: Sequence[OutcomeToRecord], at: datetime
    ) -> list[list[Admitted] | Exception]:
        def op_for(item: OutcomeToRecord) -> Callable[[sqlite3.Connection], list[Admitted]]:
            decisions = json.dumps(item.decisions, default=str)
            rows = [window_values(w, at) for w in item.windows]

            def op(conn: sqlite3.Connection) -> list[Admitted]:
                admitted = [_insert_run(conn, run) for run in item.runs]
                conn.execute(
                    "UPDATE events SET evaluated_at = ?, outcome = ? WHERE source = ? AND id = ?",
                    (ts(at), decisions, item.event.source, item.event.id),
                )
                _save_windows(conn, rows)
                return admitted

            return op

        # Queued together, so the writer commits them in one transaction (each in its own
        # savepoint), without a task or a wake-up per event on this side.
        return await self._writer.call_all([op_for(item) for item in outcomes])

    # Trigger windows

    async def save_windows(
        self, windows: Sequence[WindowRow], runs: Sequence[RunRecord], at: datetime
    ) -> list[Admitted]:
        rows = [window_values(w, at) for w in windows]

        def op(conn: sqlite3.Connection) -> list[Admitted]:
            admitted = [_insert_run(conn, run) for run in runs]
            _save_windows(conn, rows)
            return admitted

        return await self._writer.call(op)

    async def open_windows(self) -> list[WindowRow]:
        def op(conn: sqlite3.Connection) -> list[WindowRow]:
            rows = conn.execute(
                f"SELECT {WINDOW_COLUMNS} FROM trigger_windows WHERE state IS NOT NULL"
                " ORDER BY trigger_key, window_key"
            ).fetchall()
            return [window_from(row) for row in rows]

        return await self._reader.call(op)

    async def prune_windows(self, before: datetime) -> int:
        def op(conn: sqlite3.Connection) -> int:
            deleted = conn.execute(_PRUNE_WINDOWS, (ts(before), ts(before)))
            return deleted.rowcount

        return await self._writer.call(op)

    # Sensors

    async def get_cursor(self, trigger_key: str) -> Any | None:
        def op(conn: sqlite3.Connection) -> Any | None:
            row = conn.execute(
                "SELECT cursor FROM sensor_cursors WHERE trigger_key = ?", (trigger_key,)
            ).fetchone()
            return json.loads(row[0]) if row else None

        return await self._reader.call(op)

    async def save_cursor(self, trigger_key: str, cursor: Any, at: datetime) -> None:
        await self._writer.call(lambda conn: _save_cursor(conn, trigger_key, cursor, at))

    async def add_dead_letter(self, letter: DeadLetter) -> int:
        def op(conn: sqlite3.Connection) -> int:
            inserted = conn.execute(
                "INSERT INTO dead_letters (trigger_key, ref, reason, payload, time)"
                " VALUES (?,?,?,?,?)",
                (
                    letter.trigger_key,
                    letter.ref,
                    letter.reason,
                    json.dumps(letter.payload, default=str),
                    ts(letter.time),
                ),
            )
            assert inserted.lastrowid is not None
            return inserted.lastrowid

        return await self._writer.call(op)

    async def dead_letters(
        self, trigger_key: str | None = None, *, limit: int = 100, before: int | None = None
    ) -> list[DeadLetter]:
        def op(conn: sqlite3.Connection) -> list[DeadLetter]:
            rows = conn.execute(
                f"SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters"
                " WHERE (? IS NULL OR trigger_key = ?) AND (? IS NULL OR seq < ?)"
                " ORDER BY seq DESC LIMIT ?",
                (trigger_key, trigger_key, before, before, limit),
            ).fetchall()
            return [dead_letter_from(row) for row in rows]

        return await self._reader.call(op)

    # Pipelines

    async def save_pipeline_version(
        self, pipeline: str, version: str, path: str, text: str, at: datetime
    ) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO pipeline_versions VALUES (?,?,?,?,?)"
                " ON CONFLICT (pipeline, version) DO NOTHING",
                (pipeline, version, path, text, ts(at)),
            )

        await self._writer.call(op)

    async def pipeline_version(self, pipeline: str, version: str) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT text FROM pipeline_versions WHERE pipeline = ? AND version = ?",
                (pipeline, version),
            ).fetchone()
            return row[0] if row else None

        return await self._reader.call(op)

    # Pauses

    async def pauses(self) -> list[Pause]:
        def op(conn: sqlite3.Connection) -> list[Pause]:
            rows = conn.execute("SELECT key, paused_at, actor FROM pauses ORDER BY key")
            return [Pause(row[0], datetime.fromisoformat(row[1]), row[2]) for row in rows]

        return await self._reader.call(op)

    async def add_audit(self, entry: AuditEntry) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO audit (time, actor, action, target, detail) VALUES (?,?,?,?,?)",
                (ts(entry.time), entry.actor, entry.action, entry.target, entry.detail_text()),
            )

        await self._writer.call(op)

    async def audit(
        self, *, limit: int, before: int | None = None, target: str | None = None
    ) -> list[AuditEntry]:
        def op(conn: sqlite3.Connection) -> list[AuditEntry]:
            rows = conn.execute(
                "SELECT seq, time, actor, action, target, detail FROM audit"
                " WHERE (? IS NULL OR seq < ?) AND (? IS NULL OR target = ?)"
                " ORDER BY seq DESC LIMIT ?",
                (before, before, target, target, limit),
            ).fetchall()
            return [
                AuditEntry(
                    datetime.fromisoformat(r[1]),
                    r[2],
                    r[3],
                    r[4],
                    AuditEntry.detail_from(r[5]),
                    r[0],
                )
                for r in rows
            ]

        return await self._reader.call(op)

    async def add_pause(self, pause: Pause) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            inserted = conn.execute(
                "INSERT INTO pauses (key, paused_at, actor) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO NOTHING",
                (pause.key, ts(pause.paused_at), pause.actor),
            )
            return inserted.rowcount == 1

        return await self._writer.call(op)

    async def remove_pause(self, key: str) -> Pause | None:
        def op(conn: sqlite3.Connection) -> Pause | None:
            row = conn.execute(
                "SELECT key, paused_at, actor FROM pauses WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM pauses WHERE key = ?", (key,))
            return Pause(row[0], datetime.fromisoformat(row[1]), row[2])

        return await self._writer.call(op)

    # Runs

    async def create_run(self, run: RunRecord) -> Admitted:
        return await self._writer.call(lambda conn: _insert_run(conn, run))

    async def get_run(self, run_id: str) -> RunRecord | None:
        def op(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
            return run_from(row) if row else None

        return await self._reader.call(op)

    async def list_runs(
        self, *, pipeline: str | None, limit: int, before: int | None
    ) -> list[RunRecord]:
        where: list[str] = []
        args: list[Any] = []
        if pipeline is not None:
            where.append("pipeline = ?")
            args.append(pipeline)
        if before is not None:
            where.append("seq < ?")
            args.append(before)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {RUN_COLUMNS} FROM runs {clause} ORDER BY seq DESC LIMIT ?"
        args.append(limit)

        def op(conn: sqlite3.Connection) -> list[RunRecord]:
            return [run_from(r) for r in conn.execute(sql, args).fetchall()]

        return await self._reader.call(op)

    async def runs_with_status(self, status: str, pipeline: str | None = None) -> list[RunRecord]:
        def op(conn: sqlite3.Connection) -> list[RunRecord]:
            if pipeline is None:
                rows = conn.execute(
                    f"SELECT {RUN_COLUMNS} FROM runs WHERE status = ? ORDER BY seq", (status,)
                )
            else:
                rows = conn.execute(
                    f"SELECT {RUN_COLUMNS} FROM runs WHERE status = ? AND pipeline = ?"
                    " ORDER BY seq",
                    (status, pipeline),
                )
            return [run_from(r) for r in rows.fetchall()]

        return await self._reader.call(op)

    async def runs_without_event(self, source_prefix: str, limit: int) -> list[RunRecord]:
        def op(conn: sqlite3.Connection) -> list[RunRecord]:
            rows = conn.execute(
                f"SELECT {RUN_COLUMNS} FROM runs r"
                " WHERE r.status IN ('succeeded', 'failed', 'cancelled') AND NOT EXISTS"
                " (SELECT 1 FROM events e WHERE e.source = ? || r.pipeline AND e.id = r.id)"
                " ORDER BY r.seq LIMIT ?",
                (source_prefix, limit),
            )
            return [run_from(r) for r in rows.fetchall()]

        return await self._reader.call(op)

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

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"UPDATE runs SET status = ?, {column} = coalesce({column}, ?),"
                " reason = coalesce(?, reason), owner = coalesce(?, owner) WHERE id = ?",
                (status, ts(at), reason, owner, run_id),
            )

        await self._writer.call(op)

    async def claim_run(self, run_id: str, old_owner: str | None, new_owner: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE runs SET owner = ? WHERE id = ? AND owner IS ?",
                (new_owner, run_id, old_owner),
            )
            return cursor.rowcount == 1

        return await self._writer.call(op)

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
        def op(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE runs SET status = 'running', version = ?, params = ?, reason = ?,"
                " owner = ?, started_at = ?, ended_at = NULL"
                " WHERE id = ? AND status IN ('succeeded', 'failed', 'cancelled')",
                (version, json.dumps(params), reason, owner, ts(at), run_id),
            )
            return cursor.rowcount == 1

        return await self._writer.call(op)

    # Tasks

    async def save_tasks(
        self,
        tasks: Sequence[TaskRecord],
        attempts: Sequence[AttemptRecord] = (),
        events: Sequence[TaskEvent] = (),
    ) -> list[Event]:
        task_rows = [task_values(t) for t in tasks]
        attempt_rows = [attempt_values(a) for a in attempts]
        event_rows = [
            (
                *event_values(e.event, e.at),
                None if e.evaluate else ts(e.at),
                None if e.evaluate else "[]",
            )
            for e in events
        ]

        def op(conn: sqlite3.Connection) -> list[Event]:
            conn.executemany(
                "INSERT INTO task_runs VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (run_id, task_id)"
                " DO UPDATE SET status = excluded.status, attempts = excluded.attempts,"
                " started_at = excluded.started_at, ended_at = excluded.ended_at,"
                " output = excluded.output, error = excluded.error",
                task_rows,
            )
            conn.executemany(
                f"INSERT INTO task_attempts ({ATTEMPT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (run_id, task_id, attempt) DO UPDATE SET status = excluded.status,"
                " heartbeat_at = excluded.heartbeat_at, ended_at = excluded.ended_at,"
                " error = excluded.error, host = coalesce(excluded.host, host),"
                " pid = coalesce(excluded.pid, pid)",
                attempt_rows,
            )
            new = []
            for task_event, row in zip(events, event_rows, strict=True):
                inserted = conn.execute(
                    "INSERT INTO events (id, source, type, subject, time, received_at, body,"
                    " evaluated_at, outcome) VALUES (?,?,?,?,?,?,?,?,?)"
                    " ON CONFLICT (source, id) DO NOTHING",
                    row,
                )
                if inserted.rowcount == 1 and task_event.evaluate:
                    new.append(task_event.event)
            return new

        return await self._writer.call(op)

    async def task_runs(self, run_id: str) -> list[TaskRecord]:
        def op(conn: sqlite3.Connection) -> list[TaskRecord]:
            rows = conn.execute(
                "SELECT run_id, task_id, status, attempts, started_at, ended_at, output, error"
                " FROM task_runs WHERE run_id = ? ORDER BY started_at IS NULL, started_at, rowid",
                (run_id,),
            ).fetchall()
            return [
                TaskRecord(
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    dt(r[4]),
                    dt(r[5]),
                    json.loads(r[6]) if r[6] is not None else None,
                    r[7],
                )
                for r in rows
            ]

        return await self._reader.call(op)

    async def attempts(self, run_id: str) -> list[AttemptRecord]:
        def op(conn: sqlite3.Connection) -> list[AttemptRecord]:
            rows = conn.execute(
                f"SELECT {ATTEMPT_COLUMNS} FROM task_attempts WHERE run_id = ?"
                " ORDER BY started_at, attempt",
                (run_id,),
            ).fetchall()
            return [attempt_from(r) for r in rows]

        return await self._reader.call(op)

    async def running_attempts(self) -> list[AttemptRecord]:
        def op(conn: sqlite3.Connection) -> list[AttemptRecord]:
            rows = conn.execute(
                f"SELECT {ATTEMPT_COLUMNS} FROM task_attempts WHERE status = 'running'"
            ).fetchall()
            return [attempt_from(r) for r in rows]

        return await self._reader.call(op)

    async def register_process(self, process: ProcessRecord) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO processes VALUES (?,?,?,?,?) ON CONFLICT (owner) DO UPDATE SET"
                " heartbeat_at = excluded.heartbeat_at",
                (
                    process.owner,
                    process.host,
                    process.pid,
                    ts(process.started_at),
                    ts(process.heartbeat_at),
                ),
            )

        await self._writer.call(op)

    async def processes(self) -> list[ProcessRecord]:
        def op(conn: sqlite3.Connection) -> list[ProcessRecord]:
            rows = conn.execute(
                "SELECT owner, host, pid, started_at, heartbeat_at FROM processes"
            ).fetchall()
            return [
                ProcessRecord(
                    r[0], r[1], r[2], datetime.fromisoformat(r[3]), datetime.fromisoformat(r[4])
                )
                for r in rows
            ]

        return await self._reader.call(op)

    async def heartbeat(self, owner: str, at: datetime) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE processes SET heartbeat_at = ? WHERE owner = ?", (ts(at), owner))
            conn.execute(
                "UPDATE task_attempts SET heartbeat_at = ? WHERE owner = ? AND status = 'running'",
                (ts(at), owner),
            )

        await self._writer.call(op)

    # Logs

    async def append_logs(self, lines: Sequence[LogLine]) -> None:
        rows = [(x.run_id, x.task_id, x.attempt, x.stream, ts(x.time), x.line) for x in lines]

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO logs (run_id, task_id, attempt, stream, time, line)"
                " VALUES (?,?,?,?,?,?)",
                rows,
            )

        await self._writer.call(op)

    async def logs(
        self, run_id: str, *, after: int, limit: int, task_id: str | None = None
    ) -> list[LogLine]:
        def op(conn: sqlite3.Connection) -> list[LogLine]:
            rows = conn.execute(
                "SELECT run_id, task_id, attempt, stream, time, line, seq FROM logs"
                " WHERE run_id = ? AND seq > ? AND (? IS NULL OR task_id = ?)"
                " ORDER BY seq LIMIT ?",
                (run_id, after, task_id, task_id, limit),
            ).fetchall()
            return [
                LogLine(r[0], r[1], r[2], r[3], datetime.fromisoformat(r[4]), r[5], r[6])
                for r in rows
            ]

        return await self._reader.call(op)

    # Retention

    async def run_pipelines(self) -> list[str]:
        def op(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute("SELECT DISTINCT pipeline FROM runs ORDER BY pipeline")
            return [row[0] for row in rows.fetchall()]

        return await self._reader.call(op)

    async def prune_runs(
        self, pipeline: str, *, ended_before: datetime | None, keep: int, limit: int
    ) -> tuple[int, int]:
        before = ts(ended_before.astimezone(UTC)) if ended_before is not None else None
        args = (pipeline, before, before, pipeline, keep, limit)

        def op(conn: sqlite3.Connection) -> tuple[int, int]:
            ids = [row[0] for row in conn.execute(_PRUNABLE_RUNS, args).fetchall()]
            if not ids:
                return 0, 0
            given = (json.dumps(ids),)
            lines = conn.execute(
                "DELETE FROM logs WHERE run_id IN (SELECT value FROM json_each(?))", given
            ).rowcount
            for table in ("task_attempts", "task_runs"):
                conn.execute(
                    f"DELETE FROM {table} WHERE run_id IN (SELECT value FROM json_each(?))", given
                )
            runs = conn.execute(
                "DELETE FROM runs WHERE id IN (SELECT value FROM json_each(?))", given
            ).rowcount
            return runs, lines

        return await self._writer.call(op)

    async def prune_events(
        self, before: datetime, *, keep: Collection[tuple[str, str]], limit: int
    ) -> int:
        args = (
            ts(before.astimezone(UTC)),
            run_event_source(""),
            json.dumps([list(ref) for ref in keep]),
            limit,
        )

        def op(conn: sqlite3.Connection) -> int:
            return conn.execute(_PRUNE_EVENTS, args).rowcount

        return await self._writer.call(op)

    # Backfills

    async def create_backfill(self, backfill: BackfillRow) -> tuple[BackfillRow, bool]:
        def op(conn: sqlite3.Connection) -> tuple[BackfillRow, bool]:
            cursor = conn.execute(
                f"INSERT INTO backfills ({BACKFILL_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (id) DO NOTHING",
                backfill.values(),
            )
            if cursor.rowcount == 1:
                return backfill, True
            row = conn.execute(
                f"SELECT {BACKFILL_COLUMNS} FROM backfills WHERE id = ?", (backfill.id,)
            ).fetchone()
            return BackfillRow.from_row(row), False

        return await self._writer.call(op)

    async def get_backfill(self, backfill_id: str) -> BackfillRow | None:
        def op(conn: sqlite3.Connection) -> BackfillRow | None:
            row = conn.execute(
                f"SELECT {BACKFILL_COLUMNS} FROM backfills WHERE id = ?", (backfill_id,)
            ).fetchone()
            return BackfillRow.from_row(row) if row else None

        return await self._reader.call(op)

    async def list_backfills(
        self, *, status: str | None = None, limit: int = 100
    ) -> list[BackfillRow]:
        where = "" if status is None else "WHERE status = ?"
        args: tuple[Any, ...] = (limit,) if status is None else (status, limit)
        sql = (
            f"SELECT {BACKFILL_COLUMNS} FROM backfills {where} ORDER BY created_at DESC, id LIMIT ?"
        )

        def op(conn: sqlite3.Connection) -> list[BackfillRow]:
            return [BackfillRow.from_row(r) for r in conn.execute(sql, args).fetchall()]

        return await self._reader.call(op)

    async def set_backfill_status(
        self, backfill_id: str, status: str, *, at: datetime | None, reason: str | None = None
    ) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE backfills SET status = ?, ended_at = ?, reason = ? WHERE id = ?",
                (status, ts(at.astimezone(UTC)) if at else None, reason, backfill_id),
            )

        await self._writer.call(op)

    async def runs_with_key_prefix(self, pipeline: str, prefix: str) -> list[RunRecord]:
        def op(conn: sqlite3.Connection) -> list[RunRecord]:
            rows = conn.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE pipeline = ?"
                " AND substr(run_key, 1, length(?)) = ? ORDER BY seq",
                (pipeline, prefix, prefix),
            )
            return [run_from(r) for r in rows.fetchall()]

        return await self._reader.call(op)

    # Lineage

    async def record_assets(self, uses: Sequence[AssetUse]) -> None:
        rows = [use.values() for use in uses]

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(
                f"INSERT OR IGNORE INTO lineage ({ASSET_COLUMNS}) VALUES (?,?,?,?,?,?,?)", rows
            )

        if rows:
            await self._writer.call(op)

    async def list_assets(self, *, limit: int) -> list[AssetSummary]:
        def op(conn: sqlite3.Connection) -> list[AssetSummary]:
            groups = conn.execute(ASSET_GROUPS_SQL).fetchall()
            seqs = last_seqs(groups)
            last: dict[int, AssetUse] = {}
            for start in range(0, len(seqs), 500):
                chunk = seqs[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for row in conn.execute(
                    f"SELECT seq, {ASSET_COLUMNS} FROM lineage WHERE seq IN ({marks})", chunk
                ):
                    last[row["seq"]] = AssetUse.from_row(row)
            return summarize(groups, last)[:limit]

        return await self._reader.call(op)

    async def asset_history(
        self, asset: str, *, limit: int, before: int | None = None
    ) -> list[tuple[int, AssetUse]]:
        sql = f"SELECT seq, {ASSET_COLUMNS} FROM lineage WHERE asset = ?"
        args: list[Any] = [asset]
        if before is not None:
            sql += " AND seq < ?"
            args.append(before)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(limit)

        def op(conn: sqlite3.Connection) -> list[tuple[int, AssetUse]]:
            rows = conn.execute(sql, args).fetchall()
            return [(row["seq"], AssetUse.from_row(row)) for row in rows]

        return await self._reader.call(op)

    # Alert incidents

    async def save_incidents(self, incidents: Sequence[Mapping[str, Any]]) -> None:
        rows = [incident_values(incident) for incident in incidents]

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(
                f"INSERT OR REPLACE INTO incidents ({INCIDENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                rows,
            )

        if rows:
            await self._writer.call(op)

    async def incidents(self, *, include_closed: bool, limit: int) -> list[dict[str, Any]]:
        where = "" if include_closed else "WHERE status = 'open'"
        sql = f"SELECT state FROM incidents {where} ORDER BY opened_at DESC, id LIMIT ?"

        def op(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            return [json.loads(row[0]) for row in conn.execute(sql, (limit,)).fetchall()]

        return await self._reader.call(op)


# The newest ``keep`` final runs of the pipeline stay whatever their age (a run that never
# recorded its end counts from its creation).
_PRUNABLE_RUNS = """
SELECT id FROM runs
WHERE pipeline = ? AND status IN ('succeeded', 'failed', 'cancelled')
  AND (? IS NULL OR coalesce(ended_at, created_at) < ?)
  AND seq NOT IN (
    SELECT seq FROM runs WHERE pipeline = ? AND status IN ('succeeded', 'failed', 'cancelled')
    ORDER BY seq DESC LIMIT ?
  )
ORDER BY seq LIMIT ?
"""
# A stored run stays explainable: the events it names and its own end event stay (a run
# without its end event would make it again at the next start).
_PRUNE_EVENTS = """
DELETE FROM events WHERE seq IN (
  SELECT e.seq FROM events e
  WHERE e.received_at < ? AND e.evaluated_at IS NOT NULL
    AND e.id NOT IN (
      SELECT j.value FROM runs r, json_each(r.event_ids) j WHERE j.value IS NOT NULL
    )
    AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = e.id AND e.source = ? || r.pipeline)
    AND (e.source, e.id) NOT IN (
      SELECT json_extract(k.value, '$[0]'), json_extract(k.value, '$[1]') FROM json_each(?) k
    )
  ORDER BY e.received_at, e.seq LIMIT ?
)
"""
