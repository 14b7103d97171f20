"""Signed webhook request -> 202 on a real ``reactor serve``: latency and sustained requests/s.

The server is a ``reactor serve`` subprocess on a SQLite store; the clients are
``bench/loadgen.py`` in another process (keep-alive HTTP/1.1, pre-signed
requests), so neither takes the other's event loop. Every request starts a run
of a no-op python task, and the benchmark waits until all of them ended and
counts those that succeeded in the store.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.measure import Figure
from bench.memory import _stop, _wait_for_port, start_serve, wait_idle
from bench.workspace import Workspace

__all__ = ["webhook_throughput"]

SECRET = b"bench-secret"
LOADGEN = Path(__file__).resolve().with_name("loadgen.py")

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


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


async def _loadgen(url: str, clients: int, seconds: float, secret_file: Path | None) -> Any:
    """Run bench/loadgen.py against ``url``; its JSON result."""
    command = [
        sys.executable,
        str(LOADGEN),
        "--url",
        url,
        "--connections",
        str(clients),
        "--seconds",
        f"{seconds:g}",
        "--warmup",
        f"{min(1.0, seconds):g}",
        "--body-contains",
        '"run_ids":["',
    ]
    if secret_file is not None:
        command += ["--github-secret-file", str(secret_file)]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"loadgen exited {process.returncode}: {err.decode()[-2000:]}")
    return json.loads(out)


def _check(result: dict[str, Any], what: str) -> None:
    wrong = {k: v for k, v in result["statuses"].items() if k != "202"}
    if wrong or result["error_count"] or result["bad_bodies"] or not result["completed"]:
        raise RuntimeError(
            f"{what}: statuses {result['statuses']}, {result['error_count']} errors"
            f" {result['errors'][:3]}, {result['bad_bodies']} bad bodies;"
            f" samples {result['samples']}"
        )


async def _floor(clients: int, seconds: float) -> Any:
    """The same load against a bare uvloop HTTP/1.1 server answering 202 (loadgen's floor)."""
    server = subprocess.Popen(
        [sys.executable, str(LOADGEN), "--floor-server"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert server.stdout is not None
        port = int(await asyncio.to_thread(server.stdout.readline))
        result = await _loadgen(f"http://127.0.0.1:{port}/hooks/bench", clients, seconds, None)
    finally:
        _stop(server)
    _check(result, "the floor server")
    return result


def _run_counts(database: Path) -> dict[str, int]:
    """Runs of the benchmark's pipeline by status, read from the store's file."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT status, count(*) FROM runs WHERE pipeline = 'bench_webhook' GROUP BY status"
        ).fetchall()
    finally:
        conn.close()
    return {status: count for status, count in rows}


async def webhook_throughput(
    seconds: float = 5.0, clients: int = 50, report: Report = _quiet
) -> list[Figure]:
    """``clients`` keep-alive connections post GitHub-signed bodies to a real ``reactor serve``
    for ``seconds`` (after up to 1 s of warm-up); every 202 must name its run, and every run
    must have succeeded once the service is idle again."""
    with Workspace() as ws:
        ws.write("bench_webhook", PIPELINE)
        secret_file = ws.pipelines / "secret.txt"
        secret_file.write_bytes(SECRET)
        process, log = start_serve(ws)
        try:
            port = await _wait_for_port(log, process, 60.0)
            base = f"http://127.0.0.1:{port}"
            report(f"  {clients} connections for {seconds:g}s against reactor serve")
            cpu_before = _cpu_seconds(process.pid)
            result = await _loadgen(f"{base}/hooks/bench", clients, seconds, secret_file)
            cpu_load = _cpu_seconds(process.pid) - cpu_before
            _check(result, "reactor serve")
            drain_start = time.perf_counter()
            async with httpx.AsyncClient(base_url=base, timeout=30.0) as client:
                await wait_idle(client, 120.0)
            drain = time.perf_counter() - drain_start
            cpu_total = _cpu_seconds(process.pid) - cpu_before
            counts = _run_counts(ws.database)
        except BaseException:
            _stop(process)
            tail = log.read_text(errors="replace")[-2000:]
            sys.stderr.write(f"reactor serve output (tail):\n{tail}\n")
            raise
        _stop(process)
    accepted = result["statuses"]["202"]
    succeeded = counts.get("succeeded", 0)
    if succeeded != accepted or sum(counts.values()) != accepted:
        raise RuntimeError(f"{accepted} requests answered 202, but the runs are {counts}")
    report(f"  {succeeded} runs succeeded, the last {drain:.2f}s after the load ended")
    floor = await _floor(clients, seconds)
    note = (
        f"POST /hooks/bench (GitHub HMAC) to a reactor serve subprocess on SQLite from"
        f" bench/loadgen.py in another process, {clients} keep-alive connections; each 202"
        " after its event, outcome and run are committed; floor: the same load generator"
        " against a bare uvloop HTTP server answering 202"
    )
    extra = {
        "requests_in_window": result["completed"],
        "window_s": result["window_s"],
        "responses_202": accepted,
        "runs_succeeded": succeeded,
        "runs_drained_after_s": drain,
        "server_cpu_s_during_load": cpu_load,
        "server_cpu_s_with_drain": cpu_total,
        "loadgen_cpu_share": result["loadgen_cpu_share"],
    }
    return [
        Figure(
            "webhooks",
            f"requests/s, {clients} clients",
            result["requests_per_s"],
            "/s",
            floor=floor["requests_per_s"],
            target=2000.0,
            better="higher",
            note=note,
            extra=extra,
        ),
        Figure("webhooks", "request -> 202 p50", result["p50_ms"], "ms", floor=floor["p50_ms"]),
        Figure(
            "webhooks",
            "request -> 202 p99",
            result["p99_ms"],
            "ms",
            floor=floor["p99_ms"],
            target=50.0,
            extra={"mean_ms": result["mean_ms"], "max_ms": result["max_ms"]},
        ),
        Figure(
            "webhooks",
            "server CPU per request, run included",
            cpu_total / accepted * 1000,
            "ms",
            note="reactor serve's CPU time (all threads) from the load's start until every"
            " run ended, divided by the requests answered 202",
        ),
    ]
