"""One mode of benchmarks/vllm_bench.py in its own process; writes a JSON object with each
repeat's wall seconds and output tokens (a warm-up pass first, untimed) to --out.

    python -m benchmarks.vllm_workers --mode offline|inproc --model DIR ...   (needs vLLM)
    python -m benchmarks.vllm_workers --mode raw|raw-stream|gristmill|gristmill-stream|batched
                                      --url http://127.0.0.1:PORT/v1 ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable

PROMPT = ("Question {i}: explain how a watermill grinds grain, and why the miller checks "
          "the stones, the sluice and the wheel before the day begins.")
MODEL_NAME = "bench"  # the served model name


def prompts(n: int) -> list[str]:
    return [PROMPT.format(i=i) for i in range(n)]


def engine_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The same engine settings for offline, in-process and `vllm serve`."""
    return {"model": args.model, "dtype": args.dtype, "max_model_len": args.max_model_len,
            "max_num_seqs": args.max_num_seqs, "enforce_eager": args.eager,
            "disable_log_stats": True}


def sampling(args: argparse.Namespace) -> dict[str, Any]:
    return {"max_tokens": args.output_tokens, "ignore_eos": True, "temperature": 0}


def repeat(args: argparse.Namespace, once: Callable[[list[str]], int]) -> dict[str, Any]:
    once(prompts(min(32, args.prompts)))  # warm-up: first-batch costs are not throughput
    runs = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        tokens = once(prompts(args.prompts))
        runs.append({"wall_s": time.perf_counter() - t0, "tokens": tokens})
    return {"runs": runs}


def run_offline(args: argparse.Namespace) -> dict[str, Any]:
    from gristmill.backends.vllm.inproc import import_vllm

    vllm = import_vllm()
    llm = vllm.LLM(**engine_kwargs(args))
    params = vllm.SamplingParams(**sampling(args))

    def once(batch: list[str]) -> int:
        outs = llm.generate(batch, params, use_tqdm=False)
        return sum(len(o.outputs[0].token_ids) for o in outs)

    return repeat(args, once)


class SharedBackend:
    """One backend for every repeat: a run closes its backends, this one stays open."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.name = backend.name

    async def complete(self, request: Any) -> Any:
        return await self.backend.complete(request)

    def stream(self, request: Any) -> AsyncIterator[Any]:
        return self.backend.stream(request)

    async def aclose(self) -> None:
        pass


def pipeline_config(args: argparse.Namespace, work: Path, batch: list[str],
                    backend: dict[str, Any], stream: bool) -> Any:
    from gristmill.config.load import validate_config

    seeds = work / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"text": p}) + "\n" for p in batch))
    return validate_config({
        "name": "vllm-bench", "seeds": {"path": str(seeds), "min_chars": 1, "dedup": False},
        "backends": {"default": {"model": args.model if "kind" in backend else MODEL_NAME,
                                 "api": "completions", "max_in_flight": args.concurrency,
                                 "timeouts": {"first_token": 1200, "total": 1200}, **backend}},
        "stages": [{"name": "answer", "prompt": "{{ seed }}", "stream": stream,
                    "output": {"type": "text"}, "sampling": sampling(args),
                    "validators": {"defaults": False}}],
        "dedup": {"enabled": False}})


async def gristmill_once(args: argparse.Namespace, batch: list[str], backend: dict[str, Any],
                         stream: bool, shared: Any = None) -> int:
    from gristmill.runs.runner import Run, RunOptions

    work = Path(tempfile.mkdtemp(prefix="gm-vllm-bench-"))
    the_run = Run(pipeline_config(args, work, batch, backend, stream),
                  RunOptions(run_dir=work / "run", progress=False, cache=False))
    if shared is not None:
        the_run.clients["default"].backend = shared
    summary = await the_run.execute()
    if summary["records"] != len(batch):
        raise RuntimeError(f"{summary['records']} records of {len(batch)}: {summary['rejects']}")
    return summary["stages"][0]["completion_tokens"]


async def run_async_modes(args: argparse.Namespace) -> dict[str, Any]:
    """Repeats inside one loop; the in-process engine starts once for all of them."""
    shared = None
    if args.mode == "inproc":
        from gristmill.backends.vllm.inproc import VLLMInProcBackend
        from gristmill.config.pipeline import BackendConfig

        kwargs = engine_kwargs(args)
        inproc = VLLMInProcBackend("default", BackendConfig(
            kind="vllm-inproc", model=args.model, dtype=args.dtype,
            max_model_len=args.max_model_len, max_num_seqs=args.max_num_seqs,
            engine_args={"enforce_eager": kwargs["enforce_eager"]}))
        await inproc.start()
        shared = SharedBackend(inproc)
    backend, stream = {
        "inproc": ({"kind": "vllm-inproc"}, False),
        "gristmill": ({"base_url": args.url}, False),
        "gristmill-stream": ({"base_url": args.url}, True),
        "batched": ({"base_url": args.url, "micro_batch": {"max_prompts": args.batch_prompts,
                                                     "window_ms": args.batch_window_ms}}, False),
    }.get(args.mode, (None, False))
    runs = []
    for i in range(args.repeats + 1):  # the first is the warm-up
        batch = prompts(min(32, args.prompts) if i == 0 else args.prompts)
        t0 = time.perf_counter()
        if backend is None:
            tokens = await raw_once(args, batch, stream=args.mode == "raw-stream")
        else:
            tokens = await gristmill_once(args, batch, backend, stream, shared)
        if i:
            runs.append({"wall_s": time.perf_counter() - t0, "tokens": tokens})
    if shared is not None:
        await shared.backend.aclose()
    return {"runs": runs}


async def raw_once(args: argparse.Namespace, batch: list[str], stream: bool) -> int:
    """aiohttp + orjson in a bare loop of `concurrency` workers: the client floor."""
    import aiohttp
    import orjson

    tokens = 0
    todo = iter(batch)
    url = args.url + "/completions"
    extra = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal tokens
        for prompt in todo:
            body = orjson.dumps({"model": MODEL_NAME, "prompt": prompt, **sampling(args),
                                 **extra})
            async with session.post(url, data=body,
                                    headers={"Content-Type": "application/json"}) as resp:
                resp.raise_for_status()
                if not stream:
                    tokens += orjson.loads(await resp.read())["usage"]["completion_tokens"]
                    continue
                async for line in resp.content:
                    if line.startswith(b"data: {"):
                        event = orjson.loads(line[6:])
                        if event.get("usage"):
                            tokens += event["usage"]["completion_tokens"]

    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(args.concurrency)))
    return tokens


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mode", default="")
    p.add_argument("--model", default="")
    p.add_argument("--url", default="")
    p.add_argument("--out", default="", help="write the JSON result here")
    p.add_argument("--prompts", type=int, default=512)
    p.add_argument("--output-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=256)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--max-model-len", type=int, default=512)
    p.add_argument("--max-num-seqs", type=int, default=256)
    p.add_argument("--eager", action=argparse.BooleanOptionalAction, default=True,
                   help="enforce eager mode (CPU); --no-eager on a GPU box for CUDA graphs")
    p.add_argument("--batch-prompts", type=int, default=32)
    p.add_argument("--batch-window-ms", type=float, default=3.0)
    return p


def main() -> None:
    args = parser().parse_args()
    if args.mode == "offline":
        result = run_offline(args)
    else:
        from gristmill.runs.event_loop import new_event_loop

        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            result = runner.run(run_async_modes(args))
    # a file, not stdout: vLLM logs to stdout
    Path(args.out).write_text(json.dumps({"mode": args.mode, **result}))


if __name__ == "__main__":
    main()
