"""Signed webhook request -> 202: latency and sustained requests/s with concurrent clients."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable

import anyio
import httpx

from bench.measure import Figure, summary
from bench.workspace import Workspace
from reactor.service import Reactor, Settings
from reactor.store import SqliteStore

__all__ = ["webhook_throughput"]

SECRET = b"bench-secret"

PIPELINE = """\
name: bench_webhook
concurrency: {max_active_runs: 64}
triggers:
  - on: webhook
    name: bench
    signature: github
    secret: file:secret.txt
    params: {}
tasks:
  - id: first
    python: "{module}:noop"
"""

Report = Callable[[str], None]


def _quiet(_line: str) -> None:
    return None


async def webhook_throughput(
    seconds: float = 5.0, clients: int = 50, report: Report = _quiet
) -> list[Figure]:
    """``clients`` httpx clients post GitHub-signed bodies for ``seconds``, SQLite store.

    Every request is verified, stored with the run it starts, and answered 202 once the
    run is admitted; the runs execute meanwhile (a no-op python task each). Client and
    server share this process and its two cores, so the figure includes the clients' cost.
    """
    latencies: list[float] = []
    failures: list[str] = []
    with Workspace() as ws:
        ws.write("bench_webhook", PIPELINE)
        (ws.pipelines / "secret.txt").write_bytes(SECRET)
        ws.tasks()
        settings = Settings(http=("127.0.0.1", 0), reload=False)
        async with Reactor(ws.pipelines, SqliteStore(ws.database), settings=settings) as reactor:
            url = f"http://127.0.0.1:{reactor.http_port}"
            deadline = 0.0

            # Made before the clock starts: each one loads the CA bundle (about 25 ms).
            https = [
                httpx.AsyncClient(
                    base_url=url, timeout=30.0, limits=httpx.Limits(max_connections=1)
                )
                for _ in range(clients)
            ]

            async def client(number: int) -> None:
                async with https[number] as http:
                    sent = 0
                    while time.perf_counter() < deadline or sent < 2:
                        body = json.dumps({"client": number, "n": sent}).encode()
                        digest = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
                        headers = {
                            "content-type": "application/json",
                            "x-hub-signature-256": f"sha256={digest}",
                        }
                        before = time.perf_counter()
                        response = await http.post("/hooks/bench", content=body, headers=headers)
                        elapsed = (time.perf_counter() - before) * 1000
                        if response.status_code != 202 or len(response.json()["run_ids"]) != 1:
                            failures.append(f"{response.status_code} {response.text}")
                            return
                        if sent >= 1:  # the first request of each client opens its connection
                            latencies.append(elapsed)
                        sent += 1

            report(f"  {clients} clients for {seconds:g}s")
            started = time.perf_counter()
            deadline = started + seconds
            async with anyio.create_task_group() as tg:
                for number in range(clients):
                    tg.start_soon(client, number)
            window = time.perf_counter() - started
            drain_start = time.perf_counter()
            while reactor.health()["active_runs"] or reactor.health()["queued_runs"]:
                await anyio.sleep(0.01)
            drain = time.perf_counter() - drain_start
    if failures:
        raise RuntimeError(f"webhook requests failed: {failures[:3]}")
    requests = len(latencies) + clients
    stats = summary(latencies)
    note = (
        f"POST /hooks/bench, GitHub HMAC, {clients} concurrent httpx clients in the same"
        " process, each request stored with its run and answered once admitted"
    )
    extra = {"requests": requests, "window_s": window, "runs_drained_after_s": drain}
    return [
        Figure(
            "webhooks",
            f"requests/s, {clients} clients",
            requests / window,
            "/s",
            target=2000.0,
            better="higher",
            note=note,
            extra=extra,
        ),
        Figure("webhooks", "request -> 202 p50", stats["p50"], "ms"),
        Figure(
            "webhooks",
            "request -> 202 p99",
            stats["p99"],
            "ms",
            target=50.0,
            extra={"mean_ms": stats["mean"], "max_ms": stats["max"]},
        ),
    ]
