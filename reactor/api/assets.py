"""``GET /api/assets`` (every asset with its last write, writers and readers) and
``GET /api/assets/{asset}`` (one asset's reads and writes, newest first, paged)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from reactor.assets import normalize_asset

if TYPE_CHECKING:
    from reactor.service import Reactor

__all__ = ["MAX_ASSETS", "asset_routes"]

#: The most assets or uses one answer holds.
MAX_ASSETS = 10_000


def asset_routes(reactor: Reactor) -> APIRouter:
    router = APIRouter()

    @router.get("/api/assets")
    async def assets(limit: int = Query(1000, ge=1, le=MAX_ASSETS)) -> Response:
        found = await reactor.store.list_assets(limit=limit)
        return JSONResponse([a.to_json() for a in found])

    @router.get("/api/assets/{asset:path}")
    async def asset_history(
        asset: str,
        request: Request,
        limit: int = Query(100, ge=1, le=MAX_ASSETS),
        cursor: int | None = Query(None, ge=1),
    ) -> Response:
        try:
            name = normalize_asset(asset)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        found = await reactor.store.asset_history(name, limit=limit, before=cursor)
        if not found and cursor is None:
            return JSONResponse(
                {"error": f"no task has read or written asset {name!r}"}, status_code=404
            )
        headers = {}
        if len(found) == limit:
            url = request.url.include_query_params(cursor=found[-1][0])
            headers["Link"] = f'<{url}>; rel="next"'
        return JSONResponse([{"seq": seq, **use.to_json()} for seq, use in found], headers=headers)

    return router
