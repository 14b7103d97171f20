"""The one schema history both stores apply, oldest first; never edit a released step."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIGRATIONS", "Migration", "render"]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


# ``{serial}`` is the auto-increment primary key of the dialect.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "events, runs, tasks, attempts, logs",
        (
            """CREATE TABLE events (
                seq {serial},
                id TEXT NOT NULL,
                source TEXT NOT NULL,
                type TEXT NOT NULL,
                subject TEXT,
                time TEXT NOT NULL,
                received_at TEXT NOT NULL,
                body TEXT NOT NULL,
                evaluated_at TEXT,
                outcome TEXT,
                UNIQUE (source, id)
            )""",
            "CREATE INDEX events_id ON events (id)",
            "CREATE INDEX events_unevaluated ON events (seq) WHERE evaluated_at IS NULL",
            """CREATE TABLE pipeline_versions (
                pipeline TEXT NOT NULL,
                version TEXT NOT NULL,
                path TEXT NOT NULL,
                text TEXT NOT NULL,
                created_at TEXT NOT NULL,
                PRIMARY KEY (pipeline, version)
            )""",
            """CREATE TABLE runs (
                seq {serial},
                id TEXT NOT NULL UNIQUE,
                run_key TEXT NOT NULL UNIQUE,
                pipeline TEXT NOT NULL,
                version TEXT NOT NULL,
                status TEXT NOT NULL,
                params TEXT NOT NULL,
                trigger TEXT,
                event_ids TEXT NOT NULL,
                created_at TEXT NOT NULL,
                started_at TEXT,
                ended_at TEXT,
                reason TEXT,
                owner TEXT
            )""",
            "CREATE INDEX runs_pipeline ON runs (pipeline, seq)",
            "CREATE INDEX runs_status ON runs (status, pipeline, seq)",
            """CREATE TABLE task_runs (
                run_id TEXT NOT NULL,
                task_id TEXT NOT NULL,
                status TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                started_at TEXT,
                ended_at TEXT,
                output TEXT,
                error TEXT,
                PRIMARY KEY (run_id, task_id)
            )""",
            """CREATE TABLE task_attempts (
                run_id TEXT NOT NULL,
                task_id TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                status TEXT NOT NULL,
                owner TEXT NOT NULL,
                started_at TEXT NOT NULL,
                heartbeat_at TEXT NOT NULL,
                ended_at TEXT,
                error TEXT,
                host TEXT,
                pid INTEGER,
                PRIMARY KEY (run_id, task_id, attempt)
            )""",
            "CREATE INDEX task_attempts_owner ON task_attempts (owner, status)",
            """CREATE TABLE logs (
                seq {serial},
                run_id TEXT NOT NULL,
                task_id TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                stream TEXT NOT NULL,
                time TEXT NOT NULL,
                line TEXT NOT NULL
            )""",
            "CREATE INDEX logs_run ON logs (run_id, seq)",
            """CREATE TABLE processes (
                owner TEXT PRIMARY KEY,
                host TEXT NOT NULL,
                pid INTEGER NOT NULL,
                started_at TEXT NOT NULL,
                heartbeat_at TEXT NOT NULL
            )""",
            """CREATE TABLE audit (
                seq {serial},
                time TEXT NOT NULL,
                actor TEXT NOT NULL,
                action TEXT NOT NULL,
                target TEXT NOT NULL,
                detail TEXT
            )""",
        ),
    ),
    Migration(
        2,
        "sensor cursors and dead letters",
        (
            """CREATE TABLE sensor_cursors (
                trigger_key TEXT PRIMARY KEY,
                cursor TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            """CREATE TABLE dead_letters (
                seq {serial},
                trigger_key TEXT NOT NULL,
                ref TEXT,
                reason TEXT NOT NULL,
                payload TEXT NOT NULL,
                time TEXT NOT NULL
            )""",
            "CREATE INDEX dead_letters_trigger ON dead_letters (trigger_key, seq)",
        ),
    ),
    Migration(
        3,
        "trigger windows: open batches, correlation groups, dedupe keys, rate limits",
        (
            # ``state`` NULL: the window closed (kept for its version until pruned).
            """CREATE TABLE trigger_windows (
                trigger_key TEXT NOT NULL,
                window_key TEXT NOT NULL,
                version BIGINT NOT NULL,
                state TEXT,
                deadline TEXT,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (trigger_key, window_key)
            )""",
        ),
    ),
    Migration(
        4,
        "events by the time they were received (reactor explain --pipeline P --since D)",
        ("CREATE INDEX events_received ON events (received_at, seq)",),
    ),
    Migration(
        5,
        "paused pipelines and triggers (reactor pause / resume)",
        (
            # ``key``: a pipeline name, or a trigger key ``pipeline/trigger-id``.
            """CREATE TABLE pauses (
                key TEXT PRIMARY KEY,
                paused_at TEXT NOT NULL,
                actor TEXT NOT NULL
            )""",
        ),
    ),
    Migration(
        6,
        "backfills: one run per logical time of a range, run keys PIPELINE/backfill:ID/TIME",
        (
            """CREATE TABLE backfills (
                id TEXT PRIMARY KEY,
                pipeline TEXT NOT NULL,
                from_time TEXT NOT NULL,
                to_time TEXT NOT NULL,
                step DOUBLE PRECISION,
                params TEXT NOT NULL,
                concurrency INTEGER NOT NULL,
                total INTEGER NOT NULL,
                status TEXT NOT NULL,
                created_at TEXT NOT NULL,
                ended_at TEXT,
                reason TEXT,
                actor TEXT NOT NULL
            )""",
            "CREATE INDEX backfills_status ON backfills (status, created_at)",
        ),
    ),
    Migration(
        7,
        "alert incidents (open ones survive a restart; what was sent is not sent again)",
        (
            # ``state``: the incident as JSON (reactor/alerting/fatigue.py Incident).
            """CREATE TABLE incidents (
                id TEXT PRIMARY KEY,
                route TEXT NOT NULL,
                pipeline TEXT NOT NULL,
                kind TEXT NOT NULL,
                status TEXT NOT NULL,
                opened_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                closed_at TEXT,
                state TEXT NOT NULL
            )""",
            "CREATE INDEX incidents_status ON incidents (status, opened_at)",
        ),
    ),
    Migration(
        8,
        "lineage: the assets each successful task attempt read and wrote",
        (
            # ``direction``: read | write; one row per attempt and asset (idempotent).
            """CREATE TABLE lineage (
                seq {serial},
                asset TEXT NOT NULL,
                direction TEXT NOT NULL,
                run_id TEXT NOT NULL,
                task_id TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                pipeline TEXT NOT NULL,
                at TEXT NOT NULL,
                UNIQUE (run_id, task_id, attempt, direction, asset)
            )""",
            "CREATE INDEX lineage_asset ON lineage (asset, seq)",
        ),
    ),
)

_DIALECTS = {
    "sqlite": {"serial": "INTEGER PRIMARY KEY AUTOINCREMENT"},
    "postgresql": {"serial": "BIGSERIAL PRIMARY KEY"},
}


def render(statement: str, dialect: str) -> str:
    return statement.format(**_DIALECTS[dialect])


LATEST = MIGRATIONS[-1].version
