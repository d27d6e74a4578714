"""Two servers of different sizes behind one backend: endpoint choice by room under each
server's own metrics-driven cap, against plain least-outstanding-requests.

    python -m benchmarks.fleet_balance [--n 600] [--small 8] [--big 48] [--repeats 3]

Two mock servers in simulated-GPU mode (continuous batching: at most --max-running sequences
per step, step time growing with the batch) stand for a small and a big GPU. gristmill runs
the same prompts with `metrics: true` (each endpoint's cap from its /metrics); once with the
shipped choice (fewest outstanding relative to the endpoint's cap) and once with the cap
ignored in the choice (least outstanding). Prints a table and writes
benchmarks/results/fleet_balance.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import gristmill.backends.openai_http.endpoints as endpoints_module
from gristmill.backends.mock.process import MockServerProcess
from benchmarks.clients import prompts
from benchmarks.common import machine, print_table, write_json
from gristmill.config.load import validate_config
from gristmill.runs.runner import RunOptions, run

SHIPPED_CHOOSE = endpoints_module.choose


def least_outstanding(endpoints: Any) -> Any:
    live = [e for e in endpoints if e.in_rotation]
    return min(live, key=lambda e: e.outstanding) if live else None


async def one_run(urls: list[str], n: int, max_tokens: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="gm-balance-"))
    seeds = tmp / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"text": p}) + "\n" for p in prompts(n, 4)))
    config = validate_config({
        "name": "balance", "seeds": {"path": str(seeds), "min_chars": 1, "dedup": False},
        "backends": {"default": {"base_urls": urls, "model": "mock", "max_in_flight": 256,
                                 "scrape_metrics": True, "adaptive": False}},
        "stages": [{"name": "answer", "prompt": "{{ seed }}", "workers": 256,
                    "validators": {"defaults": False}, "sampling": {"max_tokens": max_tokens}}],
        "record": [{"role": "user", "content": "{{ seed }}"},
                   {"role": "assistant", "content": "{{ answer }}"}]})
    start = time.perf_counter()
    summary = await run(config, RunOptions(run_dir=tmp / "run", progress=False, cache=False))
    wall = time.perf_counter() - start
    return {"wall_s": wall, "tokens": summary["stages"][0]["completion_tokens"],
            "records": summary["records"]}


def measure(choice: str, args: argparse.Namespace) -> dict[str, Any]:
    endpoints_module.choose = SHIPPED_CHOOSE if choice == "by room under each cap" \
        else least_outstanding
    rates, shares = [], []
    for _ in range(args.repeats):
        gpu = ["--gpu", "--output-tokens", str(args.max_tokens)]
        with MockServerProcess(*gpu, "--max-running", str(args.small)) as small, \
                MockServerProcess(*gpu, "--max-running", str(args.big)) as big:
            result = asyncio.run(one_run([small.base_url, big.base_url], args.n,
                                         args.max_tokens))
            served = small.stats()["requests"], big.stats()["requests"]
        rates.append(result["tokens"] / result["wall_s"])
        shares.append(served[1] / sum(served))
    endpoints_module.choose = SHIPPED_CHOOSE
    return {"choice": choice, "tok_per_s": statistics.median(rates),
            "big_share": statistics.median(shares), "runs": rates}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--small", type=int, default=8, help="--max-running of the small server")
    parser.add_argument("--big", type=int, default=48, help="--max-running of the big server")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = [measure(choice, args) for choice in ("least outstanding", "by room under each cap")]
    for row in rows:
        row["vs_least_outstanding"] = row["tok_per_s"] / rows[0]["tok_per_s"]
    print_table(rows, [("choice", "endpoint choice", str),
                       ("tok_per_s", "output tok/s (median)", "{:,.0f}".format),
                       ("big_share", "requests to the big server", "{:.0%}".format),
                       ("vs_least_outstanding", "vs least outstanding", "{:.2f}x".format)])
    print(f"wrote {write_json('fleet_balance', {'machine': machine(), 'args': vars(args), 'rows': rows, 'time': time.strftime('%Y-%m-%d %H:%M:%S')})}")


if __name__ == "__main__":
    main()
