"""Running uvicorn inside Reactor's task group, on a socket bound before it says it started."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from anyio.abc import TaskStatus
from fastapi import FastAPI

from reactor.errors import ReactorError

__all__ = ["serve_http"]


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the CLI owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on accepted sockets whose proto
    # says TCP; with proto 0 every response waited ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ReactorError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def serve_http(app: FastAPI, host: str, port: int, *, task_status: TaskStatus[int]) -> None:
    """Serve ``app`` until cancelled; ``task_status.started(port)`` once listening."""
    sock = _bind(host, port)
    # log_config=None: uvicorn's lines go through the service's own handler (text or JSON).
    config = uvicorn.Config(
        app,
        log_level="warning",
        log_config=None,
        lifespan="off",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = _Server(config)
    task_status.started(sock.getsockname()[1])
    try:
        await server.serve(sockets=[sock])
    finally:
        server.should_exit = True
        # Cancelled, uvicorn never closes its asyncio servers: close them first, so the
        # event loop stops watching the socket before it is closed. Closed under it, the
        # loop kept a stale entry for the descriptor, and the next server given the same
        # descriptor (a second service in this process) was never watched: it accepted
        # nothing.
        for listening in getattr(server, "servers", ()):
            listening.close()
        sock.close()
