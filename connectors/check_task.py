"""``check:`` tasks: a data-quality check by a query (``sql:``) or a function (``python:``).

The result (:class:`reactor.checks.CheckResult`) is the task's output whether the check
passed or not. A failed check with ``severity: fail`` fails the task, for good: it is a
finding, not a transient error, so ``retries:`` do not repeat it (they do repeat a query
that could not run). With ``severity: warn`` the task succeeds and logs a warning.
"""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from connectors.python import PythonAction, PythonTaskSpec
from connectors.sql import SqlAction, SqlFileSpec, SqlTaskSpec, dialect_of
from connectors.table_pg import json_value
from reactor.actions import TaskRequest
from reactor.checks import CHECK_TASK_KEY, CheckResult, Severity
from reactor.config import is_url
from reactor.errors import ActionError, ExpressionError
from reactor.specs import Spec, TaskSpec

__all__ = ["CheckAction", "CheckSpec", "CheckTaskSpec"]

#: Rows of a failed "no rows" check kept in its result.
MAX_SHOWN_ROWS = 10

Bound = int | float | None


class CheckSpec(Spec):
    """``check: {sql, connection, args, between}`` or ``check: {python, args}``."""

    sql: str | SqlFileSpec | None = None
    connection: str | None = Field(None, min_length=1)
    python: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    #: ``:name`` values of the query, or the function's keyword arguments; templates allowed.
    args: dict[str, Any] = {}
    #: The query returns one number, which must lie within these bounds (inclusive).
    between: tuple[Bound, Bound] | None = None

    @field_validator("sql")
    @classmethod
    def _statement(cls, value: str | SqlFileSpec | None) -> str | SqlFileSpec | None:
        if isinstance(value, str) and not value.strip():
            raise ValueError("the statement is empty")
        return value

    @field_validator("between", mode="before")
    @classmethod
    def _bounds(cls, value: Any) -> Any:
        def bound(b: Any) -> bool:
            return b is None or (isinstance(b, int | float) and not isinstance(b, bool))

        if value is not None and not (
            isinstance(value, list | tuple) and len(value) == 2 and all(map(bound, value))
        ):
            raise ValueError(f"write [low, high], each a number or null (unbounded), not {value!r}")
        return value

    @field_validator("connection")
    @classmethod
    def _connection(cls, value: str | None) -> str | None:
        if value is not None and is_url(value):
            dialect_of(value)
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> CheckSpec:
        if self.sql is None and self.python is None:
            raise ValueError(
                "a check needs sql: (a query, with connection:) or python: (module:function)"
            )
        if self.sql is not None and self.python is not None:
            raise ValueError("a check runs sql: or python:, not both")
        if self.python is not None:
            if self.connection is not None:
                raise ValueError("connection: belongs to a sql: check, not a python: one")
            if self.between is not None:
                raise ValueError(
                    "between: belongs to a sql: check; a python: check passes when its"
                    " function returns True"
                )
            return self
        if self.connection is None:
            raise ValueError(
                "a sql: check needs connection: (a URL or a name under connections: in"
                " reactor.yaml)"
            )
        if self.between is not None:
            low, high = self.between
            if low is None and high is None:
                raise ValueError("between: needs at least one bound ([1, null] means at least 1)")
            if low is not None and high is not None and low > high:
                raise ValueError(f"between: the low bound {low} is above the high bound {high}")
        return self


class CheckTaskSpec(TaskSpec):
    """A task that checks data and records what it found (``reactor.check.*`` events)."""

    type_key: ClassVar[str] = CHECK_TASK_KEY
    connection_loc: ClassVar[tuple[str, ...]] = ("check", "connection")

    check: CheckSpec
    #: ``fail``: a failed check fails the task; ``warn``: the task succeeds with a warning.
    severity: Severity = "fail"

    @property
    def connection(self) -> str | None:
        """The check's ``connection:``, so ``validate`` checks it like a sql task's."""
        return self.check.connection


def _number(text: Bound) -> str:
    if isinstance(text, float) and text.is_integer():
        return str(int(text))
    return str(text)


def _expectation(between: tuple[Bound, Bound]) -> str:
    low, high = between
    if low is None:
        return f"at most {_number(high)}"
    if high is None:
        return f"at least {_number(low)}"
    return f"between {_number(low)} and {_number(high)}"


def _within(value: Decimal, between: tuple[Bound, Bound]) -> bool:
    low, high = (None if b is None else Decimal(str(b)) for b in between)
    return (low is None or value >= low) and (high is None or value <= high)


def _rows(count: int) -> str:
    return "no rows" if count == 0 else "1 row" if count == 1 else f"{count:,} rows"


def _as_is(value: Any) -> Any:
    return value


class CheckAction:
    """Runs the query or the function, and turns what it found into a :class:`CheckResult`."""

    def __init__(self, spec: CheckTaskSpec, base_dir: Path) -> None:
        self.spec = spec
        check = spec.check
        self.between = check.between
        self.sql: SqlAction | None = None
        self.python: PythonAction | None = None
        try:
            if check.sql is not None:
                assert check.connection is not None
                query = SqlTaskSpec(
                    id=spec.id,
                    sql=check.sql,
                    connection=check.connection,
                    args=check.args,
                    # One row is the answer; a second says the query is wrong.
                    max_rows=2 if self.between is not None else MAX_SHOWN_ROWS,
                )
                # Numbers stay numbers (not numeric's exact text) to be compared.
                value = _as_is if self.between is not None else json_value
                self.sql = SqlAction(query, base_dir, value=value)
            else:
                assert check.python is not None
                function = PythonTaskSpec(
                    id=spec.id, python=check.python, args=check.args, timeout=spec.timeout
                )
                self.python = PythonAction(function, base_dir)
        except ExpressionError as exc:
            raise ExpressionError(str(exc), ("check", *exc.loc)) from exc

    async def execute(self, request: TaskRequest) -> Any:
        if self.sql is not None:
            output = await self.sql.execute(request)
            if "rows" not in output:
                raise ActionError(
                    "a check's query must return rows (a select); this statement changed"
                    f" {_rows(output['row_count'])}"
                )
            if self.between is None:
                result = self._rows(output)
            else:
                result = self._number(output, self.between)
        else:
            assert self.python is not None
            result = await self._function(self.python, request)
        if result.passed:
            return result.to_json()
        if result.severity == "warn":
            request.log("system", f"warning: check failed: {result.message}")
            return result.to_json()
        raise ActionError(
            f"check failed: {result.message}", output=result.to_json(), permanent=True
        )

    def _rows(self, output: dict[str, Any]) -> CheckResult:
        count: int = output["row_count"]
        observed = {"row_count": count, "rows": output["rows"]}
        if count == 0:
            return CheckResult(True, self.spec.severity, observed, "no rows", "found no rows")
        message = f"found {_rows(count)}, expected no rows"
        return CheckResult(False, self.spec.severity, observed, "no rows", message)

    def _number(self, output: dict[str, Any], between: tuple[Bound, Bound]) -> CheckResult:
        expectation = _expectation(between)
        rows: list[dict[str, Any]] = output["rows"]
        wanted = (
            "a check with between: needs its query to return one row with one number"
            f" ({expectation})"
        )
        if output["row_count"] != 1:
            raise ActionError(f"{wanted}; it returned {_rows(output['row_count'])}")
        (row,) = rows
        if len(row) != 1:
            raise ActionError(f"{wanted}; it returned {len(row)} columns: {', '.join(row)}")
        ((column, value),) = row.items()
        if value is None:
            raise ActionError(f"{wanted}; column {column} is NULL (coalesce(..., 0)?)")
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise ActionError(f"{wanted}; column {column} is {value!r}, not a number")
        if isinstance(value, float | Decimal) and not math.isfinite(value):
            raise ActionError(f"{wanted}; column {column} is {value}, not a finite number")
        exact = value if isinstance(value, Decimal) else Decimal(str(value))
        observed: int | float = (
            value
            if isinstance(value, int | float)
            else int(exact)
            if exact == exact.to_integral_value()
            else float(exact)
        )
        passed = _within(exact, between)
        message = f"found {observed}" if passed else f"found {observed}, expected {expectation}"
        return CheckResult(passed, self.spec.severity, observed, expectation, message)

    async def _function(self, python: PythonAction, request: TaskRequest) -> CheckResult:
        target = python.target
        expectation = f"{target} is true"
        try:
            returned = await python.execute(request)
        except ActionError as exc:
            if "AssertionError" not in exc.exceptions:
                raise
            # "AssertionError: why", from this process or from a child's report.
            why = str(exc).partition(": ")[2].strip()
            message = f"{target}: {why}" if why else f"{target} raised AssertionError"
            return CheckResult(False, self.spec.severity, None, expectation, message)
        if not isinstance(returned, bool):
            raise ActionError(
                f"{target} returned {returned!r}; a python check returns True (passed) or"
                " False (failed), or raises AssertionError (failed)"
            )
        message = f"{target} returned {returned}"
        return CheckResult(returned, self.spec.severity, returned, expectation, message)
