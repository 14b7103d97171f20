"""``sql:`` tasks: one statement with bound ``args:`` on PostgreSQL (asyncpg) or SQLite."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from uuid import UUID

import anyio
from pydantic import Field, field_validator

from connectors.table_pg import db_errors, json_value, redact, url_problem
from reactor.actions import TaskRequest
from reactor.config import is_url
from reactor.errors import ActionError, ConnectorError, ExpressionError
from reactor.expressions import CompiledValue
from reactor.specs import Spec, TaskSpec

if TYPE_CHECKING:
    import asyncpg

__all__ = ["SqlAction", "SqlFileSpec", "SqlTaskSpec", "Statement", "prepare"]

Dialect = Literal["postgresql", "sqlite"]

#: How long connecting to PostgreSQL may take before the attempt fails.
_CONNECT_TIMEOUT = 10.0
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLACEHOLDER = re.compile(r":([A-Za-z_][A-Za-z0-9_]*)")
_DOLLAR_QUOTE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_POSITIONAL = re.compile(r"\$\d+")
#: ``{{ name ... }}`` or ``{% ... %}``, even inside a literal; not ``'{{1,2},{3,4}}'``.
_TEMPLATE = re.compile(r"\{\{\s*[A-Za-z_][^{}]*\}\}|\{%.*?%\}", re.DOTALL)


class SqlFileSpec(Spec):
    """``sql: {file: PATH}``: the statement is in a file beside the pipeline, read at run time."""

    file: str = Field(min_length=1)


class SqlTaskSpec(TaskSpec):
    """A task that runs one SQL statement on ``connection:`` and returns its rows."""

    type_key: ClassVar[str] = "sql"

    sql: str | SqlFileSpec
    connection: str = Field(min_length=1)
    #: Values bound to the statement's ``:name`` placeholders; each may be a template.
    args: dict[str, Any] = {}
    #: Rows kept in the output; more are counted but left out.
    max_rows: int = Field(1000, ge=1)

    @field_validator("sql")
    @classmethod
    def _statement(cls, value: str | SqlFileSpec) -> str | SqlFileSpec:
        if isinstance(value, str) and not value.strip():
            raise ValueError("the statement is empty")
        return value

    @field_validator("connection")
    @classmethod
    def _connection(cls, value: str) -> str:
        if is_url(value):
            dialect_of(value)
        return value

    @field_validator("args")
    @classmethod
    def _arg_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not _NAME.fullmatch(name):
                raise ValueError(
                    f"{name!r} cannot be a placeholder name (letters, digits and _,"
                    " not starting with a digit)"
                )
        return value


def dialect_of(url: str) -> Dialect:
    """The database a connection URL names; ``ValueError`` for anything else."""
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("postgresql", "postgres"):
        problem = url_problem(url)
        if problem is not None:
            raise ValueError(f"{redact(url)}: {problem}")
        return "postgresql"
    if scheme == "sqlite":
        if not url.startswith("sqlite:///") or url == "sqlite:///":
            raise ValueError(
                f"{url!r}: a SQLite connection is sqlite:///relative.db or sqlite:////absolute.db"
            )
        return "sqlite"
    raise ValueError(
        f"a sql: task connects to postgresql://... or sqlite:///..., not {scheme}://..."
    )


@dataclass(frozen=True)
class Statement:
    """A statement ready for its driver, and the placeholder names it binds."""

    #: PostgreSQL: ``:name`` replaced by ``$1..$n``; SQLite: the text as written.
    text: str
    #: PostgreSQL: the name of ``$1``, ``$2``...; SQLite: every name used, in order.
    names: tuple[str, ...]


def _is_ident(char: str) -> bool:
    return char.isalnum() or char in "_$"


def _quoted_end(sql: str, start: int, quote: str, backslash: bool) -> int:
    """The index just past the literal or identifier opened at ``start`` (doubled quotes
    stay inside); an unterminated one runs to the end, for the database to report."""
    i = start + 1
    while i < len(sql):
        char = sql[i]
        if backslash and char == "\\":
            i += 2
            continue
        if char == quote:
            if sql.startswith(quote, i + 1):
                i += 2
                continue
            return i + 1
        i += 1
    return len(sql)


def _comment_end(sql: str, start: int, nested: bool) -> int:
    depth = 0
    i = start
    while i < len(sql):
        if sql.startswith("/*", i):
            depth = depth + 1 if nested or depth == 0 else depth
            i += 2
        elif sql.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return len(sql)


def _placeholders(sql: str, dialect: Dialect) -> list[tuple[int, int, str]]:
    """``(start, end, name)`` of each ``:name`` outside string literals, quoted identifiers,
    comments and ``::type`` casts; ``ValueError`` for ``{{ }}`` or a ``$1`` written in SQL."""
    if template := _TEMPLATE.search(sql):
        raise ValueError(
            f"{template[0]} in the statement: templates are not rendered in SQL (a value"
            " would become code); write a :name placeholder and give its value under args:"
        )
    found: list[tuple[int, int, str]] = []
    pg = dialect == "postgresql"
    i = 0
    while i < len(sql):
        char = sql[i]
        before = sql[i - 1] if i else ""
        if char == "'":
            # E'it\'s' (PostgreSQL) takes backslash escapes; 'it''s' everywhere.
            escaped = pg and before in ("e", "E") and not (i >= 2 and _is_ident(sql[i - 2]))
            i = _quoted_end(sql, i, "'", escaped)
        elif char == '"' or (not pg and char == "`"):
            i = _quoted_end(sql, i, char, False)
        elif not pg and char == "[":
            end = sql.find("]", i + 1)
            i = len(sql) if end < 0 else end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = len(sql) if end < 0 else end + 1
        elif sql.startswith("/*", i):
            i = _comment_end(sql, i, nested=pg)
        elif pg and char == "$" and not _is_ident(before):
            if dollar := _DOLLAR_QUOTE.match(sql, i):
                end = sql.find(dollar[0], dollar.end())
                i = len(sql) if end < 0 else end + len(dollar[0])
            elif positional := _POSITIONAL.match(sql, i):
                raise ValueError(
                    f"write placeholders as :name with a value under args:, not {positional[0]}"
                )
            else:
                i += 1
        elif sql.startswith("::", i):
            i += 2
        elif char == ":" and (match := _PLACEHOLDER.match(sql, i)):
            found.append((i, match.end(), match[1]))
            i = match.end()
        else:
            i += 1
    return found


def prepare(sql: str, dialect: Dialect) -> Statement:
    """``sql`` for ``dialect``'s driver; ``ValueError`` for what cannot be sent."""
    found = _placeholders(sql, dialect)
    if dialect == "sqlite":
        return Statement(sql, tuple(dict.fromkeys(name for _, _, name in found)))
    numbers: dict[str, int] = {}
    parts: list[str] = []
    last = 0
    for start, end, name in found:
        number = numbers.setdefault(name, len(numbers) + 1)
        parts += [sql[last:start], f"${number}"]
        last = end
    parts.append(sql[last:])
    return Statement("".join(parts), tuple(numbers))


def _arg_problem(
    used: Sequence[str], given: Sequence[str]
) -> tuple[str, tuple[str | int, ...]] | None:
    """What does not match between placeholders and ``args:``, and where to report it."""
    missing = [name for name in used if name not in given]
    if missing:
        known = ", ".join(given) or "none"
        return (
            f"placeholder :{missing[0]} has no value under args: (args: {known})",
            ("sql",),
        )
    unused = [name for name in given if name not in used]
    if unused:
        placeholders = ", ".join(f":{name}" for name in used) or "none"
        return (
            f"args.{unused[0]} is not used by the statement (placeholders: {placeholders})",
            ("args",),
        )
    return None


def _caret(statement: str, position: int | None) -> str:
    """``(line L, column C): the line`` for a 1-based character ``position``, else the text."""
    if position is None or not 1 <= position <= len(statement) + 1:
        return statement.strip()
    offset = position - 1
    line_start = statement.rfind("\n", 0, offset) + 1
    line_end = statement.find("\n", offset)
    line = statement[line_start : len(statement) if line_end < 0 else line_end]
    line_number = statement.count("\n", 0, offset) + 1
    column = offset - line_start + 1
    return f"(line {line_number}, column {column}): {line}\n{' ' * (column - 1)}^"


def _result(rows: list[dict[str, Any]], row_count: int) -> dict[str, Any]:
    return {"rows": rows, "row_count": row_count, "truncated": row_count > len(rows)}


def _affected(status: str) -> int:
    """The row count of a command status (``INSERT 0 3``, ``UPDATE 2``), or 0."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class SqlAction:
    """Runs the statement in one transaction on a connection of its own, committed at the end.

    The output of a statement that returns rows is ``{"rows": [...], "row_count": N,
    "truncated": bool}`` (at most ``max_rows`` rows; ``row_count`` counts them all); of one
    that returns none, ``{"row_count": N}``, the rows it changed.
    """

    def __init__(
        self, spec: SqlTaskSpec, base_dir: Path, *, value: Callable[[Any], Any] = json_value
    ) -> None:
        self.spec = spec
        self.base_dir = base_dir
        #: How a column value goes into the output (a check keeps numbers as they are).
        self.value = value
        try:
            self.args = CompiledValue(spec.args)
        except ExpressionError as exc:
            raise ExpressionError(str(exc), ("args",)) from exc
        if isinstance(spec.sql, str):
            self._check(spec.sql)

    def _check(self, sql: str) -> None:
        """Placeholders against ``args:`` at validate time, for every dialect the connection
        may be (a name is resolved only at run time)."""
        if is_url(self.spec.connection):
            dialects: tuple[Dialect, ...] = (dialect_of(self.spec.connection),)
        else:
            dialects = ("postgresql", "sqlite")
        problems: list[tuple[str, tuple[str | int, ...]] | None] = []
        for dialect in dialects:
            try:
                statement = prepare(sql, dialect)
            except ValueError as exc:
                problems.append((str(exc), ("sql",)))
                continue
            problems.append(_arg_problem(statement.names, list(self.spec.args)))
        # Reported only if every dialect agrees: else the run decides, on the real one.
        first = problems[0]
        if first is not None and all(p == first for p in problems):
            raise ExpressionError(*first)

    def _source(self) -> str:
        if isinstance(self.spec.sql, str):
            return self.spec.sql
        path = self.base_dir / self.spec.sql.file
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ActionError(f"cannot read the statement from {path}: {exc}") from exc
        if not text.strip():
            raise ActionError(f"the statement file {path} is empty")
        return text

    async def execute(self, request: TaskRequest) -> Any:
        try:
            args = self.args.render(request.scope)
        except ExpressionError as exc:
            raise ActionError(f"cannot render args: {exc}") from exc
        try:
            url = (
                request.connection(self.spec.connection)
                if request.connection is not None
                else self.spec.connection
            )
            dialect = dialect_of(url)
        except (ConnectorError, ValueError) as exc:
            raise ActionError(str(exc)) from exc
        sql = self._source()
        try:
            statement = prepare(sql, dialect)
        except ValueError as exc:
            raise ActionError(f"{exc}: {sql.strip()}") from exc
        if (problem := _arg_problem(statement.names, list(args))) is not None:
            raise ActionError(problem[0])
        if dialect == "postgresql":
            values = [args[name] for name in statement.names]
            return await self._postgres(url, statement, values, request)
        bound = {name: args[name] for name in statement.names}
        return await self._sqlite(url, statement.text, bound, request)

    async def _postgres(
        self, url: str, statement: Statement, values: list[Any], request: TaskRequest
    ) -> dict[str, Any]:
        import asyncpg

        where = _server(url)
        text, names = statement.text, statement.names
        try:
            connection = await asyncpg.connect(
                url,
                timeout=_CONNECT_TIMEOUT,
                server_settings={"application_name": f"reactor sql task {request.task_id}"},
            )
        except db_errors() as exc:
            raise ActionError(f"cannot connect to PostgreSQL at {where}: {_reason(exc)}") from exc
        try:
            try:
                for name in ("json", "jsonb"):
                    await connection.set_type_codec(
                        name, encoder=_json_text, decoder=json.loads, schema="pg_catalog"
                    )
                async with connection.transaction():
                    return await self._run_pg(connection, text, names, values)
            except asyncpg.PostgresError as exc:
                raise ActionError(_pg_message(exc, text)) from exc
            except db_errors() as exc:
                raise ActionError(f"PostgreSQL at {where}: {_reason(exc)}") from exc
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    with anyio.fail_after(5):
                        await connection.close()
                except db_errors():
                    connection.terminate()

    async def _run_pg(
        self,
        connection: asyncpg.Connection,
        text: str,
        names: Sequence[str],
        values: Sequence[Any],
    ) -> dict[str, Any]:
        statement = await connection.prepare(text)
        values = [
            _argument(name, value, parameter.name)
            for name, value, parameter in zip(
                names, values, statement.get_parameters(), strict=True
            )
        ]
        if not statement.get_attributes():
            await statement.fetch(*values)
            return {"row_count": _affected(statement.get_statusmsg())}
        rows: list[dict[str, Any]] = []
        count = 0
        # A cursor, so rows past max_rows are counted, not all held in memory.
        async for record in statement.cursor(*values, prefetch=min(self.spec.max_rows, 1000)):
            count += 1
            if count <= self.spec.max_rows:
                rows.append({key: self.value(value) for key, value in record.items()})
        return _result(rows, count)

    async def _sqlite(
        self, url: str, text: str, bound: dict[str, Any], request: TaskRequest
    ) -> dict[str, Any]:
        path = Path(url.removeprefix("sqlite:///"))
        path = path if path.is_absolute() else self.base_dir / path
        max_rows = self.spec.max_rows
        convert = self.value

        def run() -> dict[str, Any]:
            try:
                connection = sqlite3.connect(path, timeout=_CONNECT_TIMEOUT)
            except sqlite3.Error as exc:
                raise ActionError(f"cannot open SQLite database {path}: {exc}") from exc
            try:
                with connection:  # commits at the end, rolls back on an error
                    cursor = connection.execute(text, bound)
                    if cursor.description is None:
                        return {"row_count": max(cursor.rowcount, 0)}
                    columns = [column[0] for column in cursor.description]
                    rows: list[dict[str, Any]] = []
                    count = 0
                    for row in cursor:
                        count += 1
                        if count <= max_rows:
                            rows.append({c: convert(v) for c, v in zip(columns, row, strict=True)})
                    return _result(rows, count)
            except sqlite3.Error as exc:
                raise ActionError(f"SQLite {path}: {exc}: {text.strip()}") from exc
            finally:
                connection.close()

        # An abandoned thread still finishes its statement and closes its connection.
        return await anyio.to_thread.run_sync(run, abandon_on_cancel=True)


def _boolean(text: str) -> bool:
    if text.lower() in ("true", "t", "yes", "on", "1"):
        return True
    if text.lower() in ("false", "f", "no", "off", "0"):
        return False
    raise ValueError(text)


#: Text (what a template renders) read as the type PostgreSQL wants for a parameter.
_FROM_TEXT: dict[str, Callable[[str], Any]] = {
    "int2": int,
    "int4": int,
    "int8": int,
    "float4": float,
    "float8": float,
    "numeric": Decimal,
    "bool": _boolean,
    "date": date.fromisoformat,
    "time": time.fromisoformat,
    "timestamp": datetime.fromisoformat,
    "timestamptz": datetime.fromisoformat,
    "uuid": UUID,
}
_TEXT_TYPES = frozenset({"text", "varchar", "bpchar", "name"})


def _argument(name: str, value: Any, type_name: str) -> Any:
    """``value`` as asyncpg takes it for a parameter of ``type_name``.

    Templates render text, and asyncpg refuses text for a date or a number.
    """
    if isinstance(value, str) and (convert := _FROM_TEXT.get(type_name)) is not None:
        try:
            return convert(value.strip())
        except (ValueError, ArithmeticError):
            raise ActionError(
                f"args.{name}: {value!r} is not a {type_name} (the type the statement"
                f" gives :{name})"
            ) from None
    if value is None or isinstance(value, str):
        return value
    if type_name in _TEXT_TYPES:
        return json.dumps(value) if isinstance(value, dict | list | bool) else str(value)
    return value


def _json_text(value: Any) -> str:
    """A json parameter: text is sent as the JSON it holds, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _server(url: str) -> str:
    """``host:port`` (or the socket) of a PostgreSQL URL, never its password."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"{host}:{parts.port or 5432}"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, TimeoutError) or not text:
        return f"{type(exc).__name__} {text}".strip()
    return text


def _pg_message(exc: Any, text: str) -> str:
    """The server's message with where in the statement it points, if it says."""
    message = str(getattr(exc, "message", None) or exc)
    position = getattr(exc, "position", None)
    try:
        at = int(position) if position is not None else None
    except ValueError:
        at = None
    where = _caret(text, at)
    detail = getattr(exc, "detail", None)
    hint = getattr(exc, "hint", None)
    extra = "".join(f"\n{label}: {v}" for label, v in (("detail", detail), ("hint", hint)) if v)
    if at is None:
        return f"{message}: {where}{extra}"
    return f"{message} {where}{extra}"
