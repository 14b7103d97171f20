"""Durations as users write them: ``500ms``, ``10s``, ``5m``, ``1h``, ``1d`` or seconds."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

__all__ = ["Duration", "format_duration", "parse_duration"]

_PATTERN = re.compile(r"^\s*(-?(?:\d+(?:\.\d+)?|\.\d+))\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds as a float; raises ``ValueError`` saying what is allowed."""
    if isinstance(value, bool):
        # pydantic turns ValueError (not TypeError) into a validation error.
        raise ValueError(  # noqa: TRY004
            "a duration must be a number of seconds or text like 500ms, 10s, 5m"
        )
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _PATTERN.match(value)):
        seconds = float(match[1]) * _UNITS[match[2]]
    else:
        raise ValueError(
            f"{value!r} is not a duration; write a number of seconds or 500ms, 10s, 5m, 1h, 1d"
        )
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.3g}s"
    if seconds < 7200:
        return f"{seconds / 60:.3g}m"
    return f"{seconds / 3600:.3g}h"


Duration = Annotated[float, BeforeValidator(parse_duration)]
