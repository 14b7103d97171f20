"""Pure retry policy: which failed attempts are retried, and how long to wait first."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reactor.errors import ExpressionError
from reactor.expressions import Expression
from reactor.specs import RetryOnSpec, RetrySpec

__all__ = ["Failure", "RetryPolicy"]

#: 2**60 seconds is beyond any max_delay; larger exponents only risk overflow.
_MAX_EXPONENT = 60


@dataclass(frozen=True, slots=True)
class Failure:
    """How one attempt went wrong: what ``retry_on:`` looks at."""

    outcome: str  # "failed" or "timed_out"
    error: str
    exit_code: int | None = None
    #: The exception's class and bases by name (short and qualified), most specific first.
    exceptions: tuple[str, ...] = ()
    #: Trying again cannot help (an output over the size limit): never retried.
    permanent: bool = False
    #: What the attempt found although it failed (a failed check's result).
    output: Any = None

    def scope(self, attempt: int) -> dict[str, Any]:
        """What a ``retry_on:`` expression sees."""
        return {
            "outcome": self.outcome,
            "error": self.error,
            "exit_code": self.exit_code,
            "exception": self.exceptions[0] if self.exceptions else None,
            "exceptions": list(self.exceptions),
            "attempt": attempt,
        }


class RetryPolicy:
    """A task's ``retries:`` and ``retry_on:``, compiled."""

    def __init__(self, retries: RetrySpec | None, retry_on: RetryOnSpec | None = None) -> None:
        self.spec = retries or RetrySpec(max=0)
        self.retry_on = retry_on
        try:
            self.when = Expression(retry_on.when) if retry_on and retry_on.when else None
        except ExpressionError as exc:
            raise ExpressionError(str(exc), ("retry_on", "when")) from exc

    @property
    def max(self) -> int:
        return self.spec.max

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after attempt number ``attempt`` (1 for the first) failed."""
        spec = self.spec
        seconds = spec.initial
        if spec.backoff == "exponential":
            seconds = spec.initial * 2.0 ** min(attempt - 1, _MAX_EXPONENT)
        if spec.max_delay is not None:
            seconds = min(seconds, spec.max_delay)
        if spec.jitter:
            seconds *= 0.5 + 0.5 * rand()
        return seconds

    def retries(self, failure: Failure, attempt: int, scope: Mapping[str, Any]) -> bool:
        """Whether the task runs again after ``attempt`` ended with ``failure``.

        Raises :class:`ExpressionError` when a ``retry_on`` expression fails.
        """
        return self.left(failure, attempt) and self.matches(failure, attempt, scope)

    def left(self, failure: Failure, attempt: int) -> bool:
        """Whether attempts are left after ``attempt`` and another could help at all."""
        return attempt <= self.spec.max and not failure.permanent

    def matches(self, failure: Failure, attempt: int, scope: Mapping[str, Any]) -> bool:
        """Whether ``retry_on`` (if any) counts this failure as worth another attempt."""
        on = self.retry_on
        if on is None:
            return True
        if failure.outcome == "timed_out" and on.timeout:
            return True
        if failure.exit_code is not None and failure.exit_code in on.exit_codes:
            return True
        if any(name in failure.exceptions for name in on.exceptions):
            return True
        if self.when is not None:
            return bool(self.when.evaluate({**scope, **failure.scope(attempt)}))
        return False
