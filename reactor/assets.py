"""Assets (tables, files, topics, URIs) that tasks read and write: their one canonical
spelling, what a task declares, the ``reactor.asset.updated`` event and ``on: asset``."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from reactor.errors import ExpressionError
from reactor.events import Event
from reactor.expressions import Template, is_template

__all__ = [
    "ASSET_COLUMNS",
    "ASSET_EVENT_SOURCE",
    "ASSET_EVENT_TYPE",
    "ASSET_GROUPS_SQL",
    "AssetSummary",
    "AssetUse",
    "DeclaredAssets",
    "Direction",
    "asset_event",
    "declared_asset",
    "last_seqs",
    "normalize_asset",
    "normalize_pattern",
    "summarize",
    "template_pattern",
]

#: A task that succeeded wrote an asset: ``subject`` is the asset, ``data`` is
#: ``{asset, run_id, task_id, pipeline}``.
ASSET_EVENT_TYPE = "reactor.asset.updated"
ASSET_EVENT_SOURCE = "reactor/assets"

Direction = Literal["read", "write"]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
_BARE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-/]*$")
_GLOB_CHARS = "*?["
#: Schemes written two ways; the first spelling is the canonical one.
_SCHEME_ALIASES = {"postgresql": "postgres"}
#: SQL databases fold unquoted names to lower case, so ``Public.Orders`` is ``public.orders``.
_CASE_FOLDED = frozenset({"postgres", "mysql"})


def normalize_asset(text: str, *, glob: bool = False) -> str:
    """The canonical spelling of an asset (rules in docs/lineage.md).

    - ``scheme://authority/path``: scheme and host in lower case (``postgresql`` is
      ``postgres``), no user or password, the path without a trailing ``/``; for
      ``postgres`` and ``mysql`` the path is lower case too.
    - ``file:///abs/path`` or ``/abs/path``: ``file:///abs/path`` with ``.``, ``..`` and
      doubled ``/`` resolved.
    - a bare name (``orders_clean``, ``warehouse.orders``): itself.

    ``glob``: ``*``, ``?`` and ``[...]`` are allowed (an ``on: asset`` pattern).
    Raises :class:`ValueError` saying what is wrong.
    """
    if not isinstance(text, str):
        raise ValueError(f"an asset is a string (a URI or a name), got {text!r}")  # noqa: TRY004
    value = text.strip()
    if not value:
        raise ValueError("an asset cannot be empty")
    if any(c.isspace() for c in value):
        raise ValueError(f"asset {text!r} contains whitespace")
    if not glob and any(c in value for c in _GLOB_CHARS):
        raise ValueError(f"asset {text!r} contains * ? or [: wildcards belong to on: asset")
    if value.startswith("/"):
        value = "file://" + value
    if "://" not in value:
        if ":" in value:
            raise ValueError(
                f"asset {text!r}: write a URI as scheme://... (file:///data/x.csv,"
                " postgres://warehouse/public.orders) or a bare name without ':'"
            )
        if not (_BARE.match(value) or (glob and _BARE.match(_unglob(value)))):
            raise ValueError(
                f"asset {text!r}: a bare name takes letters, digits, _ . - / (start with a"
                " letter, digit or _)"
            )
        return value.rstrip("/") or value
    scheme, _, rest = value.partition("://")
    if not _SCHEME.match(scheme):
        raise ValueError(f"asset {text!r}: {scheme!r} is not a URI scheme")
    scheme = scheme.lower()
    scheme = _SCHEME_ALIASES.get(scheme, scheme)
    if "#" in rest or (not glob and "?" in rest):
        raise ValueError(f"asset {text!r}: an asset URI has no query (?...) or fragment (#...)")
    authority, slash, path = rest.partition("/")
    path = slash + path
    if "@" in authority:
        authority = authority.rpartition("@")[2]  # credentials never become part of a name
    authority = authority.lower()
    if scheme == "file":
        if authority not in ("", "localhost"):
            raise ValueError(
                f"asset {text!r}: a file URI needs an absolute path, file:///data/orders.csv"
                " (three slashes)"
            )
        if not path:
            raise ValueError(f"asset {text!r}: a file URI needs a path")
        path = posixpath.normpath(path)
        # normpath keeps a leading "//" (POSIX allows it to mean something else).
        path = "/" + path.lstrip("/")
        return f"file://{path}"
    if not authority:
        raise ValueError(
            f"asset {text!r}: {scheme}:// needs a host, bucket, cluster or connection name"
            f" ({scheme}://NAME/...)"
        )
    if not glob:
        try:
            urlsplit(f"{scheme}://{authority}").port  # noqa: B018 - validates the port
        except ValueError as exc:
            raise ValueError(f"asset {text!r}: {exc}") from exc
    path = re.sub("/{2,}", "/", path).rstrip("/")
    if scheme in _CASE_FOLDED:
        path = path.lower()
    return f"{scheme}://{authority}{path}"


def _unglob(value: str) -> str:
    return re.sub(r"[*?]|\[[^\]]*\]", "x", value)


def normalize_pattern(text: str) -> str:
    """An ``on: asset`` pattern: an asset spelling with ``*``, ``?`` and ``[...]`` allowed."""
    return normalize_asset(text, glob=True)


#: Stands for a ``{{ }}`` part while a templated asset is normalised into a pattern.
_SLOT = "reactortemplateslot"


def template_pattern(text: str) -> str:
    """The pattern of every asset a templated declaration can render to: each ``{{ }}``
    part becomes ``*`` (``file://{{ params.dir }}/orders.csv`` matches
    ``file:///in/orders.csv``)."""
    if not is_template(text):
        return normalize_asset(text)
    replaced = re.sub(r"\{\{.*?\}\}", _SLOT, text, flags=re.S)
    if replaced.startswith(_SLOT):
        # A whole-URI template ("{{ params.target }}") can be any asset at all.
        return "*"
    return normalize_pattern(replaced).replace(_SLOT, "*")


def declared_asset(value: str) -> str:
    """One asset of ``inputs:``/``outputs:`` as written: a literal one normalised now, a
    templated one (``file://{{ params.path }}``) when the task runs."""
    return value if is_template(value) else normalize_asset(value)


class DeclaredAssets:
    """A task's ``inputs:`` and ``outputs:``, compiled; rendered per attempt."""

    __slots__ = ("_inputs", "_outputs", "inputs", "outputs")

    def __init__(self, inputs: Sequence[str], outputs: Sequence[str]) -> None:
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self._inputs = [self._compile(v, "inputs", i) for i, v in enumerate(inputs)]
        self._outputs = [self._compile(v, "outputs", i) for i, v in enumerate(outputs)]

    @staticmethod
    def _compile(value: str, key: str, index: int) -> Template | str:
        """Raises :class:`ExpressionError` with ``loc`` ``(key, index)``."""
        if not is_template(value):
            return value
        try:
            return Template(value)
        except ExpressionError as exc:
            raise ExpressionError(str(exc), (key, index)) from exc

    def __bool__(self) -> bool:
        return bool(self._inputs or self._outputs)

    def render(self, scope: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        """``(inputs, outputs)`` for one attempt, normalised. A template may render to one
        asset or a list of them. Raises :class:`ValueError` naming the bad one."""
        return _rendered(self._inputs, scope, "inputs"), _rendered(self._outputs, scope, "outputs")


def _rendered(items: Iterable[Template | str], scope: Mapping[str, Any], key: str) -> list[str]:
    found: list[str] = []
    for item in items:
        if isinstance(item, str):
            found.append(item)
            continue
        try:
            value = item.render(scope)
        except ExpressionError as exc:
            raise ValueError(f"{key}: {exc}") from exc
        for one in value if isinstance(value, list) else [value]:
            try:
                found.append(normalize_asset(one))
            except ValueError as exc:
                raise ValueError(f"{key}: {item.source!r} rendered {exc}") from exc
    return list(dict.fromkeys(found))


def asset_event(
    asset: str, *, pipeline: str, run_id: str, task_id: str, attempt: int, at: datetime
) -> Event:
    """``reactor.asset.updated``: one successful attempt wrote ``asset``; the id names the
    attempt and the asset, so a write recorded twice is one event."""
    return Event(
        type=ASSET_EVENT_TYPE,
        source=ASSET_EVENT_SOURCE,
        id=f"{run_id}/{task_id}/{attempt}/{asset}",
        time=at,
        subject=asset,
        data={"asset": asset, "run_id": run_id, "task_id": task_id, "pipeline": pipeline},
    )


@dataclass(frozen=True, slots=True)
class AssetUse:
    """One asset one successful attempt read or wrote (a row of the ``lineage`` table)."""

    asset: str
    direction: Direction
    run_id: str
    task_id: str
    attempt: int
    pipeline: str
    at: datetime

    def values(self) -> tuple[Any, ...]:
        """The row, in the column order of :data:`ASSET_COLUMNS`."""
        return (
            self.asset,
            self.direction,
            self.run_id,
            self.task_id,
            self.attempt,
            self.pipeline,
            self.at.isoformat(),
        )

    @classmethod
    def from_row(cls, row: Any) -> AssetUse:
        return cls(
            asset=row["asset"],
            direction=row["direction"],
            run_id=row["run_id"],
            task_id=row["task_id"],
            attempt=row["attempt"],
            pipeline=row["pipeline"],
            at=datetime.fromisoformat(row["at"]),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "direction": self.direction,
            "run_id": self.run_id,
            "task_id": self.task_id,
            "attempt": self.attempt,
            "pipeline": self.pipeline,
            "time": self.at.isoformat(),
        }


#: The columns of the ``lineage`` table, in the order of :meth:`AssetUse.values`.
ASSET_COLUMNS = "asset, direction, run_id, task_id, attempt, pipeline, at"
#: How the stores group the ``lineage`` table for :func:`summarize`.
ASSET_GROUPS_SQL = (
    "SELECT asset, direction, pipeline, task_id, COUNT(*) AS uses, MAX(seq) AS last_seq"
    " FROM lineage GROUP BY asset, direction, pipeline, task_id"
)


@dataclass(frozen=True, slots=True)
class AssetSummary:
    """One asset as ``GET /api/assets`` lists it: its last write, who writes and reads it."""

    asset: str
    writes: int
    reads: int
    last_write: AssetUse | None
    last_used: datetime
    #: ``(pipeline, task)`` pairs; a loop's iterations count as the loop.
    writers: tuple[tuple[str, str], ...]
    readers: tuple[tuple[str, str], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "writes": self.writes,
            "reads": self.reads,
            "last_write": self.last_write.to_json() if self.last_write else None,
            "last_used": self.last_used.isoformat(),
            "writers": [{"pipeline": p, "task": t} for p, t in self.writers],
            "readers": [{"pipeline": p, "task": t} for p, t in self.readers],
        }


def summarize(groups: Iterable[Any], last: Mapping[int, AssetUse]) -> list[AssetSummary]:
    """Assets in name order from the rows of :data:`ASSET_GROUPS_SQL` and the uses those
    rows' ``last_seq`` name."""
    by_asset: dict[str, list[Any]] = {}
    for row in groups:
        by_asset.setdefault(row["asset"], []).append(row)
    found = []
    for asset in sorted(by_asset):
        rows = by_asset[asset]
        writes = [r for r in rows if r["direction"] == "write"]
        reads = [r for r in rows if r["direction"] == "read"]
        last_write_seq = max((r["last_seq"] for r in writes), default=None)
        last_seq = max(r["last_seq"] for r in rows)
        found.append(
            AssetSummary(
                asset=asset,
                writes=sum(r["uses"] for r in writes),
                reads=sum(r["uses"] for r in reads),
                last_write=last.get(last_write_seq) if last_write_seq is not None else None,
                last_used=last[last_seq].at,
                writers=_jobs(writes),
                readers=_jobs(reads),
            )
        )
    return found


def _jobs(rows: Iterable[Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({(r["pipeline"], r["task_id"].partition("[")[0]) for r in rows}))


def last_seqs(groups: Iterable[Any]) -> list[int]:
    """The ``seq`` of each asset's last write and last use, to read those rows."""
    last: dict[str, int] = {}
    last_write: dict[str, int] = {}
    for row in groups:
        asset, seq = row["asset"], row["last_seq"]
        last[asset] = max(last.get(asset, seq), seq)
        if row["direction"] == "write":
            last_write[asset] = max(last_write.get(asset, seq), seq)
    return sorted({*last.values(), *last_write.values()})
