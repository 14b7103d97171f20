"""The Event: CloudEvents 1.0 attributes plus data, with its identity and dedupe key."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from reactor.errors import ReactorError

__all__ = ["Event", "InvalidEvent", "content_id", "logical_scope", "new_id"]

_CORE_ATTRIBUTES = ("id", "source", "type", "specversion", "subject", "time", "datacontenttype")


class InvalidEvent(ReactorError):
    """An event does not follow CloudEvents 1.0 closely enough to be accepted."""


def new_id() -> str:
    """A new identifier that sorts by creation time (48-bit ms clock + 80 random bits)."""
    millis = time.time_ns() // 1_000_000
    return f"{millis:012x}{os.urandom(10).hex()}"


def content_id(*parts: object) -> str:
    """A stable identifier derived from content, so the same observation dedupes."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return digest[:32]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def logical_scope(event: Event | None, fallback: datetime) -> dict[str, str]:
    """What templates see as ``logical``: the instant and interval a run stands for.

    An event that carries them (a schedule tick: ``logical_time``, ``logical_start``,
    ``logical_end`` in its data) gives them; otherwise all three are ``fallback``.
    """
    data = event.data if event is not None else None
    if isinstance(data, dict) and isinstance(data.get("logical_time"), str):
        time = data["logical_time"]
        return {
            "time": time,
            "start": str(data.get("logical_start") or time),
            "end": str(data.get("logical_end") or time),
        }
    moment = fallback.isoformat()
    return {"time": moment, "start": moment, "end": moment}


@dataclass(frozen=True, slots=True)
class Event:
    """One observation. ``(source, id)`` identifies it; a repeat is a duplicate."""

    type: str
    source: str
    data: Any = None
    id: str = field(default_factory=new_id)
    time: datetime = field(default_factory=_utcnow)
    subject: str | None = None
    datacontenttype: str = "application/json"
    extensions: dict[str, Any] = field(default_factory=dict)

    @property
    def dedupe_key(self) -> tuple[str, str]:
        return (self.source, self.id)

    def to_cloudevent(self) -> dict[str, Any]:
        """The structured-mode JSON form of CloudEvents 1.0."""
        out: dict[str, Any] = {
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time.isoformat(),
            "datacontenttype": self.datacontenttype,
        }
        if self.subject is not None:
            out["subject"] = self.subject
        out.update(self.extensions)
        out["data"] = self.data
        return out

    def scope(self) -> dict[str, Any]:
        """What templates see as ``event``."""
        return self.to_cloudevent()

    @classmethod
    def from_cloudevent(cls, body: Any, *, default_source: str) -> Event:
        """Build an event from structured-mode JSON; ``id``/``source``/``specversion`` optional."""
        if not isinstance(body, dict):
            raise InvalidEvent("an event must be a JSON object")
        spec = body.get("specversion", "1.0")
        if spec != "1.0":
            raise InvalidEvent(f"specversion {spec!r} is not supported; use '1.0'")
        etype = body.get("type")
        if not isinstance(etype, str) or not etype:
            raise InvalidEvent("'type' is required and must be a non-empty string")
        for name in ("id", "source", "subject", "datacontenttype"):
            value = body.get(name)
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidEvent(f"'{name}' must be a non-empty string")
        when = _utcnow()
        if body.get("time") is not None:
            raw = body["time"]
            try:
                when = datetime.fromisoformat(str(raw))
            except ValueError:
                raise InvalidEvent(f"'time' {raw!r} is not an RFC 3339 timestamp") from None
            if when.tzinfo is None:
                raise InvalidEvent(f"'time' {raw!r} has no UTC offset")
        extensions = {k: v for k, v in body.items() if k not in (*_CORE_ATTRIBUTES, "data")}
        for name in extensions:
            if not (name.isascii() and name.isalnum() and name.islower()):
                raise InvalidEvent(
                    f"extension attribute {name!r} must be lower-case letters and digits"
                )
        return cls(
            type=etype,
            source=body.get("source") or default_source,
            id=body.get("id") or new_id(),
            data=body.get("data"),
            time=when,
            subject=body.get("subject"),
            datacontenttype=body.get("datacontenttype") or "application/json",
            extensions=extensions,
        )

    def to_json(self) -> str:
        return json.dumps(self.to_cloudevent(), default=str, separators=(",", ":"))
