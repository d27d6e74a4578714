"""Batch mode through the whole engine: client CPU per 1,000 requests and peak RSS, by size.

    python -m benchmarks.batch_mode [--sizes 10000,100000,1000000] [--max-requests 10000]
                                    [--max-pending 10000]

Each size is one `gristmill run` (a one-stage pipeline, validators and the end-of-run dedup
off, `mode: batch`) in its
own process on core 0 against the full mock server on core 1, whose batches finish as fast as
it can answer them. The client's CPU (user + system) and peak RSS come from the kernel's
accounting of that child process (`getrusage(RUSAGE_CHILDREN)` around it). Peak RSS should
depend on the open-batch limits (at most `--max-pending` requests wait for answers, their
items parked on disk), not on the input size.
Prints a table and writes benchmarks/results/batch_mode.json."""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import yaml

from benchmarks.common import machine, mock_server, print_table, write_json


def child_usage() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def write_seeds(path: Path, count: int) -> None:
    with path.open("wb") as fh:
        for i in range(count):
            fh.write(orjson.dumps({"text": f"Seed {i}: a short passage about mills."}) + b"\n")


def one_run(base_url: str, size: int, max_requests: int, max_pending: int,
            work: Path) -> dict[str, float]:
    seeds = work / f"seeds-{size}.jsonl"
    write_seeds(seeds, size)
    config = {
        "name": f"batch-bench-{size}", "seeds": {"path": str(seeds), "min_chars": 1,
                                                  "dedup": False},
        "backends": {"default": {
            "base_url": base_url, "model": "mock", "mode": "batch", "preflight": False,
            "batch_files": {"max_requests": max_requests, "max_pending": max_pending,
                            "idle_seal_s": 0.5, "poll_s": 0.2, "poll_max_s": 1.0}}},
        # near-duplicate removal over the whole output holds a MinHash index of every record
        # at the end of a run: O(input) by nature, and not what is measured here
        "dedup": {"enabled": False},
        "stages": [{"name": "answer", "prompt": "Answer: {{ seed }}",
                    "validators": {"defaults": False}, "sampling": {"max_tokens": 16}}]}
    path = work / f"batch-{size}.yaml"
    path.write_text(yaml.safe_dump(config))
    cpu0, _ = child_usage()
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "gristmill", "run", str(path), "--run-dir",
           str(work / f"run-{size}"), "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True,
                          preexec_fn=lambda: os.sched_setaffinity(0, {0}))
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    cpu1, rss = child_usage()  # ru_maxrss of children: the largest so far, so runs go small first
    summary = orjson.loads((work / f"run-{size}" / "summary.json").read_bytes())
    assert summary["records"] == size, summary["records"]
    return {"requests": size, "wall_s": wall, "client_cpu_s": cpu1 - cpu0,
            "cpu_per_1000_s": (cpu1 - cpu0) / size * 1000, "peak_rss_mb": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--max-requests", type=int, default=10_000,
                        help="batch_files.max_requests")
    parser.add_argument("--max-pending", type=int, default=10_000,
                        help="batch_files.max_pending: requests waiting for answers at once")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    rows = []
    with tempfile.TemporaryDirectory() as tmp, mock_server("--output-tokens", "16") as server:
        for size in sizes:
            rows.append(one_run(server.base_url, size, args.max_requests, args.max_pending,
                                Path(tmp)))
            print(f"{size:,} requests done", file=sys.stderr)
    print_table(rows, [("requests", "requests", "{:,}".format),
                       ("wall_s", "wall s", "{:.1f}".format),
                       ("client_cpu_s", "client CPU s", "{:.1f}".format),
                       ("cpu_per_1000_s", "CPU s / 1,000", "{:.3f}".format),
                       ("peak_rss_mb", "peak RSS MB", "{:.0f}".format)])
    path = write_json("batch_mode", {"machine": machine(), "max_requests": args.max_requests,
                                     "max_pending": args.max_pending, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
