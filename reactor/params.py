"""Typed pipeline parameters: declaration, defaults, enums and checking of given values."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, model_validator

from reactor.errors import ParamError

__all__ = ["ParamSpec", "ParamType", "check_params", "parse_cli_value"]

ParamType = Literal["string", "integer", "number", "boolean", "date", "datetime", "list", "object"]

_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "string": TypeAdapter(str),
    "integer": TypeAdapter(int),
    "number": TypeAdapter(float),
    "boolean": TypeAdapter(bool),
    "date": TypeAdapter(date),
    "datetime": TypeAdapter(datetime),
    "list": TypeAdapter(list[Any]),
    "object": TypeAdapter(dict[str, Any]),
}
_MISSING: Any = object()


def _coerce(kind: str, value: Any) -> Any:
    """Check ``value`` against ``kind``; returns the JSON-friendly form."""
    adapter = _ADAPTERS[kind]
    if kind == "string" and not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__} {value!r}")
    if kind in ("integer", "number") and isinstance(value, bool):
        # pydantic's lax mode would turn true into 1; a flag is not a count.
        raise ValueError(f"expected {kind}, got boolean {value!r}")
    try:
        checked = adapter.validate_python(value)
    except ValidationError as exc:
        raise ValueError(f"expected {kind}, got {value!r}: {exc.errors()[0]['msg']}") from None
    if kind == "datetime":
        if checked.tzinfo is None:
            raise ValueError(f"datetime {value!r} needs a UTC offset, e.g. 2026-01-01T06:00:00Z")
        return checked.isoformat()
    if kind == "date":
        return checked.isoformat()
    return checked


class ParamSpec(BaseModel):
    """One declared parameter: ``{type, default, enum, description}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: ParamType = "string"
    default: Any = _MISSING
    enum: list[Any] | None = None
    description: str | None = None

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    @model_validator(mode="after")
    def _check_default(self) -> ParamSpec:
        if self.enum is not None:
            object.__setattr__(self, "enum", [_coerce(self.type, v) for v in self.enum])
        if self.default is not _MISSING and self.default is not None:
            object.__setattr__(self, "default", self.check(self.default))
        return self

    def check(self, value: Any) -> Any:
        checked = _coerce(self.type, value)
        if self.enum is not None and checked not in self.enum:
            allowed = ", ".join(repr(v) for v in self.enum)
            raise ValueError(f"{checked!r} is not one of {allowed}")
        return checked


def check_params(declared: Mapping[str, ParamSpec], given: Mapping[str, Any]) -> dict[str, Any]:
    """Typed values for every declared param, defaults filled in; all problems at once."""
    problems: list[str] = []
    out: dict[str, Any] = {}
    for name in given:
        if name not in declared:
            allowed = ", ".join(declared) or "none declared"
            problems.append(f"unknown param {name!r} (declared: {allowed})")
    for name, spec in declared.items():
        if name in given:
            try:
                out[name] = spec.check(given[name])
            except ValueError as exc:
                problems.append(f"param {name!r}: {exc}")
        elif spec.required:
            problems.append(f"param {name!r} is required ({spec.type})")
        else:
            out[name] = spec.default
    if problems:
        raise ParamError("; ".join(problems))
    return out


def parse_cli_value(spec: ParamSpec | None, text: str) -> Any:
    """Turn ``-p key=value`` text into the declared type (JSON for lists and objects)."""
    kind = spec.type if spec else "string"
    if kind in ("integer", "number", "boolean", "list", "object"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            if kind == "boolean" and text.lower() in ("true", "false", "yes", "no"):
                return text.lower() in ("true", "yes")
            return text
    return text
