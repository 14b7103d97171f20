"""A real ``reactor serve`` process for end-to-end tests, in its own session."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

REACTOR = str(Path(sys.executable).with_name("reactor"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """``reactor serve FOLDER --store STORE`` on a free port; ``kill`` ends its session."""

    def __init__(
        self, folder: Path, store: str, env: dict[str, str] | None = None, *args: str
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._out = tempfile.TemporaryFile()  # noqa: SIM115 (kept open for the process's life)
        self._err = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                REACTOR,
                "serve",
                str(folder),
                "--store",
                store,
                "--http",
                f"127.0.0.1:{self.port}",
                *args,
            ],
            env={**os.environ, **(env or {})},
            # Files, not pipes: a pipe nobody reads fills up and blocks a chatty serve.
            stdout=self._out,
            stderr=self._err,
            start_new_session=True,
        )

    def output(self) -> tuple[str, str]:
        """What serve has written so far to stdout and stderr."""
        texts = []
        for file in (self._out, self._err):
            file.flush()
            file.seek(0)
            texts.append(file.read().decode(errors="replace"))
        return texts[0], texts[1]

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            out, err = self.output()
            raise AssertionError(f"serve exited {self.process.returncode}:\n{out}\n{err}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> tuple[str, str]:
        """Signal serve itself and wait for it; returns its stdout and stderr."""
        self.process.send_signal(sig)
        self.process.wait(timeout=timeout)
        return self.output()

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
