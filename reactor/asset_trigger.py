"""``on: asset``: start a pipeline when a task of another pipeline wrote an asset it reads."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, PrivateAttr, field_validator

from reactor.assets import ASSET_EVENT_SOURCE, ASSET_EVENT_TYPE, normalize_pattern
from reactor.events import Event
from reactor.specs import EventFilter, TriggerSpec

__all__ = ["AssetTriggerSpec"]


class AssetTriggerSpec(TriggerSpec):
    """``on: asset``: a task of another pipeline that succeeded wrote an asset matching
    ``assets:`` (URIs or globs); without ``assets:``, one of the ``inputs:`` this
    pipeline's own tasks declare. A pipeline's own writes never start it."""

    on: Literal["asset"]
    assets: list[Annotated[str, AfterValidator(normalize_pattern)]] | None = Field(
        None, min_length=1
    )
    #: Set when the pipeline is compiled: its name, and the patterns ``assets:`` stands for.
    _pipeline: str = PrivateAttr("")
    _patterns: tuple[str, ...] = PrivateAttr(())

    @field_validator("assets", mode="before")
    @classmethod
    def _single_asset(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def bound(self, pipeline: str, inputs: Iterable[str]) -> AssetTriggerSpec:
        """This trigger of ``pipeline``, whose tasks declare ``inputs`` (patterns)."""
        copy = self.model_copy()
        copy._pipeline = pipeline
        copy._patterns = tuple(self.assets) if self.assets is not None else tuple(inputs)
        return copy

    @property
    def patterns(self) -> tuple[str, ...]:
        return self._patterns

    def event_filter(self, trigger_key: str) -> EventFilter:
        return EventFilter(ASSET_EVENT_TYPE, ASSET_EVENT_SOURCE)

    def accepts(self, event: Event) -> bool:
        data = event.data if isinstance(event.data, dict) else {}
        if data.get("pipeline") == self._pipeline:
            return False  # its own write: a pipeline never starts itself
        asset = event.subject or ""
        return any(fnmatch.fnmatchcase(asset, p) for p in self._patterns)
