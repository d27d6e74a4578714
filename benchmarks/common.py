"""Shared benchmark plumbing: isolated worker processes, CPU and RSS accounting, tables."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from gristmill.backends.mock.process import MockServerProcess

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def pin_to_cpu(cpu: int) -> None:
    """Keep client and server on separate cores so they do not steal from each other."""
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(0, {cpu % os.cpu_count()})


def add_server_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", choices=["fast", "aiohttp"], default="fast",
                        help="the mock server's edge (default: fast, a raw asyncio protocol; "
                        "aiohttp: the full mock)")


@contextmanager
def mock_server(*args: str, edge: str = "aiohttp") -> Iterator[MockServerProcess]:
    """The mock server in its own process, pinned to core 1 (the client runs on core 0)."""
    with MockServerProcess(*(["--fast"] if edge == "fast" else []), *args) as server:
        if server.proc is not None and (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(server.proc.pid, {1})
        yield server


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Meter:
    """Wall time and CPU time of the enclosed block, in this process."""

    def __enter__(self) -> "Meter":
        self.wall0, self.cpu0 = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = cpu_seconds() - self.cpu0


def run_worker(module: str, args: list[str], timeout: float = 3600) -> dict[str, Any]:
    """Run `python -m module args` and return the JSON object it prints last."""
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, Callable[[Any], str]]]) -> None:
    header = [title for _, title, _ in columns]
    body = [[fmt(row.get(key)) for key, _, fmt in columns] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for r in body:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path
