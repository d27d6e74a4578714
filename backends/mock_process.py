"""Start and stop the mock server as its own process (for `gristmill demo`, tests, benchmarks)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from typing import Any, Sequence


class MockServerProcess:
    """`with MockServerProcess(["--latency-ms", "5"]) as server: server.base_url`"""

    def __init__(self, args: Sequence[str] = (), host: str = "127.0.0.1", port: int = 0,
                 startup_timeout_s: float = 30.0) -> None:
        self.args = list(args)
        self.host = host
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def start(self) -> "MockServerProcess":
        cmd = [sys.executable, "-m", "backends.mock_server", "--host", self.host,
               "--port", str(self.port), *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()  # "listening on http://HOST:PORT"
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"mock server did not start: {line!r}")
        self.url = line.removeprefix("listening on ")
        return self

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/stats", timeout=10) as resp:
            return json.loads(resp.read())

    def reset(self) -> None:
        req = urllib.request.Request(self.url + "/stats/reset", method="POST", data=b"")
        urllib.request.urlopen(req, timeout=10).close()

    def stop(self) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
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
