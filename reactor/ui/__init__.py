"""The web UI: server-rendered pages at ``/``, kept live over Server-Sent Events."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from reactor.ui.actions import action_routes
from reactor.ui.assets import asset_routes
from reactor.ui.hub import LiveHub
from reactor.ui.pages import page_routes
from reactor.ui.stream import stream_routes

if TYPE_CHECKING:
    from reactor.service import Reactor

__all__ = ["LiveHub", "mount_ui"]

STATIC = Path(__file__).resolve().parent / "static"


def mount_ui(app: FastAPI, reactor: Reactor) -> LiveHub:
    """Add the UI's pages, actions, streams and static files to ``app``; the hub it
    returns is told of every run, task and event change by ``reactor``."""
    hub = LiveHub()
    reactor.observers.append(hub)
    reactor.event_observers.append(hub)
    reactor.before_http_stops.append(hub.close_all)
    app.include_router(page_routes(reactor))
    app.include_router(action_routes(reactor))
    app.include_router(stream_routes(reactor, hub))
    app.include_router(asset_routes(reactor))
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    return hub
