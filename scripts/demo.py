"""`make demo`: serve the quickstart, drop a sample file into its inbox, show the run.

With --once (CI=true or DEMO_ONCE=1) it exits after the first run finished,
with status 0 only if that run succeeded.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "examples" / "quickstart"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"reactor serve exited with status {process.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).json().get("status") == "ok":
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"reactor serve did not become healthy at {url} in {timeout:.0f}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--once", action="store_true", help="exit after the first run")
    args = parser.parse_args()
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    reactor = Path(sys.executable).with_name("reactor")
    command = [str(reactor), "serve", "examples/quickstart", "--http", f"127.0.0.1:{port}"]
    if args.once:
        command += ["--exit-after", "1", "--grace", "5"]
    print("$", " ".join(command), flush=True)
    # Ctrl-C reaches reactor serve directly (same process group); it stops by itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    process = subprocess.Popen(command, cwd=ROOT)
    signal.signal(signal.SIGTERM, lambda *_: process.send_signal(signal.SIGTERM))
    try:
        wait_healthy(url, process)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        target = QUICKSTART / "inbox" / f"orders-{stamp}.csv"
        shutil.copyfile(QUICKSTART / "sample" / "orders-sample.csv", target)
        print(f"dropped {target.relative_to(ROOT)}; watch it in a browser: {url}/", flush=True)
        if not args.once:
            print(
                "Reactor keeps serving: drop more orders-*.csv files into"
                f" {(QUICKSTART / 'inbox').relative_to(ROOT)}, or press Ctrl-C to stop.",
                flush=True,
            )
        return process.wait()
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=35)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    sys.exit(main())
