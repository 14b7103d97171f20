"""HTML form fields generated from a pipeline's typed params, and the values read back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from reactor.params import ParamSpec

__all__ = ["Field", "FormError", "fields_for", "parse_form", "read_params"]

#: Form field names are prefixed so a param called ``from`` cannot clash with the form's own.
PREFIX = "param."


class FormError(ValueError):
    """What is wrong with a submitted form, in words for the person who filled it in."""


@dataclass(frozen=True, slots=True)
class Field:
    """One param as an input: its HTML input kind and the value shown at first."""

    name: str
    spec: ParamSpec
    input: str  # text, number, checkbox, select, date, datetime, json
    value: str
    step: str | None = None

    @property
    def form_name(self) -> str:
        return PREFIX + self.name

    @property
    def choices(self) -> list[str]:
        return [_shown(v) for v in self.spec.enum or []]


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def fields_for(params: Mapping[str, ParamSpec]) -> list[Field]:
    fields = []
    for name, spec in params.items():
        default = None if spec.required else spec.default
        if spec.enum:
            fields.append(Field(name, spec, "select", _shown(default)))
        elif spec.type == "boolean":
            fields.append(Field(name, spec, "checkbox", "true" if default else ""))
        elif spec.type in ("integer", "number"):
            step = "1" if spec.type == "integer" else "any"
            fields.append(Field(name, spec, "number", _shown(default), step))
        elif spec.type == "date":
            fields.append(Field(name, spec, "date", _shown(default)))
        elif spec.type == "datetime":
            # The input has no offset and the form says UTC: show the default in UTC.
            shown = datetime.fromisoformat(default).astimezone(UTC).isoformat() if default else ""
            fields.append(Field(name, spec, "datetime", shown))
        elif spec.type in ("list", "object"):
            shown = json.dumps(default, indent=2) if default is not None else ""
            fields.append(Field(name, spec, "json", shown))
        else:
            fields.append(Field(name, spec, "text", _shown(default)))
    return fields


def parse_form(body: bytes) -> dict[str, list[str]]:
    """A urlencoded body as lists of values per name (checkbox pairs send two)."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise FormError("the form is not UTF-8") from exc
    form: dict[str, list[str]] = {}
    for key, value in pairs:
        form.setdefault(key, []).append(value)
    return form


def _value(name: str, spec: ParamSpec, text: str) -> Any:
    kind = spec.type
    if kind == "string":
        return text
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise FormError(f"{name}: {text!r} is not a whole number") from None
    if kind == "number":
        try:
            return float(text)
        except ValueError:
            raise FormError(f"{name}: {text!r} is not a number") from None
    if kind == "boolean":
        return text.lower() in ("true", "on", "1", "yes")
    if kind == "datetime":
        # datetime-local inputs send no offset: the form says they are UTC.
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise FormError(f"{name}: {text!r} is not a date and time") from None
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()
    if kind in ("list", "object"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise FormError(f"{name}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if spec.enum:
        # An enum of another kind: the option's text is the value's JSON.
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def read_params(params: Mapping[str, ParamSpec], form: Mapping[str, list[str]]) -> dict[str, Any]:
    """The params a form gives, typed; an empty field means "use the default"."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, spec in params.items():
        sent = form.get(PREFIX + name)
        if not sent:
            continue
        text = sent[-1]  # a checked checkbox comes after its hidden "false"
        if text == "" and spec.type != "string":
            continue
        if text == "" and not spec.required:
            continue
        try:
            if spec.enum and spec.type not in ("string", "date", "datetime"):
                values[name] = json.loads(text)
            else:
                values[name] = _value(name, spec, text)
        except FormError as exc:
            problems.append(str(exc))
        except json.JSONDecodeError:
            choices = ", ".join(_shown(v) for v in spec.enum or [])
            problems.append(f"{name}: {text!r} is not one of {choices}")
    if problems:
        raise FormError("; ".join(problems))
    return values
