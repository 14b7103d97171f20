"""``reactor.yaml``: the service's settings beside its pipelines (connections, limits, timings)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError

from reactor.alerting.specs import AlertingSpec, AlertSpec
from reactor.durations import Duration
from reactor.errors import ConnectorError, SpecError, SpecErrorGroup, SpecProblem
from reactor.openlineage import LineageSection, LineageSpec
from reactor.retention import RetentionSpec
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
    #: The largest task output stored (as JSON); a larger one fails the task.
    max_output: Size = 1024 * 1024


def _connection_name(name: str) -> str:
    if not re.match(NAME_PATTERN, name):
        raise ValueError("a connection name takes letters, digits, _ . - (and no other)")
    return name


def _connection_target(target: str) -> str:
    if target.startswith("env:"):
        if not target[4:]:
            raise ValueError("env: needs a variable name (env:WAREHOUSE_URL)")
        return target
    if not is_url(target):
        raise ValueError(f"{target!r} is neither a URL (scheme://...) nor env:VARIABLE")
    return target


def _address(value: str) -> str:
    _, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
    return value


def _empty_section(value: Any) -> Any:
    # ``limits:`` with nothing under it reads as null: the section's defaults.
    return {} if value is None else value


def _empty_list(value: Any) -> Any:
    return [] if value is None else value


ConnectionName = Annotated[str, AfterValidator(_connection_name)]
PoolName = Annotated[str, Field(pattern=NAME_PATTERN)]
ConnectionTarget = Annotated[str, AfterValidator(_connection_target)]
#: The same floor as ``--heartbeat``/``--lease``: 0 would make the heartbeat spin.
Interval = Annotated[Duration, Field(ge=0.1)]


class ConfigSpec(Spec):
    """The whole ``reactor.yaml``; every key is optional."""

    store: str | None = None
    http: Annotated[str, AfterValidator(_address)] | None = None
    grace: Duration | None = None
    heartbeat: Interval | None = None
    lease: Interval | None = None
    limits: Annotated[LimitsSpec, BeforeValidator(_empty_section)] = LimitsSpec()
    connections: Annotated[
        dict[ConnectionName, ConnectionTarget], BeforeValidator(_empty_section)
    ] = {}
    #: Named slots shared by every task that says ``pool: NAME``, across pipelines.
    pools: Annotated[
        dict[PoolName, Annotated[int, Field(ge=1, le=100_000)]], BeforeValidator(_empty_section)
    ] = {}
    #: What the background pass removes (runs, events); nothing without it.
    retention: RetentionSpec | None = None
    #: Alerts of every pipeline that has no ``alerts:`` of its own.
    alerts: Annotated[list[AlertSpec], BeforeValidator(_empty_list)] = []
    #: SMTP server, fatigue defaults, quiet hours (docs/alerts.md).
    alerting: Annotated[AlertingSpec, BeforeValidator(_empty_section)] = AlertingSpec()
    #: Where OpenLineage run events go (docs/lineage.md).
    lineage: LineageSection = LineageSpec()


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


def _section(loc: tuple[Any, ...]) -> type[Spec]:
    """The settings model at ``loc`` (``("alerting", "smtp")``: :class:`SmtpSpec`)."""
    section: type[Spec] = ConfigSpec
    for part in loc:
        if isinstance(part, int):
            continue
        field_info = section.model_fields.get(str(part))
        inner = _spec_in(field_info.annotation) if field_info is not None else None
        if inner is None:
            break
        section = inner
    return section


def _spec_in(annotation: Any) -> type[Spec] | None:
    """The :class:`Spec` class in a field's type (``list[AlertSpec] | None``: AlertSpec)."""
    if isinstance(annotation, type) and issubclass(annotation, Spec):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _spec_in(arg)
        if found is not None:
            return found
    return None


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
            # A bad connection name is reported at its own line, not at ``[key]``.
            loc = tuple(part for part in error["loc"] if part != "[key]")
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                section = _section(loc[:-1])
                message = f"unknown setting; {'.'.join(map(str, loc[:-1])) or SETTINGS_FILE}"
                names = [f.alias or n for n, f in section.model_fields.items()]
                message += f" takes {', '.join(names)}"
            problems.append(doc.problem(loc, message))
        problems.sort(key=lambda p: p.line or 0)
        raise SpecErrorGroup(problems) from exc
    return Config(spec, path, Connections(dict(spec.connections), shown))
