"""``reactor.yaml``: the service's settings beside its pipelines (connections, limits, timings)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationError, field_validator

from reactor.durations import Duration
from reactor.errors import ConnectorError, SpecError, SpecErrorGroup, SpecProblem
from reactor.specs import NAME_PATTERN, Spec
from reactor.yamlfile import load_yaml

__all__ = [
    "SETTINGS_FILE",
    "Config",
    "ConfigSpec",
    "Connections",
    "LimitsSpec",
    "is_url",
    "load_config",
    "parse_size",
]

SETTINGS_FILE = "reactor.yaml"

_SIZE = re.compile(r"^\s*([0-9]+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KB": 1000,
    "KiB": 1024,
    "MB": 1000**2,
    "MiB": 1024**2,
    "GB": 1000**3,
    "GiB": 1024**3,
}


def parse_size(value: Any) -> int:
    """A size in bytes from ``1048576``, ``"512KiB"`` or ``"1MiB"`` (at least 1 byte)."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = _SIZE.match(str(value))
        if match is None:
            raise ValueError(
                f"{value!r} is not a size; write bytes (1048576) or 512KiB, 1MiB, 10MB"
            )
        size = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if size < 1:
        raise ValueError("a size must be at least 1 byte")
    return size


Size = Annotated[int, BeforeValidator(parse_size)]


def is_url(value: str) -> bool:
    """A ``connection:`` written inline (``postgresql://...``) rather than a name."""
    return "://" in value


class LimitsSpec(Spec):
    """``limits:``: what one service takes on at once."""

    #: Task attempts running at once, across pipelines.
    max_tasks: int = Field(64, ge=1)
    #: The body size a webhook accepts unless its trigger sets ``max_body``.
    webhook_max_body: Size = 1024 * 1024
    #: Events queued between the sensors/HTTP and the rule engine (backpressure beyond).
    bus_capacity: int = Field(1024, ge=1)


class ConfigSpec(Spec):
    """The whole ``reactor.yaml``; every key is optional."""

    store: str | None = None
    http: str | None = None
    grace: Duration | None = None
    heartbeat: Duration | None = None
    lease: Duration | None = None
    limits: LimitsSpec = LimitsSpec()
    connections: dict[str, str] = {}

    @field_validator("connections")
    @classmethod
    def _connection_values(cls, value: dict[str, str]) -> dict[str, str]:
        for name, target in value.items():
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"connection name {name!r}: use letters, digits, _ . -")
            if not (is_url(target) or target.startswith("env:")):
                raise ValueError(
                    f"connection {name!r}: {target!r} is neither a URL (scheme://...) nor"
                    " env:VARIABLE"
                )
            if target.startswith("env:") and not target[4:]:
                raise ValueError(f"connection {name!r}: env: needs a variable name")
        return value


@dataclass(frozen=True)
class Connections:
    """Named connections; a name resolves to a URL, reading ``env:VAR`` values when used."""

    values: Mapping[str, str] = field(default_factory=dict)
    #: Where they were written, for messages.
    file: str = SETTINGS_FILE

    def knows(self, ref: str) -> bool:
        return is_url(ref) or ref in self.values

    def resolve(self, ref: str, env: Mapping[str, str]) -> str:
        """The URL ``ref`` stands for: itself if inline, else the named connection's value."""
        if is_url(ref):
            return ref
        if ref not in self.values:
            known = ", ".join(sorted(self.values)) or "none"
            raise ConnectorError(
                f"unknown connection {ref!r}: not a URL and not a name under connections:"
                f" in {self.file} (names: {known})"
            )
        target = self.values[ref]
        if target.startswith("env:"):
            variable = target[4:]
            if variable not in env or not env[variable]:
                raise ConnectorError(
                    f"connection {ref!r} reads environment variable {variable}, which is not set"
                )
            return env[variable]
        return target


@dataclass(frozen=True)
class Config:
    """``reactor.yaml`` as loaded (defaults when the file does not exist)."""

    spec: ConfigSpec = field(default_factory=ConfigSpec)
    path: Path | None = None
    connections: Connections = field(default_factory=Connections)

    @property
    def limits(self) -> LimitsSpec:
        return self.spec.limits


def load_config(folder: Path, *, display: str | None = None) -> Config:
    """The folder's ``reactor.yaml``; raises :class:`SpecErrorGroup` with file:line problems."""
    path = folder / SETTINGS_FILE
    if not path.is_file():
        return Config()
    shown = display or str(path)
    try:
        doc = load_yaml(path, display=shown)
    except SpecError as exc:
        raise SpecErrorGroup([exc.problem]) from exc
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise SpecErrorGroup([doc.problem((), "reactor.yaml must be a mapping of settings")])
    try:
        spec = ConfigSpec.model_validate(data)
    except ValidationError as exc:
        problems: list[SpecProblem] = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = (
                    "unknown setting; reactor.yaml takes store, http, grace, heartbeat, lease,"
                    " limits, connections"
                    if len(loc) == 1
                    else "unknown setting"
                )
            problems.append(doc.problem(loc, message))
        problems.sort(key=lambda p: p.line or 0)
        raise SpecErrorGroup(problems) from exc
    return Config(spec, path, Connections(dict(spec.connections), shown))
