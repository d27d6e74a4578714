"""A run through `--ray` against the same run in one process: the client CPU per 1,000
requests, and the speed-up of two workers over one on client-bound load.

    python -m benchmarks.cluster_throughput [--requests 20000]

The fast mock (its raw asyncio edge, 16-token answers) on core 1; a one-stage pipeline,
validators and the end-of-run dedup off. Each run is one `gristmill run` process on core 0
(with `--ray`, the local Ray it starts inherits the core): in one process; on Ray with 1 shard
and 1 worker; with 4 shards and 1 worker (every shard reads the whole input and keeps its
part). The client CPU is each process's own, its start included (`process_cpu_s` of the
summary: the one process, or the sum of the workers); the driver reports its own
(`driver_cpu_s`); Ray's daemons (gcs_server, raylet and the helpers Ray starts, not the
workers) are sampled every 0.2 s while the run lasts, each process's last CPU figure kept. Then, unpinned (the two cores shared with the mock),
2 shards on 1 worker against 2 shards on 2 workers. Prints a table and writes
benchmarks/results/cluster_throughput.json."""

from __future__ import annotations

import argparse
import os
import threading
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import psutil
import yaml

from benchmarks.common import machine, mock_server, print_table, write_json

RAY_DAEMONS = ("gcs_server", "raylet", "log_monitor", "monitor.py", "dashboard",
               "runtime_env", "ray_client_server")


class DaemonCpu:
    """The CPU Ray's own processes spend while the block runs (sampled: the last 0.2 s of a
    process that ends is missed)."""

    def __enter__(self) -> "DaemonCpu":
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            for proc in psutil.process_iter(["cmdline"]):
                text = " ".join(proc.info["cmdline"] or [])
                if any(name in text for name in RAY_DAEMONS):
                    try:
                        times = proc.cpu_times()
                    except psutil.Error:
                        continue
                    self.seen[proc.pid] = times.user + times.system

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.cpu_s = sum(self.seen.values())


def one_run(config: Path, run_dir: Path, ray: list[str], pin: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "gristmill", "run", str(config), "--run-dir", str(run_dir),
           "--no-progress", *ray]
    start = time.perf_counter()
    with DaemonCpu() as daemons:
        done = subprocess.run(cmd, capture_output=True, text=True,
                              preexec_fn=(lambda: os.sched_setaffinity(0, {0})) if pin else None)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    summary = orjson.loads((run_dir / "summary.json").read_bytes())
    client, driver = summary["process_cpu_s"], summary.get("driver_cpu_s")
    return {"requests": summary["records"], "wall_s": wall, "client_cpu_s": client,
            "driver_cpu_s": driver, "ray_daemons_cpu_s": None if driver is None else daemons.cpu_s,
            "client_cpu_per_1000_s": client / summary["records"] * 1000}


def dash(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name, \
            mock_server("--output-tokens", "16", edge="fast") as server:
        tmp = Path(tmp_name)
        seeds = tmp / "seeds.jsonl"
        seeds.write_bytes(b"".join(orjson.dumps({"text": f"Seed {i}: mills, rivers, grain."})
                                   + b"\n" for i in range(args.requests)))
        config = tmp / "bench.yaml"
        config.write_text(yaml.safe_dump({
            "name": "cluster-bench", "seeds": {"path": str(seeds), "min_chars": 1,
                                               "dedup": False},
            "backends": {"default": {"base_url": server.base_url, "model": "mock",
                                     "max_in_flight": 64, "preflight": False}},
            "dedup": {"enabled": False},
            "stages": [{"name": "answer", "prompt": "Answer: {{ seed }}",
                        "validators": {"defaults": False}, "sampling": {"max_tokens": 16}}]}))
        plans = [("one process, core 0", [], True),
                 ("--ray, 1 shard, 1 worker, core 0", ["--ray", "--shards", "1", "--workers", "1"], True),
                 ("--ray, 4 shards, 1 worker, core 0", ["--ray", "--shards", "4", "--workers", "1"], True),
                 ("--ray, 2 shards, 1 worker, unpinned", ["--ray", "--shards", "2", "--workers", "1"], False),
                 ("--ray, 2 shards, 2 workers, unpinned", ["--ray", "--shards", "2", "--workers", "2"], False)]
        for i, (label, ray, pin) in enumerate(plans):
            rows.append({"run": label, **one_run(config, tmp / f"run-{i}", ray, pin)})
            print(f"{label}: done", file=sys.stderr)
    base = rows[0]["client_cpu_per_1000_s"]
    for row in rows:
        row["cpu_vs_one_process"] = row["client_cpu_per_1000_s"] / base
    print_table(rows, [("run", "run", str), ("requests", "requests", "{:,}".format),
                       ("wall_s", "wall s", "{:.1f}".format),
                       ("client_cpu_s", "client CPU s", "{:.1f}".format),
                       ("driver_cpu_s", "driver CPU s", dash),
                       ("ray_daemons_cpu_s", "Ray daemons CPU s", dash),
                       ("client_cpu_per_1000_s", "client CPU s / 1,000", "{:.3f}".format),
                       ("cpu_vs_one_process", "vs one process", "{:.2f}×".format)])
    path = write_json("cluster_throughput", {"machine": machine(), "args": vars(args),
                                             "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
