"""Who did what: one entry per operator action (run, cancel, pause, backfill, repair...)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["AuditEntry"]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """``actor`` did ``action`` to ``target`` (a pipeline, run, backfill or event) at ``time``."""

    time: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any] | None = None
    seq: int | None = None

    def detail_text(self) -> str | None:
        return None if self.detail is None else json.dumps(self.detail, default=str)

    @staticmethod
    def detail_from(text: str | None) -> dict[str, Any] | None:
        return None if text is None else json.loads(text)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "detail": self.detail,
        }
