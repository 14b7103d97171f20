"""The UI's Jinja2 templates and the filters they format times, durations and JSON with."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from reactor.dag import FINAL_TASK_STATES
from reactor.store.records import FINAL_RUN_STATES

__all__ = ["FINAL_RUN", "FINAL_TASK", "render", "short_duration"]

FINAL_RUN = FINAL_RUN_STATES
FINAL_TASK = FINAL_TASK_STATES


def when(value: datetime | str | None) -> str:
    """``2026-11-26 13:05:02`` (UTC); the page's script shows it in the browser's zone."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def iso(value: datetime | str | None) -> str:
    if isinstance(value, str):
        return value
    return value.isoformat() if value is not None else ""


def short_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def between(start: datetime | None, end: datetime | None, now: datetime | None = None) -> str:
    if start is None:
        return ""
    finish = end or now
    if finish is None:
        return ""
    return short_duration((finish - start).total_seconds())


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, separators=(", ", ": "))


_ENV = Environment(
    loader=PackageLoader("reactor.ui", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)
_ENV.filters.update(
    when=when, iso=iso, duration=short_duration, pretty=pretty, compact=compact, between=between
)
_ENV.globals.update(FINAL_RUN=FINAL_RUN, FINAL_TASK=FINAL_TASK)


def render(template: str, **context: Any) -> str:
    return _ENV.get_template(template).render(**context)
