"""PostgreSQL for ``on: table``: connecting, finding the table's columns, reading rows as JSON."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

from reactor.errors import ConnectorError

if TYPE_CHECKING:
    import asyncpg

__all__ = [
    "TableShape",
    "connect",
    "db_errors",
    "describe",
    "json_value",
    "quote",
    "redact",
    "url_problem",
]


@cache
def db_errors() -> tuple[type[BaseException], ...]:
    """What asyncpg and the socket raise when the database cannot be used: reported, then
    retried. A function: asyncpg (about 10 MB) is imported only when a table trigger runs."""
    import asyncpg

    return (
        OSError,
        TimeoutError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        # A malformed URL (a port that is not a number, an unknown option) from asyncpg.
        ValueError,
    )


WatermarkKind = Literal["time", "number"]

#: Column types a watermark may have, by the kind of overlap they take.
_WATERMARK_TYPES: dict[str, WatermarkKind] = {
    "timestamptz": "time",
    "timestamp": "time",
    "date": "time",
    "int2": "number",
    "int4": "number",
    "int8": "number",
    "numeric": "number",
    "float4": "number",
    "float8": "number",
}


def redact(url: str) -> str:
    """``url`` with its password replaced, for messages and health."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def quote(identifier: str) -> str:
    """A PostgreSQL identifier, quoted, so case and odd characters survive."""
    return '"' + identifier.replace('"', '""') + '"'


def url_problem(url: str) -> str | None:
    """What is wrong with a PostgreSQL URL's shape, or ``None``."""
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in ("postgresql", "postgres"):
        return "it is not a postgresql:// URL"
    try:
        urlsplit(url).port  # noqa: B018  (raises for a port that is not a number)
    except ValueError as exc:
        return str(exc).lower()
    return None


async def connect(url: str, *, connect_timeout: float = 10.0) -> asyncpg.Connection:
    """A connection whose json/jsonb columns come back as Python values, not text."""
    problem = url_problem(url)
    if problem is not None:
        raise ConnectorError(f"cannot connect to {redact(url)}: {problem}")
    try:
        import asyncpg

        connection = await asyncpg.connect(
            url,
            timeout=connect_timeout,
            server_settings={"application_name": "reactor table sensor"},
        )
    except db_errors() as exc:
        raise ConnectorError(f"cannot connect to {redact(url)}: {_reason(exc)}") from exc
    try:
        for name in ("json", "jsonb"):
            await connection.set_type_codec(
                name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )
    except BaseException:
        connection.terminate()
        raise
    return connection


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, TimeoutError) or not text:
        return f"{type(exc).__name__} {text}".strip()
    return text


@dataclass(frozen=True)
class TableShape:
    """What the sensor needs to know of a table: quoted names and the watermark's type."""

    #: ``schema.name`` as events show it.
    name: str
    #: ``"schema"."name"`` for SQL.
    sql_name: str
    watermark: str
    watermark_type: str
    watermark_kind: WatermarkKind
    key: tuple[str, ...]

    def order_by(self) -> str:
        return ", ".join(quote(c) for c in (self.watermark, *self.key))


_FIND_TABLE = """
SELECT c.oid, n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass($1)
"""

_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, t.typname
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

_PRIMARY_KEY = """
SELECT a.attname
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = $1 AND i.indisprimary
ORDER BY k.n
"""


def _column(wanted: str, columns: Mapping[str, Any], table: str, what: str) -> str:
    """The column ``wanted`` names: exact, or as PostgreSQL folds an unquoted name."""
    for candidate in (wanted, wanted.lower()):
        if candidate in columns:
            return candidate
    known = ", ".join(columns) or "none"
    raise ConnectorError(f"{what} {wanted!r} is not a column of {table} (columns: {known})")


async def describe(
    connection: asyncpg.Connection, table: str, watermark: str, key: Sequence[str] | None
) -> TableShape:
    """Look ``table`` up in the catalog; a clear ``ConnectorError`` for whatever is missing."""
    found = await connection.fetchrow(_FIND_TABLE, table)
    if found is None:
        current = await connection.fetchval("SELECT current_database()")
        raise ConnectorError(f"table {table} does not exist in database {current}")
    oid, schema, relname = found
    name = f"{schema}.{relname}"
    columns = {row["attname"]: row for row in await connection.fetch(_COLUMNS, oid)}
    wm = _column(watermark, columns, name, "watermark column")
    typname = columns[wm]["typname"]
    kind = _WATERMARK_TYPES.get(typname)
    if kind is None:
        raise ConnectorError(
            f"watermark column {wm!r} of {name} has type {columns[wm]['type']}; it must grow"
            " with each change: a timestamp, a date or a number (such as a serial id)"
        )
    if key:
        keys = tuple(_column(k, columns, name, "key column") for k in key)
    else:
        keys = tuple(row["attname"] for row in await connection.fetch(_PRIMARY_KEY, oid))
        if not keys:
            raise ConnectorError(
                f"{name} has no primary key; name the columns that identify a row with key:"
            )
    return TableShape(
        name=name,
        sql_name=f"{quote(schema)}.{quote(relname)}",
        watermark=wm,
        watermark_type=columns[wm]["type"],
        watermark_kind=kind,
        key=keys,
    )


def json_value(value: Any) -> Any:
    """A column value as JSON: times as ISO 8601, ``numeric`` as an exact string.

    ``bytea`` becomes base64 text, an ``interval`` its seconds, a ``uuid`` its text,
    json/jsonb what they hold; anything else (ranges, network addresses) its text.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return str(value)
