"""The HTTP API served by ``reactor serve``: runs, events, pipelines and health."""

from reactor.api.app import create_app
from reactor.api.server import serve_http

__all__ = ["create_app", "serve_http"]
