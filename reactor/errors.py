"""The error tree every Reactor failure is reported through."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ActionError",
    "AdmissionError",
    "ClientError",
    "ConnectorError",
    "ExpressionError",
    "ParamError",
    "ReactorError",
    "SpecError",
    "SpecErrorGroup",
    "StoreError",
    "TaskTimeout",
    "exception_names",
]


class ReactorError(Exception):
    """Base class of every error Reactor raises on purpose."""


@dataclass(frozen=True)
class SpecProblem:
    """One thing wrong in a pipeline file: where it is and what is allowed."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class SpecError(ReactorError):
    """A pipeline or settings file is invalid; names the file, line and field."""

    def __init__(self, problem: SpecProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class SpecErrorGroup(ReactorError):
    """Several spec problems found at once (``reactor validate`` prints them all)."""

    def __init__(self, problems: Sequence[SpecProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ExpressionError(ReactorError):
    """An expression or template failed to compile or to evaluate."""

    def __init__(self, message: str, loc: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.loc = loc


class ParamError(ReactorError):
    """Run parameters do not match the pipeline's declared params."""


class AdmissionError(ReactorError):
    """A run could not be admitted (unknown pipeline, paused, limits)."""


class ConnectorError(ReactorError):
    """A sensor or action failed talking to the outside world."""


class ActionError(ConnectorError):
    """A task attempt failed; the message is what the user sees on the task.

    ``exit_code`` (a process's) and ``exceptions`` (the names of the raised
    exception's class and its bases, short and qualified) are what ``retry_on:``
    matches, so permanent errors need not be retried.
    """

    def __init__(
        self,
        message: str,
        *,
        exit_code: int | None = None,
        exceptions: Sequence[str] = (),
        output: Any = None,
        permanent: bool = False,
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.exceptions = tuple(exceptions)
        #: What the failed attempt found (a failed check's result), kept as the task's output.
        self.output = output
        #: Another attempt would find the same (a failed check is a finding): never retried.
        self.permanent = permanent


def exception_names(exc: BaseException) -> tuple[str, ...]:
    """``exc``'s class and bases by short and qualified name, most specific first."""
    names: list[str] = []
    for cls in type(exc).__mro__:
        if cls in (BaseException, object):
            continue
        names.append(cls.__qualname__)
        names.append(f"{cls.__module__}.{cls.__qualname__}")
    return tuple(dict.fromkeys(names))


class TaskTimeout(ActionError):
    """A task attempt ran longer than its timeout."""


class StoreError(ReactorError):
    """The store failed to read or write, or its schema is not usable."""


class ClientError(ReactorError):
    """A call to a running Reactor failed; ``status`` is its HTTP status if it answered."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message if status is None else f"{status}: {message}")
        self.message = message
        self.status = status
