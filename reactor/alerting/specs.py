"""``alerts:`` (in a pipeline file and in ``reactor.yaml``) and ``alerting:`` (``reactor.yaml``)."""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, field_validator, model_validator

from reactor.durations import Duration
from reactor.specs import Spec

__all__ = [
    "ALERT_KINDS",
    "AlertKind",
    "AlertSpec",
    "AlertingSpec",
    "AnomalySpec",
    "EmailSpec",
    "QuietHoursSpec",
    "SmtpSpec",
    "env_reference",
]

AlertKind = Literal[
    "failure",
    "recovery",
    "duration",
    "stale",
    "sensor_unhealthy",
    "correlation_timeout",
    "anomaly",
]
ALERT_KINDS: tuple[str, ...] = AlertKind.__args__  # type: ignore[attr-defined]
#: Kinds that need ``over:`` (how long is too long).
TIMED_KINDS = ("duration", "stale")

_ENV_TEMPLATE = re.compile(r"^\{\{\s*env\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
_CLOCK_TIME = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")


def env_reference(value: str) -> str | None:
    """The variable ``env:NAME`` or ``{{ env.NAME }}`` reads, ``None`` for a plain value."""
    if value.startswith("env:"):
        return value[4:]
    match = _ENV_TEMPLATE.match(value)
    return match.group(1) if match else None


def _url_or_env(value: str) -> str:
    variable = env_reference(value)
    if variable is not None:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", variable):
            raise ValueError(f"{value!r}: env: needs a variable name (env:ALERT_URL)")
        return value
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError(
            f"{value!r} is not an http(s) URL; write https://..., env:VARIABLE"
            " or {{ env.VARIABLE }}"
        )
    return value


def _address(value: str) -> str:
    if not _ADDRESS.match(value):
        raise ValueError(f"{value!r} is not an email address (name@example.com)")
    return value


Url = Annotated[str, Field(min_length=1)]
Address = Annotated[str, Field(min_length=3)]


class EmailSpec(Spec):
    """``email: {to: [...], from: ..., subject: ...}``: sent through ``alerting.smtp``."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    to: list[Address] = Field(min_length=1)
    from_: Address | None = Field(None, alias="from")
    #: The subject's start; the alert's own words follow it.
    subject: str | None = Field(None, min_length=1)

    @field_validator("to", mode="before")
    @classmethod
    def _single(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return [_address(v) for v in value]

    @field_validator("from_")
    @classmethod
    def _from_address(cls, value: str | None) -> str | None:
        return _address(value) if value is not None else None


class AlertSpec(Spec):
    """One alert: what (``on``), where (one destination) and, optionally, its own fatigue
    settings (``group_window``, ``cooldown``; ``alerting:`` of ``reactor.yaml`` otherwise)."""

    on: AlertKind
    #: ``duration``: a run running longer; ``stale``: a trigger not firing for longer.
    over: Duration | None = Field(None, gt=0)
    webhook: Url | None = None
    slack: Url | None = None
    email: EmailSpec | None = None
    group_window: Duration | None = Field(None, ge=0)
    cooldown: Duration | None = Field(None, gt=0)

    @field_validator("webhook", "slack")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        return _url_or_env(value) if value is not None else None

    @model_validator(mode="after")
    def _consistent(self) -> AlertSpec:
        given = [k for k in ("webhook", "slack", "email") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "an alert needs exactly one destination: webhook:, slack: or email:"
                + (f" (this one has {', '.join(given)})" if given else "")
            )
        if self.on in TIMED_KINDS and self.over is None:
            what = "a run may run" if self.on == "duration" else "a trigger may go without firing"
            raise ValueError(f"on: {self.on} needs over: (how long {what}, e.g. 30m)")
        if self.on not in TIMED_KINDS and self.over is not None:
            raise ValueError(f"over: belongs to on: duration and on: stale, not on: {self.on}")
        return self

    @property
    def destination(self) -> str:
        """Which destination this alert uses: ``webhook``, ``slack`` or ``email``."""
        return "webhook" if self.webhook else "slack" if self.slack else "email"


class SmtpSpec(Spec):
    """``alerting.smtp``: the mail server email alerts go through."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    host: str = Field(min_length=1)
    port: int = Field(25, ge=1, le=65535)
    user: str | None = Field(None, min_length=1)
    #: ``env:VARIABLE``: the password never sits in the file.
    password: str | None = None
    starttls: bool = False
    #: The sender when an alert's ``email:`` gives no ``from:``.
    from_: Address = Field("reactor@localhost", alias="from")
    #: Seconds to wait for the server.
    timeout: Duration = Field(30.0, gt=0)

    @field_validator("password")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is not None and not (value.startswith("env:") and value[4:]):
            raise ValueError("password: write env:VARIABLE, so the secret never sits in a file")
        return value

    @field_validator("from_")
    @classmethod
    def _from_address(cls, value: str) -> str:
        return _address(value)

    @model_validator(mode="after")
    def _user_and_password(self) -> SmtpSpec:
        if (self.user is None) != (self.password is None):
            raise ValueError("user: and password: go together")
        return self


def _clock_time(value: Any) -> time:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads 22:00 unquoted as a base-60 number (1320).
        value = f"{value // 60}:{value % 60:02d}"
    match = _CLOCK_TIME.match(str(value)) if isinstance(value, str | int) else None
    if match is None:
        raise ValueError(f'{value!r} is not a time of day; write HH:MM, e.g. "22:00"')
    return time(int(match.group(1)), int(match.group(2)))


class QuietHoursSpec(Spec):
    """``quiet_hours: {from: "22:00", to: "07:00", timezone: Europe/Amsterdam}``."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    from_: time = Field(alias="from")
    to: time
    timezone: str = "UTC"

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _time(cls, value: Any) -> time:
        return _clock_time(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r} (an IANA name, e.g. Europe/Amsterdam)"
            ) from None
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHoursSpec:
        if self.from_ == self.to:
            raise ValueError("quiet_hours from: and to: are the same time; remove quiet_hours")
        return self


class AnomalySpec(Spec):
    """``alerting.anomaly``: how far from usual is an ``anomaly``."""

    #: Finished runs a run's duration is compared with (at least this many must exist).
    runs: int = Field(20, ge=5, le=1000)
    #: How many robust standard deviations (1.4826 MAD) from the median is far.
    threshold: float = Field(5.0, gt=0)
    #: The window event counts are taken over, for a trigger's event rate.
    rate_window: Duration = Field(3600.0, ge=60)
    #: How many earlier windows make the usual level (at least half must have passed).
    rate_windows: int = Field(24, ge=4, le=1000)


def _empty(value: Any) -> Any:
    return {} if value is None else value


class AlertingSpec(Spec):
    """``alerting:`` in ``reactor.yaml``: the SMTP server, fatigue defaults, quiet hours."""

    smtp: SmtpSpec | None = None
    #: Occurrences this long after an incident's first message are folded into one follow-up.
    group_window: Duration = Field(300.0, ge=0)
    #: After a follow-up (or any later message), no message for the same key before this.
    cooldown: Duration = Field(1800.0, gt=0)
    quiet_hours: QuietHoursSpec | None = None
    #: Where the web UI is reached, for links to runs in messages (``https://reactor.example``).
    base_url: str | None = Field(None, pattern=r"^https?://\S+$")
    anomaly: AnomalySpec = AnomalySpec()

    @field_validator("anomaly", mode="before")
    @classmethod
    def _anomaly_defaults(cls, value: Any) -> Any:
        return _empty(value)
