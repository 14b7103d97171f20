"""The UI's asset pages: ``/assets`` (the graph of tasks and the assets they read and
write) and ``/assets/{asset}`` (one asset's history, with links to the runs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from fastapi import APIRouter, Query
from fastapi.responses import Response

from reactor.assets import AssetSummary, normalize_asset
from reactor.expressions import is_template
from reactor.ui.layout import Layout, layered
from reactor.ui.pages import html, not_found
from reactor.ui.render import render

if TYPE_CHECKING:
    from reactor.pipelines import Pipeline
    from reactor.service import Reactor

__all__ = ["AssetGraph", "asset_graph", "asset_routes"]

#: Assets drawn at most on ``/assets`` (the table lists them all up to this too).
MAX_ASSETS = 2000
HISTORY_PAGE = 100


def asset_href(asset: str) -> str:
    return "/assets/" + quote(asset, safe="")


def task_label(pipeline: str, task: str) -> str:
    # Spaces never occur in an asset's name, so a task's label cannot be taken for one.
    return f"{pipeline} · {task}"


@dataclass(frozen=True)
class GraphNode:
    id: str
    kind: str  # asset | task
    href: str
    #: ``recorded`` (seen in a run) or ``declared`` (only written in a pipeline file).
    seen: str


@dataclass(frozen=True)
class AssetGraph:
    nodes: list[GraphNode]
    layout: Layout


def _declared(pipelines: dict[str, Pipeline]) -> list[tuple[str, str, str, str]]:
    """``(pipeline, task, direction, asset)`` of every literal ``inputs:``/``outputs:``
    (a loop's own and its task's); a templated one names no one asset."""
    found: list[tuple[str, str, str, str]] = []
    for name, pipeline in pipelines.items():
        for task in pipeline.tasks.values():
            for spec in (task.spec, *((task.inner.spec,) if task.inner else ())):
                for direction, assets in (("read", spec.inputs), ("write", spec.outputs)):
                    found.extend(
                        (name, task.id, direction, a) for a in assets if not is_template(a)
                    )
    return found


def asset_graph(summaries: list[AssetSummary], pipelines: dict[str, Pipeline]) -> AssetGraph:
    """Tasks and assets as nodes; an edge from each writer to its asset and from each
    asset to its readers: what runs recorded, and what loaded pipelines declare."""
    nodes: dict[str, GraphNode] = {}
    edges: list[tuple[str, str]] = []

    def task(pipeline: str, task_id: str, seen: str) -> str:
        label = task_label(pipeline, task_id)
        if label not in nodes or seen == "recorded":
            nodes[label] = GraphNode(label, "task", f"/pipelines/{quote(pipeline, safe='')}", seen)
        return label

    def asset(name: str, seen: str) -> str:
        if name not in nodes or seen == "recorded":
            nodes[name] = GraphNode(name, "asset", asset_href(name), seen)
        return name

    for summary in summaries:
        asset(summary.asset, "recorded")
        for pipeline, task_id in summary.writers:
            edges.append((task(pipeline, task_id, "recorded"), summary.asset))
        for pipeline, task_id in summary.readers:
            edges.append((summary.asset, task(pipeline, task_id, "recorded")))
    for pipeline, task_id, direction, name in _declared(pipelines):
        job, thing = task(pipeline, task_id, "declared"), asset(name, "declared")
        edges.append((job, thing) if direction == "write" else (thing, job))
    return AssetGraph(list(nodes.values()), layered(list(nodes), edges))


def asset_routes(reactor: Reactor) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/assets")
    async def assets_page() -> Response:
        summaries = await reactor.store.list_assets(limit=MAX_ASSETS)
        graph = asset_graph(summaries, reactor.pipelines)
        return html(
            render(
                "assets.html",
                nav="assets",
                assets=summaries,
                graph=graph,
                href=asset_href,
                now=reactor.clock.now(),
            )
        )

    @router.get("/assets/{asset:path}")
    async def asset_page(asset: str, cursor: int | None = Query(None, ge=1)) -> Response:
        try:
            name = normalize_asset(asset)
        except ValueError as exc:
            return html(render("not_found.html", what=f"asset here: {exc}", nav="assets"), 404)
        uses = await reactor.store.asset_history(name, limit=HISTORY_PAGE, before=cursor)
        if not uses and cursor is None:
            return not_found(f"asset {name!r}: no task has read or written it")
        older = uses[-1][0] if len(uses) == HISTORY_PAGE else None
        return html(
            render(
                "asset.html",
                nav="assets",
                asset=name,
                uses=[use for _, use in uses],
                older=f"{asset_href(name)}?cursor={older}" if older else None,
                paged=cursor is not None,
                href=asset_href,
            )
        )

    return router
