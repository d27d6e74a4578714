"""Keeping a simulated GPU server saturated without being told its best concurrency.

    python -m benchmarks.saturation [--n 200] [--sweep 8,16,32,48,64,96,128,256]

The mock server runs in simulated-GPU mode (continuous batching: at most --max-running
sequences per step, step time growing with the batch, a KV-token budget whose overflow preempts
and recomputes work). First a sweep runs gristmill at fixed in-flight caps to find the best
one; then gristmill runs with `scrape_metrics: true` and only a high ceiling (1024), reading the
server's /metrics. Target: within 5% of the best fixed cap's output tokens/s.
Prints a table and writes benchmarks/results/saturation.json."""

from __future__ import annotations

import argparse
import os
import time

from gristmill.backends.mock.process import MockServerProcess
from benchmarks.common import machine, print_table, run_worker, write_json

GPU = ["--gpu", "--max-running", "64", "--kv-tokens", "20000", "--output-tokens", "256"]


def one_run(label: str, n: int, concurrency: int, metrics: bool, pad: int) -> dict:
    with MockServerProcess(*GPU) as server:
        if (os.cpu_count() or 1) > 1 and server.proc is not None:
            os.sched_setaffinity(server.proc.pid, {1})
        result = run_worker("benchmarks.clients", [
            "--client", "gristmill", "--url", server.base_url, "--n", str(n),
            "--concurrency", str(concurrency), "--max-tokens", "256", "--pad", str(pad),
            *(["--metrics"] if metrics else [])])
        gpu = server.stats().get("gpu", {})
    result.update(run=label, concurrency=concurrency, tok_per_s=result["tokens"] / result["wall_s"],
                  preemptions=gpu.get("preemptions"))
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--sweep", default="8,16,32,48,64,96,128,256")
    parser.add_argument("--pad", type=int, default=4, help="prompt length (~100 tokens at 4)")
    args = parser.parse_args()
    rows = []
    for c in map(int, args.sweep.split(",")):
        print(f"fixed {c} ...", flush=True)
        rows.append(one_run(f"fixed {c}", args.n, c, False, args.pad))
    print("metrics-driven (ceiling 1024) ...", flush=True)
    adaptive = one_run("gristmill metrics", args.n, 1024, True, args.pad)
    rows.append(adaptive)
    best = max(rows[:-1], key=lambda r: r["tok_per_s"])
    for row in rows:
        row["share_of_best"] = row["tok_per_s"] / best["tok_per_s"]
    print_table(rows, [("run", "run", str), ("tok_per_s", "output tok/s", "{:,.0f}".format),
                       ("share_of_best", "of best fixed", "{:.1%}".format),
                       ("preemptions", "preemptions", str), ("cpu_s", "client CPU s", "{:.2f}".format)])
    print(f"best fixed: {best['run']}; metrics-driven reaches {adaptive['share_of_best']:.1%} of it")
    print(f"wrote {write_json('saturation', {'machine': machine(), 'server': GPU, 'rows': rows, 'time': time.strftime('%Y-%m-%d %H:%M:%S')})}")


if __name__ == "__main__":
    main()
