"""``on: table``: a run for each changed row of a PostgreSQL table, or each NOTIFY on a channel."""

from __future__ import annotations

import json
import math
import re
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import anyio
from anyio.abc import TaskStatus
from pydantic import Field, field_validator, model_validator

from connectors.table_pg import (
    TableShape,
    connect,
    db_errors,
    describe,
    json_value,
    quote,
    redact,
    url_problem,
)
from reactor.durations import Duration, format_duration, parse_duration
from reactor.errors import ConnectorError
from reactor.events import Event, content_id
from reactor.sensors import SensorContext, sensor_source

if TYPE_CHECKING:
    import asyncpg
from reactor.specs import EventFilter, TriggerSpec

__all__ = [
    "TABLE_BATCH",
    "TABLE_CHANGED",
    "TABLE_NOTIFIED",
    "TableSensor",
    "TableTriggerSpec",
    "row_event_id",
]

TABLE_CHANGED = "reactor.table.changed"
TABLE_BATCH = "reactor.table.batch"
TABLE_NOTIFIED = "reactor.table.notified"

#: Overlap when none is written: for a time column, and for a number column (ids).
DEFAULT_TIME_OVERLAP = 30.0
DEFAULT_NUMBER_OVERLAP = 1000

#: Without a new row for this long, a polling sensor closes its connection between polls.
IDLE_CLOSE = 60.0

#: Reconnect delays after a failure: doubling from the first to the last.
BACKOFF = (1.0, 30.0)

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_$]*"
_TABLE = re.compile(rf"^{_IDENTIFIER}(\.{_IDENTIFIER})?$")
_COLUMN = re.compile(rf"^{_IDENTIFIER}$")
_POSTGRES_SCHEMES = ("postgresql", "postgres")


def _identifier(value: str, what: str, pattern: re.Pattern[str] = _COLUMN) -> str:
    if not pattern.match(value):
        raise ValueError(
            f"{what} {value!r} is not a plain PostgreSQL name (letters, digits, _ and $,"
            " not starting with a digit)"
        )
    return value


class TableTriggerSpec(TriggerSpec):
    """``on: table``: ``connection``, ``table``, and ``watermark:`` and/or ``notify:``."""

    on: Literal["table"]
    connection: str = Field(min_length=1)
    table: str | None = None
    watermark: str | None = None
    key: list[str] | None = Field(None, min_length=1)
    overlap: int | float | str | None = None
    notify: str | None = None
    interval: Duration = 5.0
    per: Literal["row", "batch"] = "row"
    max_rows: int = Field(1000, ge=1, le=100_000)
    from_: Literal["latest", "earliest"] = Field("latest", alias="from")

    has_sensor: ClassVar[bool] = True

    @field_validator("connection")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        scheme, sep, _ = value.partition("://")
        if sep and scheme.lower() not in _POSTGRES_SCHEMES:
            raise ValueError(
                f"{scheme}:// is not a PostgreSQL URL; write postgresql://USER@HOST:PORT/DATABASE"
                " or a name under connections: in reactor.yaml"
            )
        problem = url_problem(value) if sep else None
        if problem is not None:
            raise ValueError(f"{redact(value)}: {problem}")
        return value

    @field_validator("table")
    @classmethod
    def _table_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _identifier(value, "table", _TABLE)

    @field_validator("watermark")
    @classmethod
    def _watermark_name(cls, value: str | None) -> str | None:
        return None if value is None else _identifier(value, "watermark column")

    @field_validator("key", mode="before")
    @classmethod
    def _single_key(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("key")
    @classmethod
    def _key_names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        return [_identifier(name, "key column") for name in value]

    @field_validator("notify")
    @classmethod
    def _channel_name(cls, value: str | None) -> str | None:
        return None if value is None else _identifier(value, "channel")

    @field_validator("overlap", mode="before")
    @classmethod
    def _overlap_value(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            # pydantic turns ValueError (not TypeError) into a validation error.
            raise ValueError(  # noqa: TRY004
                "overlap: write a duration (30s, 5m) for a time watermark or a number of ids"
            )
        parse_duration(value)  # says what is wrong with text like "soon" or a negative number
        return value

    @field_validator("interval")
    @classmethod
    def _interval_positive(cls, value: float) -> float:
        # An interval of 0 would query the database in a busy loop.
        if value <= 0:
            raise ValueError("interval: must be longer than 0s")
        return value

    @model_validator(mode="after")
    def _a_source(self) -> TableTriggerSpec:
        if self.watermark is None and self.notify is None:
            raise ValueError(
                "a table trigger needs 'watermark:' (poll a column that grows), 'notify:'"
                " (LISTEN on a channel), or both (NOTIFY wakes the poll, nothing is lost)"
            )
        if self.watermark is not None and self.table is None:
            raise ValueError("watermark: needs 'table:' (the table to poll, schema.name)")
        if self.watermark is None:
            given = [f"'{name}:'" for name in ("key", "overlap") if getattr(self, name) is not None]
            if given:
                raise ValueError(f"{' and '.join(given)} only go with 'watermark:'")
            if self.per == "batch":
                raise ValueError(
                    "per: batch needs 'watermark:'; a notification is always one event"
                )
        return self

    @property
    def event_type(self) -> str:
        if self.watermark is None:
            return TABLE_NOTIFIED
        return TABLE_BATCH if self.per == "batch" else TABLE_CHANGED

    def event_filter(self, trigger_key: str) -> EventFilter:
        return EventFilter(self.event_type, sensor_source(trigger_key))


def row_event_id(table: str, key: list[Any], watermark: Any) -> str:
    """A row's event id: its table, primary key and watermark value (so it triggers once)."""
    return content_id(
        "table-row", table, json.dumps(key, sort_keys=True), json.dumps(watermark, sort_keys=True)
    )


def _text(value: Any) -> str:
    """A JSON watermark as text PostgreSQL casts back to the column's type."""
    return value if isinstance(value, str) else json.dumps(value)


@dataclass
class _Position:
    """Where the poll is: the watermark, the rows read in the overlap window, the start floor."""

    table: str
    column: str
    #: The highest watermark read (JSON), or ``None`` before the first row.
    watermark: Any = None
    #: Rows with a watermark at or below this were there before the sensor first started
    #: (``from: latest``): never events.
    floor: Any = None
    #: Event ids of rows read whose watermark is inside the overlap window.
    seen: dict[str, Any] = field(default_factory=dict)

    def to_json(self, *, with_seen: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "table": self.table,
            "column": self.column,
            "watermark": self.watermark,
            "floor": self.floor,
        }
        if with_seen:
            out["seen"] = list(self.seen)
        return out


class TableSensor:
    """Polls a table by its watermark column and/or LISTENs on a channel, until cancelled.

    Row events have ids derived from (table, key, watermark value), so a row read
    twice (the overlap window, a restart) is a duplicate the store drops; the
    cursor is stored in the same transaction as the events it follows.
    """

    def __init__(self, spec: TableTriggerSpec) -> None:
        self.spec = spec
        self._url = ""
        self._shape: TableShape | None = None
        self._position: _Position | None = None
        self._connection: asyncpg.Connection | None = None
        self._wake = anyio.Event()
        self._lost = False
        self._notifications: deque[str] = deque()
        self._last_new = 0.0

    # Running

    async def run(self, ctx: SensorContext, *, task_status: TaskStatus[None]) -> None:
        task_status.started()
        self._url = ctx.connection(self.spec.connection)
        scheme = self._url.partition("://")[0].lower()
        if scheme not in _POSTGRES_SCHEMES:
            raise ConnectorError(
                f"connection {self.spec.connection!r} is {scheme}://...; on: table needs a"
                " postgresql:// URL"
            )
        delay = BACKOFF[0]
        self._last_new = ctx.clock.monotonic()
        try:
            while True:
                try:
                    if self._connection is None:
                        await self._open(ctx)
                        delay = BACKOFF[0]
                    await self._step(ctx)
                    if self._idle(ctx):
                        await self._close()
                    await self._wait(ctx, self.spec.interval)
                except ConnectorError as exc:
                    await self._close()
                    ctx.set_health("failing", f"{exc}; retrying in {format_duration(delay)}")
                    await ctx.clock.sleep(delay)
                    delay = min(delay * 2, BACKOFF[1])
        finally:
            with anyio.CancelScope(shield=True):
                await self._close()

    def _failure(self, doing: str, exc: BaseException) -> ConnectorError:
        reason = str(exc).strip() or type(exc).__name__
        return ConnectorError(f"{doing} on {redact(self._url)} failed: {reason}")

    async def _open(self, ctx: SensorContext) -> None:
        self._lost = False
        connection = await connect(self._url)
        self._connection = connection
        connection.add_termination_listener(self._on_terminated)
        try:
            if self.spec.watermark is not None:
                assert self.spec.table is not None
                self._shape = await describe(
                    connection, self.spec.table, self.spec.watermark, self.spec.key
                )
                self._overlap(self._shape)  # a bad overlap shows before any row is read
                if self._position is None:
                    await self._load_position(ctx, connection, self._shape)
            if self.spec.notify is not None:
                await connection.add_listener(self.spec.notify, self._on_notify)
        except db_errors() as exc:
            raise self._failure("reading the catalog", exc) from exc
        ctx.set_health("watching", self._describe())
        # Whatever was sent while no one listened: the first poll reads it.
        self._wake.set()

    def _describe(self) -> str:
        parts = []
        if self._shape is not None:
            parts.append(
                f"polling {self._shape.name} by {self._shape.watermark}"
                f" every {format_duration(self.spec.interval)}"
            )
        if self.spec.notify is not None:
            parts.append(f"listening on channel {self.spec.notify}")
        return ", ".join(parts)

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        # Our own close is no loss to report (nor a reason to reconnect at once).
        connection.remove_termination_listener(self._on_terminated)
        if connection.is_closed():
            return
        try:
            with anyio.fail_after(5):
                await connection.close()
        except db_errors():  # TimeoutError among them
            connection.terminate()

    def _idle(self, ctx: SensorContext) -> bool:
        """Only a polling sensor lets go of its connection: LISTEN needs one held open."""
        return (
            self.spec.notify is None
            and self._connection is not None
            and ctx.clock.monotonic() - self._last_new >= IDLE_CLOSE
        )

    def _on_terminated(self, _connection: object) -> None:
        self._lost = True
        self._wake.set()

    def _on_notify(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        if self.spec.watermark is None:
            self._notifications.append(payload)
        self._wake.set()

    async def _wait(self, ctx: SensorContext, seconds: float) -> None:
        """Sleep ``seconds`` on the service clock, or less if a notification wakes us."""
        if not self._wake.is_set():
            async with anyio.create_task_group() as tg:

                async def sleeper() -> None:
                    await ctx.clock.sleep(seconds)
                    tg.cancel_scope.cancel()

                async def waker() -> None:
                    await self._wake.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(waker)
                tg.start_soon(sleeper)

    async def _step(self, ctx: SensorContext) -> None:
        connection = self._connection
        assert connection is not None
        if self._lost or connection.is_closed():
            raise ConnectorError(f"lost the connection to {redact(self._url)}")
        self._wake = anyio.Event()
        if self.spec.watermark is None:
            await self._emit_notifications(ctx, connection)
        else:
            try:
                await self._poll(ctx, connection)
            except db_errors() as exc:
                raise self._failure(f"reading {self.spec.table}", exc) from exc
        if ctx.health.state != "watching":
            ctx.set_health("watching", self._describe())

    # NOTIFY alone: each payload is an event

    async def _emit_notifications(self, ctx: SensorContext, connection: asyncpg.Connection) -> None:
        if not self._notifications:
            try:
                # Nothing came: make sure the connection still listens.
                await connection.fetchval("SELECT 1")
            except db_errors() as exc:
                raise self._failure("checking the listening connection", exc) from exc
            return
        events = []
        while self._notifications:
            payload = self._notifications.popleft()
            events.append(
                Event(
                    type=TABLE_NOTIFIED,
                    source=ctx.source,
                    subject=self.spec.notify,
                    data=_payload(payload),
                )
            )
        await ctx.emit_many(events)

    # Polling by the watermark

    def _overlap(self, shape: TableShape) -> float | Decimal:
        value = self.spec.overlap
        if shape.watermark_kind == "time":
            return DEFAULT_TIME_OVERLAP if value is None else parse_duration(value)
        if value is None:
            return Decimal(DEFAULT_NUMBER_OVERLAP)
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise ConnectorError(
                f"overlap: {value!r} is a duration, but watermark column {shape.watermark!r}"
                f" of {shape.name} is a number ({shape.watermark_type}); write how many"
                " ids to read again, like overlap: 1000"
            ) from None
        if number != number.to_integral_value():
            if shape.watermark_type in ("smallint", "integer", "bigint"):
                raise ConnectorError(
                    f"overlap: {value!r} must be a whole number of ids for"
                    f" {shape.watermark_type} column {shape.watermark!r}"
                )
            return number
        # Written as 200.0 or 200, cast as "200": an integer column takes no decimal point.
        return Decimal(int(number))

    def _order_value(self, shape: TableShape, value: Any) -> Any:
        """A JSON watermark as a value that compares like PostgreSQL compares the column."""
        if shape.watermark_kind == "number":
            return Decimal(str(value))
        if shape.watermark_type == "date":
            return date.fromisoformat(value)
        return datetime.fromisoformat(value)

    def _low(self, shape: TableShape, watermark: Any) -> Any:
        overlap = self._overlap(shape)
        value = self._order_value(shape, watermark)
        if shape.watermark_kind == "number":
            return value - Decimal(overlap)
        return value - timedelta(seconds=float(overlap))

    async def _load_position(
        self, ctx: SensorContext, connection: asyncpg.Connection, shape: TableShape
    ) -> None:
        saved = await ctx.load_cursor()
        if (
            isinstance(saved, dict)
            and saved.get("table") == shape.name
            and saved.get("column") == shape.watermark
        ):
            self._position = _Position(
                shape.name,
                shape.watermark,
                saved.get("watermark"),
                saved.get("floor"),
                dict.fromkeys(saved.get("seen") or []),
            )
            ctx.health.cursor = self._health_cursor()
            return
        position = _Position(shape.name, shape.watermark)
        if self.spec.from_ == "latest":
            newest = await connection.fetchval(
                f"SELECT max({quote(shape.watermark)}) FROM {shape.sql_name}"
            )
            position.watermark = position.floor = json_value(newest)
        await ctx.save_cursor(position.to_json(with_seen=self.spec.per == "batch"))
        self._position = position
        ctx.health.cursor = self._health_cursor()

    def _health_cursor(self) -> dict[str, Any]:
        assert self._position is not None
        return {"watermark": self._position.watermark, "seen": len(self._position.seen)}

    def _page_query(
        self, shape: TableShape, start: Any, floor: Any, after: tuple[Any, ...] | None
    ) -> tuple[str, list[Any]]:
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        column, kind = quote(shape.watermark), shape.watermark_type
        where = []
        if start is not None:
            overlap = self._overlap(shape)
            if shape.watermark_kind == "time":
                low = f"make_interval(secs => {arg(float(overlap))}::float8)"
            else:
                low = f"{arg(str(overlap))}::text::{kind}"
            where.append(f"{column} >= ({arg(_text(start))}::text::{kind} - {low})")
        if floor is not None:
            where.append(f"{column} > {arg(_text(floor))}::text::{kind}")
        if after is not None:
            values = ", ".join(arg(value) for value in after)
            where.append(f"({shape.order_by()}) > ({values})")
        sql = (
            f"SELECT * FROM {shape.sql_name} WHERE {' AND '.join(where) or 'true'}"
            f" ORDER BY {shape.order_by()} LIMIT {arg(self.spec.max_rows)}"
        )
        return sql, args

    async def _poll(self, ctx: SensorContext, connection: asyncpg.Connection) -> None:
        """Read every row from the cursor minus the overlap, page by page; emit the unseen."""
        shape, position = self._shape, self._position
        assert shape is not None and position is not None
        start = position.watermark
        after: tuple[Any, ...] | None = None
        # Rows read in this poll whose watermark may fall in the next poll's window.
        window: dict[str, Any] = {}
        new = 0
        while True:
            sql, args = self._page_query(shape, start, position.floor, after)
            records = await connection.fetch(sql, *args)
            fresh: list[tuple[str, dict[str, Any]]] = []
            for record in records:
                row = {name: json_value(value) for name, value in record.items()}
                event_id = row_event_id(
                    shape.name, [row[k] for k in shape.key], row[shape.watermark]
                )
                window[event_id] = self._order_value(shape, row[shape.watermark])
                if event_id not in position.seen:
                    fresh.append((event_id, row))
            if records:
                last = records[-1]
                after = (last[shape.watermark], *(last[k] for k in shape.key))
                newest = json_value(last[shape.watermark])
                if position.watermark is None or self._order_value(
                    shape, newest
                ) > self._order_value(shape, position.watermark):
                    position.watermark = newest
                # Rows too old for any later window are forgotten as the pages go by.
                low = self._low(shape, position.watermark)
                window = {k: v for k, v in window.items() if v >= low}
            if fresh:
                await self._emit_rows(ctx, shape, position, fresh)
                new += len(fresh)
            if len(records) < self.spec.max_rows:
                break
        if position.watermark is not None:
            low = self._low(shape, position.watermark)
            position.seen = {k: None for k, v in window.items() if v >= low}
        ctx.health.lag = 0
        ctx.health.cursor = self._health_cursor()
        if new:
            self._last_new = ctx.clock.monotonic()

    async def _emit_rows(
        self,
        ctx: SensorContext,
        shape: TableShape,
        position: _Position,
        fresh: list[tuple[str, dict[str, Any]]],
    ) -> None:
        batch = self.spec.per == "batch"
        for event_id, _ in fresh:
            position.seen[event_id] = None
        if batch:
            events = [
                Event(
                    type=TABLE_BATCH,
                    source=ctx.source,
                    id=content_id("table-batch", *(event_id for event_id, _ in fresh)),
                    subject=shape.name,
                    data={"table": shape.name, "rows": [row for _, row in fresh]},
                )
            ]
        else:
            events = [
                Event(
                    type=TABLE_CHANGED,
                    source=ctx.source,
                    id=event_id,
                    subject=shape.name,
                    data={"table": shape.name, "row": row},
                )
                for event_id, row in fresh
            ]
        await ctx.emit_many(events, cursor=position.to_json(with_seen=batch))
        ctx.health.cursor = self._health_cursor()


def _payload(text: str) -> Any:
    """A NOTIFY payload: its JSON value if it is JSON, else the text itself."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, float) and not math.isfinite(value):
        return text
    return value
