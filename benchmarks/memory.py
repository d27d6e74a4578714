"""Memory at scale: peak RSS of a 4-stage pipeline run over 10k, 100k and 1M seeds against the
instant mock server. Memory must not grow with the input.

    python -m benchmarks.memory [--sizes 10000,100000,1000000] [--no-seed-dedup]

Each size runs in its own process (so each peak is its own); seeds are read lazily from a
JSONL file; every stage makes one request per item, so a run makes 4 x seeds requests.
Prints a table and writes benchmarks/results/memory.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import (Meter, machine, mock_server, peak_rss_mb, pin_to_cpu, print_table,
                               run_worker, write_json)


def write_seeds(path: Path, n: int) -> None:
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"text": f"Seed {i}: how a mill race feeds the wheel."}) + "\n")


def pipeline(seeds: Path, url: str, seed_dedup: bool = True) -> dict:
    stages = [{"name": "transform", "prompt": "Rewrite: {{ seed }}"},
              {"name": "instruction", "prompt": "Ask about: {{ transform }}"},
              {"name": "refined", "prompt": "Make harder: {{ instruction }}"},
              {"name": "answer", "prompt": "{{ transform }}\n\nQ: {{ refined }}"}]
    for stage in stages:  # the mock answers 16 tokens, under the budget: no "truncated" rejects
        stage["sampling"] = {"max_tokens": 64}
    return {"name": "memory", "seeds": {"path": str(seeds), "min_chars": 1, "dedup": seed_dedup},
            "backends": {"default": {"base_url": url, "model": "mock", "max_in_flight": 256}},
            "stages": stages,
            # the end-of-run dedup is a batch step over every record (~1 KB each), measured on
            # its own: `python -m gristmill.dataset.dedup --measure N`
            "dedup": {"enabled": False},
            "record": [{"role": "user", "content": "{{ refined }}"},
                       {"role": "assistant", "content": "{{ answer }}"}]}


async def worker(n: int, url: str, seed_dedup: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="gm-mem-") as tmp:  # a 1M-seed run store: 0.5 GB
        return await _measure(n, url, seed_dedup, Path(tmp))


async def _measure(n: int, url: str, seed_dedup: bool, tmp: Path) -> dict:
    from gristmill.config.load import validate_config
    from gristmill.runs.runner import RunOptions, run

    seeds = tmp / "seeds.jsonl"
    write_seeds(seeds, n)
    rss_before = peak_rss_mb()
    with Meter() as meter:
        summary = await run(validate_config(pipeline(seeds, url, seed_dedup)),
                            RunOptions(run_dir=tmp / "run", progress=False))
    return {"seeds": n, "records": summary["records"], "requests": 4 * n,
            "wall_s": meter.wall, "cpu_s": meter.cpu, "peak_rss_mb": peak_rss_mb(),
            "rss_before_run_mb": rss_before}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--no-seed-dedup", action="store_true", help="without the exact-"
                        "duplicate seed filter (the one structure that grows with the seeds)")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        pin_to_cpu(0)
        from gristmill.runs.event_loop import new_event_loop

        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            print(json.dumps(runner.run(worker(args.worker, args.url,
                                               not args.no_seed_dedup))))
        return
    rows = []
    for n in map(int, args.sizes.split(",")):
        with mock_server("--output-tokens", "16") as server:
            print(f"{n:,} seeds ...", flush=True)
            rows.append(run_worker("benchmarks.memory", [
                "--worker", str(n), "--url", server.base_url,
                *(["--no-seed-dedup"] if args.no_seed_dedup else [])], timeout=7200))
    base = rows[0]["peak_rss_mb"]
    for row in rows:
        row["vs_smallest"] = row["peak_rss_mb"] / base
        row["req_per_s"] = row["requests"] / row["wall_s"]
    print_table(rows, [("seeds", "seeds", "{:,}".format), ("records", "records", "{:,}".format),
                       ("req_per_s", "req/s", "{:,.0f}".format),
                       ("peak_rss_mb", "peak RSS MB", "{:.1f}".format),
                       ("vs_smallest", "x smallest", "{:.2f}".format)])
    name = "memory-no-seed-dedup" if args.no_seed_dedup else "memory"
    print(f"wrote {write_json(name, {'machine': machine(), 'rows': rows, 'time': time.strftime('%Y-%m-%d %H:%M:%S')})}")


if __name__ == "__main__":
    sys.exit(main())
