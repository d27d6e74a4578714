"""One client run in its own process: `python -m benchmarks.clients --client NAME ...`.

Prints one JSON line: wall and CPU seconds of the run (start-up excluded), peak RSS,
requests, completion tokens and errors. Clients:
  gristmill  the full engine: seed source, pipeline, permits/limiter, retries, cache + JSONL
             sink (validators and the end-of-run dedup off: measured on their own)
  openai     the official AsyncOpenAI client, default transport, asyncio.Semaphore
  raw        aiohttp + orjson in a bare loop (no features: the floor)
  gristmill-default-gc  the engine with Python's default GC thresholds (for the A/B)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.common import Meter, peak_rss_mb, pin_to_cpu


PADDING = "The miller checks the stones, the sluice and the grain before the day begins. "


def prompts(n: int, pad: int = 0) -> list[str]:
    return [f"Question {i}: explain how a watermill grinds grain. " + PADDING * pad
            for i in range(n)]


async def run_gristmill(args: argparse.Namespace, tune_gc: bool = True) -> dict[str, Any]:
    """The full engine over `args.n` seeds, in a run directory removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="gm-bench-") as tmp:
        return await _run_gristmill(args, Path(tmp), tune_gc)


async def _run_gristmill(args: argparse.Namespace, tmp: Path, tune_gc: bool) -> dict[str, Any]:
    from gristmill.config.load import validate_config
    from gristmill.runs.runner import RunOptions, run

    seeds = tmp / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"text": p}) + "\n" for p in prompts(args.n, args.pad)))
    config = validate_config({
        "name": "bench",
        "seeds": {"path": str(seeds), "min_chars": 1, "dedup": False},
        "backends": {"default": {"base_url": args.url, "model": "mock",
                                 "max_in_flight": args.concurrency,
                                 "scrape_metrics": args.metrics, "adaptive": not args.metrics,
                                 "timeouts": {"first_token": 600, "total": 1200}}},
        "stages": [{"name": "answer", "prompt": "{{ seed }}", "stream": args.stream,
                    "sampling": {"max_tokens": args.max_tokens},
                    "validators": {"defaults": False}}],  # the engine, not the checks
        "record": [{"role": "user", "content": "{{ seed }}"},
                   {"role": "assistant", "content": "{{ answer }}"}],
        "dedup": {"enabled": False},  # a post-run step, not part of the request path
    })
    with Meter() as meter:
        summary = await run(config, RunOptions(run_dir=tmp / "run", progress=False,
                                               cache=not args.no_cache, tune_gc=tune_gc,
                                               metrics_port=args.serve_metrics))
    stage = summary["stages"][0]
    return {"wall_s": meter.wall, "cpu_s": meter.cpu, "requests": stage["done"],
            "ok": summary["records"], "tokens": stage["completion_tokens"],
            "errors": summary["rejects"]}


async def run_openai(args: argparse.Namespace) -> dict[str, Any]:
    import openai

    client = openai.AsyncOpenAI(base_url=args.url, api_key="bench", max_retries=0,
                                timeout=1200)
    sem = asyncio.Semaphore(args.concurrency)
    tokens = errors = 0

    async def one(prompt: str) -> None:
        nonlocal tokens, errors
        async with sem:
            try:
                if args.stream:
                    stream = await client.chat.completions.create(
                        model="mock", messages=[{"role": "user", "content": prompt}],
                        max_tokens=args.max_tokens, stream=True,
                        stream_options={"include_usage": True})
                    async for chunk in stream:
                        if chunk.usage:
                            tokens += chunk.usage.completion_tokens
                else:
                    result = await client.chat.completions.create(
                        model="mock", messages=[{"role": "user", "content": prompt}],
                        max_tokens=args.max_tokens)
                    tokens += result.usage.completion_tokens
            except openai.OpenAIError:
                errors += 1

    with Meter() as meter:
        await asyncio.gather(*(one(p) for p in prompts(args.n, args.pad)))
    await client.close()
    return {"wall_s": meter.wall, "cpu_s": meter.cpu, "requests": args.n,
            "ok": args.n - errors, "tokens": tokens, "errors": errors}


async def run_raw(args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp
    import orjson

    tokens = errors = 0
    todo = iter(prompts(args.n, args.pad))
    url = args.url + "/chat/completions"

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal tokens, errors
        for prompt in todo:
            body = orjson.dumps({"model": "mock", "max_tokens": args.max_tokens,
                                 "messages": [{"role": "user", "content": prompt}],
                                 "stream": args.stream})
            async with session.post(url, data=body,
                                    headers={"Content-Type": "application/json"}) as resp:
                if resp.status != 200:
                    errors += 1
                    await resp.read()
                    continue
                if args.stream:
                    async for line in resp.content:
                        if line.startswith(b"data: {"):
                            tokens += 1 if orjson.loads(line[6:])["choices"] else 0
                else:
                    tokens += orjson.loads(await resp.read())["usage"]["completion_tokens"]

    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        with Meter() as meter:
            await asyncio.gather(*(worker(session) for _ in range(args.concurrency)))
    return {"wall_s": meter.wall, "cpu_s": meter.cpu, "requests": args.n,
            "ok": args.n - errors, "tokens": tokens, "errors": errors}


CLIENTS = {"gristmill": run_gristmill, "openai": run_openai, "raw": run_raw,
           # the engine with Python's default collector thresholds (engine/runs/gc_tuning.py off)
           "gristmill-default-gc": partial(run_gristmill, tune_gc=False)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--client", choices=CLIENTS, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--no-cache", action="store_true", help="gristmill: no response cache")
    parser.add_argument("--pad", type=int, default=0, help="lengthen prompts by N sentences")
    parser.add_argument("--metrics", action="store_true", help="gristmill: cap in-flight "
                        "requests from the server's /metrics; --concurrency is the ceiling")
    parser.add_argument("--serve-metrics", type=int, metavar="PORT", help="gristmill: serve "
                        "Prometheus /metrics on PORT (benchmarks/metrics_overhead.py)")
    parser.add_argument("--cpu", type=int, default=0, help="core to pin this process to")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args()
    pin_to_cpu(args.cpu)
    from gristmill.runs.event_loop import new_event_loop

    with asyncio.Runner(loop_factory=lambda: new_event_loop(args.loop == "uvloop")) as runner:
        result = runner.run(CLIENTS[args.client](args))
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
