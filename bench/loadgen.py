"""A load generator for Reactor's HTTP benchmarks, run as its own process.

Keep-alive HTTP/1.1 over N connections, one request in flight on each, the
request bytes built and signed before the clock starts, and only the status
line and Content-Length read from each response: so the figure is the
server's, not the client's (the generator's own CPU time is reported too).
Only the standard library and, when installed, uvloop: the server's process
is not importing anything on its behalf.

    python bench/loadgen.py --url http://127.0.0.1:8080/hooks/github \\
        --github-secret-file secret.txt --connections 50 --seconds 5

prints one JSON object: requests/s over the measured window, p50/p99 latency,
the status of every response (warm-up and drain included) and any errors.
``--floor-server`` instead serves a bare HTTP/1.1 server that answers every
request 202 with a fixed body (the plain-asyncio floor) and prints its port.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import math
import resource
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import urlsplit

__all__ = ["build_requests", "main"]


def build_requests(
    url: str,
    count: int,
    *,
    secret: bytes | None = None,
    headers: Sequence[tuple[str, str]] = (),
    content_type: str = "application/json",
) -> list[bytes]:
    """``count`` distinct POST requests to ``url``, each a complete HTTP/1.1 message.

    Bodies are small JSON objects that differ per request; with ``secret`` each
    carries GitHub's ``X-Hub-Signature-256`` (HMAC-SHA256 of the body, hex).
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise SystemExit(f"--url {url!r}: only http://HOST:PORT/PATH is supported")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.netloc
    fixed = [f"POST {target} HTTP/1.1", f"Host: {host}"]
    if content_type:
        fixed.append(f"Content-Type: {content_type}")
    fixed += [f"{name}: {value}" for name, value in headers]
    requests = []
    for n in range(count):
        body = json.dumps(
            {"ref": "refs/heads/main", "n": n, "pusher": {"name": "loadgen"}},
            separators=(",", ":"),
        ).encode()
        lines = list(fixed)
        if secret is not None:
            digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
            lines.append(f"X-Hub-Signature-256: sha256={digest}")
        lines.append(f"Content-Length: {len(body)}")
        requests.append(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    return requests


class _Run:
    """What all connections share: the requests, the clock's phases and the tallies."""

    def __init__(self, requests: list[bytes], expect: int, body_contains: bytes | None) -> None:
        self.requests = requests
        self.next = 0
        self.expect = expect
        self.body_contains = body_contains
        self.sending = True
        self.window_start = math.inf
        self.window_end = math.inf
        self.latencies: list[float] = []
        self.window_statuses: Counter[int] = Counter()
        self.statuses: Counter[int] = Counter()
        self.bad_bodies = 0
        self.errors: list[str] = []
        self.samples: dict[int, bytes] = {}

    def request(self) -> bytes:
        request = self.requests[self.next]
        self.next = (self.next + 1) % len(self.requests)
        return request

    def answered(self, status: int, body: bytes, sent: float, now: float) -> None:
        self.statuses[status] += 1
        self.samples.setdefault(status, body[:300])
        contains = self.body_contains
        if status == self.expect and contains is not None and contains not in body:
            self.bad_bodies += 1
        if self.window_start <= now < self.window_end:
            self.window_statuses[status] += 1
            if status == self.expect:
                self.latencies.append(now - sent)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: send a request, read its response, send the next."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.sent = 0.0
        self.waiting = False
        loop = asyncio.get_running_loop()
        self.finished: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def start(self) -> None:
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        if not self.run.sending:
            self._finish()
            return
        self.waiting = True
        self.sent = time.perf_counter()
        self.transport.write(self.run.request())

    def _finish(self, error: str | None = None) -> None:
        if error is not None:
            self.run.errors.append(error)
        if not self.finished.done():
            self.finished.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buffer = self.buffer + data if self.buffer else data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            self.buffer = buffer
            return
        head = buffer[:end].split(b"\r\n")
        status_line = head[0]
        if not status_line.startswith(b"HTTP/1.1 ") or not self.waiting:
            self._abort(f"unexpected response: {buffer[:200]!r}")
            return
        length = -1
        close = False
        for line in head[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" or (
                name == b"connection" and value.strip().lower() == b"close"
            ):
                close = True
        if length < 0 or close:
            self._abort(f"response without Content-Length or not keep-alive: {head!r}")
            return
        total = end + 4 + length
        if len(buffer) < total:
            self.buffer = buffer
            return
        if len(buffer) > total:
            self._abort(f"bytes after the response: {buffer[total:][:200]!r}")
            return
        self.buffer = b""
        self.waiting = False
        self.run.answered(int(status_line[9:12]), buffer[end + 4 :], self.sent, now)
        self._send()

    def _abort(self, error: str) -> None:
        self._finish(error)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiting or not self.finished.done():
            self._finish(f"connection lost{' with a request in flight' if self.waiting else ''}")


def _percentile(ordered: list[float], q: float) -> float:
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


async def _generate(args: argparse.Namespace) -> dict[str, Any]:
    secret = None
    if args.github_secret_file:
        with open(args.github_secret_file, "rb") as file:
            secret = file.read().strip()
    headers = []
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep:
            raise SystemExit(f"--header {header!r}: expected 'Name: value'")
        headers.append((name.strip(), value.strip()))
    requests = build_requests(
        args.url, args.distinct, secret=secret, headers=headers, content_type=args.content_type
    )
    contains = args.body_contains.encode() if args.body_contains else None
    run = _Run(requests, args.expect, contains)
    parts = urlsplit(args.url)
    loop = asyncio.get_running_loop()
    connections: list[_Connection] = []
    for _ in range(args.connections):
        _, connection = await loop.create_connection(
            lambda: _Connection(run), parts.hostname, parts.port or 80
        )
        sock = connection.transport.get_extra_info("socket") if connection.transport else None
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connections.append(connection)

    started = time.perf_counter()
    run.window_start = started + args.warmup
    run.window_end = run.window_start + args.seconds
    for connection in connections:
        connection.start()
    await asyncio.sleep(args.warmup)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.sleep(max(run.window_end - time.perf_counter(), 0))
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    run.sending = False
    drain_start = time.perf_counter()
    _, pending = await asyncio.wait([c.finished for c in connections], timeout=args.drain_timeout)
    drained = time.perf_counter() - drain_start
    if pending:
        run.errors.append(
            f"{len(pending)} requests unanswered {args.drain_timeout:g}s after the end"
        )
    for connection in connections:
        if connection.transport is not None:
            connection.transport.close()

    ordered = sorted(run.latencies)
    completed = len(ordered)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    result: dict[str, Any] = {
        "url": args.url,
        "connections": args.connections,
        "window_s": args.seconds,
        "warmup_s": args.warmup,
        "completed": completed,
        "requests_per_s": completed / args.seconds,
        "window_statuses": {str(k): v for k, v in sorted(run.window_statuses.items())},
        "statuses": {str(k): v for k, v in sorted(run.statuses.items())},
        "responses": sum(run.statuses.values()),
        "bad_bodies": run.bad_bodies,
        "errors": run.errors[:20],
        "error_count": len(run.errors),
        "drain_s": drained,
        "loadgen_cpu_share": cpu / args.seconds,
        "samples": {str(k): v.decode("utf-8", "replace") for k, v in run.samples.items()},
    }
    if ordered:
        result |= {
            "p50_ms": _percentile(ordered, 50) * 1000,
            "p99_ms": _percentile(ordered, 99) * 1000,
            "mean_ms": sum(ordered) / completed * 1000,
            "max_ms": ordered[-1] * 1000,
        }
    return result


class _FloorServer(asyncio.Protocol):
    """A bare HTTP/1.1 server: reads each request by its Content-Length, answers 202."""

    BODY = b'{"event_id":"01JFLOOR0000000000000000","run_ids":["01JFLOOR0000000000000001"]}'
    ANSWER = (
        b"HTTP/1.1 202 Accepted\r\ncontent-length: "
        + str(len(BODY)).encode()
        + b"\r\ncontent-type: application/json\r\n\r\n"
        + BODY
    )

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self.buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(self.ANSWER)


async def _serve_floor() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_FloorServer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    server.close()


def _run(coroutine: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loadgen.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="http://HOST:PORT/PATH to POST to")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0, help="the measured window")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds not measured first")
    parser.add_argument("--drain-timeout", type=float, default=30.0)
    parser.add_argument("--distinct", type=int, default=1024, help="distinct request bodies")
    parser.add_argument("--github-secret-file", help="sign each body as GitHub does")
    parser.add_argument("--content-type", default="application/json")
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("--expect", type=int, default=202, help="the status that counts")
    parser.add_argument("--body-contains", help="bytes every expected response body must hold")
    parser.add_argument("--floor-server", action="store_true", help="serve the bare floor")
    args = parser.parse_args(argv)
    if args.floor_server:
        _run(_serve_floor())
        return 0
    if not args.url:
        parser.error("--url is required")
    if args.connections < 1 or args.seconds <= 0 or args.warmup < 0:
        parser.error("--connections must be >= 1, --seconds > 0, --warmup >= 0")
    result = _run(_generate(args))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
