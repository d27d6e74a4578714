"""Start and stop the mock server as its own process (for `gristmill demo`, tests, benchmarks).

    with MockServerProcess("--latency-ms", "50", "--rate-429", "0.1") as server:
        ... server.base_url ... server.stats()["max_requests_in_window"] ...

Methods are synchronous and quick (local HTTP via urllib); async callers waiting for the
server to see their disconnects use `await server.idle()`, which lets their loop run."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

READY_PREFIX = "listening on "


class MockServerProcess:
    def __init__(self, *args: str, host: str = "127.0.0.1", port: int = 0,
                 startup_timeout_s: float = 30.0) -> None:
        self.args = [str(a) for a in args]
        self.host = host
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> "MockServerProcess":
        cmd = [sys.executable, "-m", "gristmill.backends.mock.server", "--host", self.host,
               "--port", str(self.port), *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], self.startup_timeout_s)
        line = self.proc.stdout.readline().strip() if ready else ""
        if not line.startswith(READY_PREFIX):
            self.stop()
            raise RuntimeError(f"mock server did not start (args {self.args}): {line!r}")
        self.url = line.removeprefix(READY_PREFIX)
        return self

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, wait, kill if it lingers; returns the exit code (0 = clean)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        return proc.returncode

    def __enter__(self) -> "MockServerProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- admin endpoints ------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/stats")

    def reset(self) -> None:
        self._call("POST", "/stats/reset")

    async def idle(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """Stats once nothing is in flight (a client closes its sockets on its own loop,
        so this waits without blocking that loop)."""
        deadline = time.monotonic() + timeout_s
        while (stats := self.stats())["in_flight"] and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return stats

    def _call(self, method: str, path: str) -> dict[str, Any]:
        req = urllib.request.Request(self.url + path, method=method,
                                     data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())
