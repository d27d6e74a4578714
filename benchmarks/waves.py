"""Case (b) of the throughput benchmark taken apart: where a latency-bound run loses time
against the ideal N / (⌈N/C⌉ · latency), wave by wave.

    python -m benchmarks.waves [--waves 8] [--repeats 2] [--clients gristmill,raw] [--server fast|aiohttp]

With C requests in flight and a fixed latency, requests travel in waves of C. The mock server
records each arrival on the monotonic clock both processes share, so each client run splits
into: the start (run start to first arrival: connections, the engine's start-up), each wave's
spread (first to last arrival of a wave: the time client and server take for a burst of C
answers and C new requests), and the end (last answer to the end of the run). The client
runs in this process, pinned to core 0; the server to core 1. Prints a table and writes
benchmarks/results/waves.json."""

from __future__ import annotations

import argparse
import asyncio
import time
from types import SimpleNamespace

from benchmarks.clients import CLIENTS
from benchmarks.common import (add_server_option, machine, mock_server, pin_to_cpu, print_table,
                               write_json)
from gristmill.runs.event_loop import new_event_loop

CONCURRENCY = 1024
LATENCY_S = 1.0


def one_run(client: str, waves: int, edge: str = "fast") -> dict:
    n = CONCURRENCY * waves
    args = SimpleNamespace(n=n, concurrency=CONCURRENCY, max_tokens=16, stream=False, pad=0,
                           metrics=False, no_cache=False)
    with mock_server("--latency-ms", str(int(LATENCY_S * 1000)), "--record-arrivals",
                     edge=edge) as server:
        args.url = server.base_url
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            result = runner.run(CLIENTS[client](args))
            ended = time.monotonic()
        stats = server.stats()
    # the client's own measured span (its set-up, e.g. writing the seeds file, left out)
    wall = result["wall_s"]
    started = ended - wall
    origin = stats["arrivals_origin"]
    arrivals = sorted(origin + a for a in stats["arrivals"])
    spreads = [arrivals[i + CONCURRENCY - 1] - arrivals[i] for i in range(0, n, CONCURRENCY)]
    starts = [arrivals[i] for i in range(0, n, CONCURRENCY)]
    return {"client": client, "requests": n, "wall_s": wall,
            "share_of_ideal": waves * LATENCY_S / wall,
            "start_s": arrivals[0] - started, "end_s": ended - (arrivals[-1] + LATENCY_S),
            "wave_period_s": (starts[-1] - starts[0]) / max(1, waves - 1),
            "first_spread_s": spreads[0], "last_spread_s": spreads[-1], "spreads_s": spreads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waves", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--clients", default="gristmill,raw")
    add_server_option(parser)
    args = parser.parse_args()
    pin_to_cpu(0)
    rows = [one_run(client, args.waves, args.server) for _ in range(args.repeats)
            for client in args.clients.split(",")]
    s3 = lambda v: f"{v:.3f}"  # noqa: E731
    print_table(rows, [("client", "client", str), ("requests", "requests", str),
                       ("wall_s", "wall s", s3),
                       ("share_of_ideal", "of ideal", lambda v: f"{100 * v:.1f}%"),
                       ("start_s", "start s", s3), ("wave_period_s", "wave period s", s3),
                       ("first_spread_s", "wave 0 spread s", s3),
                       ("last_spread_s", "last spread s", s3), ("end_s", "end s", s3)])
    path = write_json("waves", {"machine": machine(), "rows": rows,
                                "time": time.strftime("%Y-%m-%d %H:%M:%S")})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
