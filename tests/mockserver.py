"""Test helper: the mock OpenAI-compatible server as a real subprocess.

    with MockServer("--latency-ms", "50", "--rate-429", "0.1") as server:
        client = OpenAICompatBackend(base_url=server.base_url, ...)
        ...
        assert server.stats()["max_requests_in_window"] <= 5

Methods are synchronous and quick (local HTTP via urllib), so async tests may call them too.
"""

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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
READY_PREFIX = "listening on "


class MockServer:
    """Spawns `python -m backends.mock_server --host 127.0.0.1 --port 0 *args`."""

    def __init__(self, *args: str, start_timeout: float = 15.0) -> None:
        self.args = [str(a) for a in args]
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> "MockServer":
        cmd = [sys.executable, "-m", "backends.mock_server", "--host", "127.0.0.1",
               "--port", "0", *self.args]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        line = self._first_line()
        if not line.startswith(READY_PREFIX):
            self._kill()
            raise RuntimeError(f"mock server did not start: {line!r} (args {self.args})")
        self.url = line[len(READY_PREFIX):].strip()
        return self

    def _first_line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], self.start_timeout)
        if not ready:
            self._kill()
            raise TimeoutError(f"mock server printed nothing in {self.start_timeout}s")
        return self.proc.stdout.readline()

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, wait; kill if it does not exit. Asserts it stopped cleanly (exit code 0)."""
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"mock server ignored SIGTERM for {timeout}s and was killed")
        finally:
            if proc.stdout is not None:
                proc.stdout.close()
        assert code == 0, f"mock server exited with code {code}"

    def _kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None

    def __enter__(self) -> "MockServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses and admin endpoints ----------------------------------------------------
    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/stats")

    def reset(self) -> None:
        self._call("POST", "/stats/reset")

    def wait_idle(self, timeout: float = 5.0) -> dict[str, Any]:
        """Stats once nothing is in flight (for sync callers; blocks the thread)."""
        deadline = time.monotonic() + timeout
        while (stats := self.stats())["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.02)
        return stats

    async def idle(self, timeout: float = 5.0) -> dict[str, Any]:
        """Stats once nothing is in flight, letting the caller's event loop run meanwhile:
        a client closes its sockets on the loop, so a blocking wait would never see it."""
        deadline = time.monotonic() + timeout
        while (stats := self.stats())["in_flight"] and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return stats

    def _call(self, method: str, path: str) -> dict[str, Any]:
        req = urllib.request.Request(self.url + path, method=method,
                                     data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())
