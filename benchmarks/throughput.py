"""Throughput of gristmill's full engine against a baseline, side by side in one run.

    python -m benchmarks.throughput [--cases a,b,c] [--clients ...] [--n N] [--server fast|aiohttp]

Each case starts the mock server in its own process (pinned to core 1) on its fast edge
(`--fast`: a raw asyncio protocol; `--server aiohttp` for the full mock), then runs each client
in its own process (pinned to core 0): gristmill's full engine (seed source, pipeline, permits,
limiter, retries, JSONL sink; no validators), the official `openai` AsyncOpenAI client on its
default transport with an asyncio.Semaphore, and raw aiohttp + orjson (no features: the floor).
The server's own CPU per request is measured too, so its ceiling is known. Prints a table and
writes benchmarks/results/throughput.json.
"""

from __future__ import annotations

import argparse
import math
import time

import psutil

from benchmarks.common import (add_server_option, machine, mock_server, print_table, run_worker,
                               write_json)

CASES = {
    "a": {"title": "instant, non-streaming", "n": 20_000, "concurrency": 256,
          "server": [], "max_tokens": 16, "stream": False},
    "b": {"title": "1 s latency, non-streaming", "n": 20_000, "concurrency": 1024,
          "server": ["--latency-ms", "1000", "--record-arrivals"], "max_tokens": 16,
          "stream": False, "latency_s": 1.0},
    "c": {"title": "streaming, 256 tokens", "n": 2_000, "concurrency": 256,
          "server": ["--output-tokens", "256"], "max_tokens": 256, "stream": True},
}


def run_case(key: str, case: dict, clients: list[str], n: int | None,
             edge: str = "fast") -> list[dict]:
    rows = []
    n = n or case["n"]
    for client in clients:
        with mock_server(*case["server"], edge=edge) as server:
            assert server.proc is not None
            server_proc = psutil.Process(server.proc.pid)
            before = server_proc.cpu_times()
            result = run_worker("benchmarks.clients", [
                "--client", client, "--url", server.base_url, "--n", str(n),
                "--concurrency", str(case["concurrency"]), "--max-tokens",
                str(case["max_tokens"]), *(["--stream"] if case["stream"] else [])])
            after = server_proc.cpu_times()
            served = server.stats()
        server_cpu = (after.user + after.system) - (before.user + before.system)
        result.update({
            "case": key, "client": client, "n": n, "concurrency": case["concurrency"],
            "server": edge,
            "req_per_s": result["requests"] / result["wall_s"],
            "tok_per_s": result["tokens"] / result["wall_s"],
            "cpu_s_per_1k": 1000 * result["cpu_s"] / result["requests"],
            "server_cpu_s_per_1k": 1000 * server_cpu / max(1, served["requests"]),
            "server_ceiling_req_per_s": served["requests"] / server_cpu if server_cpu else None,
        })
        if "latency_s" in case:
            ideal = n / (math.ceil(n / case["concurrency"]) * case["latency_s"])
            result["share_of_ideal"] = result["req_per_s"] / ideal
            # The request phase, measured alike for every client by the server: from the
            # first arrival to the last answer (last arrival + latency). It leaves out each
            # client's own start-up and shutdown (for gristmill: run directory, manifest,
            # store; the final commit and summary), which the end-to-end figure includes.
            arrivals = served.pop("arrivals")
            phase = max(arrivals) - min(arrivals) + case["latency_s"]
            result["phase_share_of_ideal"] = n / phase / ideal
        rows.append(result)
        time.sleep(0.5)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="a,b,c")
    parser.add_argument("--clients", default="gristmill,openai,raw")
    parser.add_argument("--n", type=int, help="requests per case (default: per case)")
    add_server_option(parser)
    args = parser.parse_args()
    rows = []
    for key in args.cases.split(","):
        print(f"case {key}: {CASES[key]['title']} ...", flush=True)
        rows += run_case(key, CASES[key], args.clients.split(","), args.n, args.server)
    f1 = lambda v: "-" if v is None else f"{v:,.1f}"  # noqa: E731
    f2 = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    print_table(rows, [("case", "case", str), ("client", "client", str), ("n", "requests", str),
                       ("concurrency", "conc", str), ("req_per_s", "req/s", f1),
                       ("tok_per_s", "tok/s", f1), ("cpu_s_per_1k", "CPU-s/1k", f2),
                       ("peak_rss_mb", "peak RSS MB", f1), ("share_of_ideal", "of ideal", pct),
                       ("phase_share_of_ideal", "of ideal (requests)", pct),
                       ("errors", "errors", str),
                       ("server_ceiling_req_per_s", "server ceiling req/s", f1)])
    ratios = {}
    for key in {r["case"] for r in rows}:
        by = {r["client"]: r for r in rows if r["case"] == key}
        if "gristmill" in by and "openai" in by:
            ratios[key] = by["gristmill"]["req_per_s"] / by["openai"]["req_per_s"]
            print(f"case {key}: gristmill / openai req/s = {ratios[key]:.2f}x")
    path = write_json("throughput", {"machine": machine(), "rows": rows, "ratios": ratios,
                                     "time": time.strftime("%Y-%m-%d %H:%M:%S")})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
