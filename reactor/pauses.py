"""Paused pipelines and triggers: what is paused, by whom, and what resuming did."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Pause", "Resumed", "pause_key", "paused_triggers"]


@dataclass(frozen=True, slots=True)
class Pause:
    """A paused pipeline (``key`` is its name) or trigger (``key`` is ``pipeline/trigger-id``)."""

    key: str
    paused_at: datetime
    actor: str

    @property
    def reason(self) -> str:
        """What an event's outcome says for a trigger this pause holds."""
        return f"paused by {self.actor} since {self.paused_at.isoformat()}"

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "paused_at": self.paused_at.isoformat(), "actor": self.actor}


@dataclass(frozen=True, slots=True)
class Resumed:
    """What resuming did: the events received while paused, replayed or dropped."""

    pause: Pause
    replayed: int = 0
    dropped: int = 0
    run_ids: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.pause.key,
            "paused_at": self.pause.paused_at.isoformat(),
            "paused_by": self.pause.actor,
            "replayed": self.replayed,
            "dropped": self.dropped,
            "run_ids": self.run_ids,
        }


def pause_key(pipeline: str, trigger_id: str | None = None) -> str:
    """The key a pause is stored under: the pipeline's name, or its trigger's key."""
    return pipeline if trigger_id is None else f"{pipeline}/{trigger_id}"


def paused_triggers(
    trigger_keys: Iterable[tuple[str, str]], pauses: Mapping[str, Pause]
) -> dict[str, Pause]:
    """For each ``(pipeline, trigger key)``, the pause that holds it (its own first, then its
    pipeline's), so the rule loop looks each candidate up once."""
    held: dict[str, Pause] = {}
    if not pauses:
        return held
    for pipeline, key in trigger_keys:
        pause = pauses.get(key) or pauses.get(pipeline)
        if pause is not None:
            held[key] = pause
    return held
