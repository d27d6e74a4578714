"""Wall-clock behaviour of the mock server, measured (the tests check the same behaviour by
counts: simulated GPU steps, peak in flight, tokens sent):

- batching: tokens/s of the simulated GPU with 1 request at a time and with 8 in flight;
- latency: 12 concurrent requests to a server with a fixed 300 ms latency, end to end;
- pacing: a 10-token answer from a server that sends 50 tokens/s.

    python -m benchmarks.mock_timing [--repeats 3]

Prints a table and writes benchmarks/results/mock_timing.json."""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp

from benchmarks.common import machine, mock_server, print_table, write_json
from gristmill.runs.event_loop import new_event_loop

CHAT = "/v1/chat/completions"


def chat(content: str, **extra: object) -> dict:
    return {"model": "mock", "messages": [{"role": "user", "content": content}], **extra}


async def ask(session: aiohttp.ClientSession, url: str, body: dict) -> dict:
    async with session.post(url + CHAT, json=body) as r:
        assert r.status == 200, r.status
        return await r.json()


async def gpu_rate(session: aiohttp.ClientSession, concurrency: int, requests: int) -> float:
    """Generated tokens per second with `concurrency` requests in flight, in waves."""
    with mock_server("--gpu", "--max-running", "8", "--output-tokens", "30") as server:
        start = time.monotonic()
        for wave in range(0, requests, concurrency):
            await asyncio.gather(*(ask(session, server.url, chat(f"t{wave + i}"))
                                   for i in range(concurrency)))
        return requests * 30 / (time.monotonic() - start)


async def latency_wall(session: aiohttp.ClientSession) -> float:
    with mock_server("--latency-ms", "300") as server:
        start = time.monotonic()
        await asyncio.gather(*(ask(session, server.url, chat(f"c{i}")) for i in range(12)))
        return time.monotonic() - start


async def paced_wall(session: aiohttp.ClientSession) -> float:
    with mock_server("--tokens-per-s", "50", "--output-tokens", "100") as server:
        start = time.monotonic()
        await ask(session, server.url, chat("q", max_tokens=10))
        return time.monotonic() - start


async def one_round() -> dict:
    async with aiohttp.ClientSession() as session:
        alone = await gpu_rate(session, 1, 3)
        batched = await gpu_rate(session, 8, 16)
        return {"gpu_tokens_per_s_alone": alone, "gpu_tokens_per_s_8": batched,
                "gpu_speedup": batched / alone,
                "latency_12x300ms_s": await latency_wall(session),
                "paced_10_tokens_at_50_s": await paced_wall(session)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for _ in range(args.repeats):
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            rows.append(runner.run(one_round()))
    f1 = lambda v: f"{v:.1f}"  # noqa: E731
    s3 = lambda v: f"{v:.3f}"  # noqa: E731
    print_table(rows, [("gpu_tokens_per_s_alone", "GPU tok/s, 1", f1),
                       ("gpu_tokens_per_s_8", "GPU tok/s, 8", f1),
                       ("gpu_speedup", "speed-up", lambda v: f"{v:.1f}x"),
                       ("latency_12x300ms_s", "12 x 300 ms, s", s3),
                       ("paced_10_tokens_at_50_s", "10 tok at 50/s, s", s3)])
    path = write_json("mock_timing", {"machine": machine(), "rows": rows,
                                      "time": time.strftime("%Y-%m-%d %H:%M:%S")})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
