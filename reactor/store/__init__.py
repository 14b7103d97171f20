"""Durable state: the Store protocol and the store behind a ``--store`` URL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from reactor.errors import StoreError
from reactor.store.base import Admitted, Store, StoredEvent, TaskEvent
from reactor.store.records import AttemptRecord, LogLine, RunRecord, TaskRecord
from reactor.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from reactor.store.postgres import PostgresStore

__all__ = [
    "Admitted",
    "AttemptRecord",
    "LogLine",
    "PostgresStore",
    "RunRecord",
    "SqliteStore",
    "Store",
    "StoredEvent",
    "TaskEvent",
    "TaskRecord",
    "open_store",
]


def __getattr__(name: str) -> Any:
    # asyncpg costs ~10 MB of memory: imported only when PostgreSQL is used.
    if name == "PostgresStore":
        from reactor.store.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(url: str, *, base_dir: Path | None = None) -> Store:
    """The store for ``url``: ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or
    ``postgresql://USER[:PASSWORD]@HOST:PORT/DB`` (``postgres://`` too)."""
    if url.startswith("sqlite:///"):
        raw = url.removeprefix("sqlite:///")
        if raw == ":memory:":
            raise StoreError("sqlite:///:memory: cannot be shared by the store's threads")
        path = Path(raw)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return SqliteStore(path)
    from reactor.store.postgres import PostgresStore, redact_url

    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url)
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise StoreError(
        f"unsupported store URL {redact_url(url)!r} (scheme {scheme!r});"
        " use sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
    )
