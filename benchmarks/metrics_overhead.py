"""Client CPU per 1,000 requests with the run's Prometheus /metrics on and off, side by side.

    python -m benchmarks.metrics_overhead [--reps 5] [--n 10000] [--stream-n 2000]

The mock server (fast edge) runs in its own process on core 1; each client run is the full
engine (`benchmarks.clients --client gristmill`) in its own process on core 0, its CPU time
(user + system of that process, start-up excluded) measured around the run. Runs with
metrics off and on alternate (the order flips each repetition) so that the machine's drift
falls on both alike. During an "on" run a scraper in another process (on core 1, so its own
CPU is not counted) GETs /metrics once a second, as Prometheus would, only more often. Two
cases: short non-streamed answers (the most requests per CPU second, so the largest share of
any per-request cost) and 256-token streams (the first-token histogram). Prints a table and
writes benchmarks/results/metrics_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

from benchmarks.common import ROOT, machine, mock_server, print_table, run_worker, write_json

CASES = {
    "short": {"title": "non-streamed, 16 tokens", "server": [], "max_tokens": 16,
              "stream": False, "concurrency": 256},
    "stream": {"title": "streamed, 256 tokens", "server": ["--output-tokens", "256"],
               "max_tokens": 256, "stream": True, "concurrency": 256},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape_forever(port: int) -> None:
    """The scraper process: GET /metrics once a second until SIGTERM, then print the count."""
    scrapes = 0

    def stop(*_: object) -> None:
        print(json.dumps({"scrapes": scrapes}), flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                resp.read()
                scrapes += 1
        except OSError:  # not up yet, or already closed
            pass
        time.sleep(1.0)


def one_run(url: str, case: dict, n: int, metrics: bool) -> dict:
    args = ["--client", "gristmill", "--url", url, "--n", str(n), "--concurrency",
            str(case["concurrency"]), "--max-tokens", str(case["max_tokens"]),
            *(["--stream"] if case["stream"] else [])]
    if not metrics:
        return run_worker("benchmarks.clients", args)
    port = free_port()
    scraper = subprocess.Popen([sys.executable, "-m", "benchmarks.metrics_overhead",
                                "--scrape", str(port)], cwd=ROOT, stdout=subprocess.PIPE,
                               text=True)
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(scraper.pid, {1})
    try:
        result = run_worker("benchmarks.clients", [*args, "--serve-metrics", str(port)])
    finally:
        scraper.send_signal(signal.SIGTERM)
        out, _ = scraper.communicate(timeout=30)
    result["scrapes"] = json.loads(out.strip().splitlines()[-1])["scrapes"]
    return result


def timing_cost_us(loops: int = 200_000) -> float:
    """What every request pays whether /metrics is on or not (so the on/off runs cannot
    show it): two reads of the pool's clock and a histogram observation, in µs."""
    import asyncio

    from gristmill.runs.event_loop import new_event_loop
    from gristmill.scheduling.histogram import Histogram
    from gristmill.scheduling.permits import _loop_time as clock

    async def measure() -> float:
        h = Histogram()
        start = time.process_time()
        for _ in range(loops):
            began = clock()
            h.observe(clock() - began)
        return (time.process_time() - start) / loops * 1e6

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return min(runner.run(measure()) for _ in range(3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--n", type=int, default=10_000, help="requests per short run")
    parser.add_argument("--stream-n", type=int, default=2_000, help="requests per stream run")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--scrape", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scrape is not None:
        return scrape_forever(args.scrape)

    rows, runs = [], []
    for key in args.cases.split(","):
        case = CASES[key]
        n = args.stream_n if case["stream"] else args.n
        per_1k: dict[str, list[float]] = {"off": [], "on": []}
        scrapes = 0
        with mock_server(*case["server"], edge="fast") as server:
            for rep in range(args.reps):
                for mode in (("off", "on") if rep % 2 == 0 else ("on", "off")):
                    result = one_run(server.base_url, case, n, mode == "on")
                    assert result["ok"] == n, result
                    cpu = 1000 * result["cpu_s"] / result["requests"]
                    per_1k[mode].append(cpu)
                    scrapes += result.get("scrapes", 0)
                    runs.append({"case": key, "rep": rep, "metrics": mode, **result,
                                 "cpu_s_per_1k": cpu})
                    print(f"{key} rep {rep} metrics {mode}: {cpu:.3f} CPU-s/1k, "
                          f"{result['wall_s']:.1f}s", file=sys.stderr)
                    time.sleep(0.5)
        off, on = statistics.median(per_1k["off"]), statistics.median(per_1k["on"])
        rows.append({"case": f"{key}: {case['title']}", "n": n, "reps": args.reps,
                     "off": off, "on": on, "overhead": on / off - 1,
                     "mean_overhead": statistics.mean(per_1k["on"]) /
                     statistics.mean(per_1k["off"]) - 1,
                     "off_range": f"{min(per_1k['off']):.3f}–{max(per_1k['off']):.3f}",
                     "on_range": f"{min(per_1k['on']):.3f}–{max(per_1k['on']):.3f}",
                     "scrapes": scrapes})
    print_table(rows, [
        ("case", "case", str), ("n", "requests/run", lambda v: f"{v:,}"),
        ("reps", "reps", str),
        ("off", "off: CPU-s/1k (median)", lambda v: f"{v:.3f}"), ("off_range", "off range", str),
        ("on", "on: CPU-s/1k (median)", lambda v: f"{v:.3f}"), ("on_range", "on range", str),
        ("overhead", "on/off − 1 (median)", lambda v: f"{100 * v:+.1f}%"),
        ("mean_overhead", "(mean)", lambda v: f"{100 * v:+.1f}%"),
        ("scrapes", "scrapes (on runs)", str)])
    timing = timing_cost_us()
    print(f"per-request timing kept always (clock twice + histogram): {timing:.2f} µs, "
          + ", ".join(f"{100 * timing / (1000 * r['off']):.2f}% of {r['case'].split(':')[0]}'s "
                      "CPU per request" for r in rows))
    path = write_json("metrics_overhead", {"machine": machine(), "load_average":
                                           os.getloadavg(), "timing_cost_us": timing,
                                           "rows": rows, "runs": runs})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
