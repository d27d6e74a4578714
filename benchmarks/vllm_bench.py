"""The same prompts through vLLM in every way gristmill can reach it, side by side in one run:

  offline           vLLM's `LLM.generate` on the whole list (the engine's own ceiling)
  inproc            gristmill's full engine, backend kind vllm-inproc (AsyncLLM in-process)
  raw               a bare aiohttp loop against one `vllm serve` (the client floor)
  gristmill         gristmill's full engine against the same server, non-streaming
  raw-stream        the aiohttp loop, streaming (SSE)
  gristmill-stream  gristmill against the server, streaming
  batched           gristmill against the server, many prompts per /v1/completions request

Every mode: the same prompts (text completions), `ignore_eos` so every answer has exactly
`--output-tokens` tokens, temperature 0, the same engine settings. Each mode runs in its own
process (warm-up pass, then `--repeats` timed passes; medians). Output tokens per second and
ratios; prints a table and writes benchmarks/results/vllm_bench.json.

    python -m benchmarks.vllm_bench                      # builds the tiny test model
    python -m benchmarks.vllm_bench --model /models/Qwen2.5-7B-Instruct --no-eager   # a GPU box
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from gristmill.backends.vllm.runtime import Runtime, ensure_runtime, gristmill_importable
from gristmill.backends.vllm.server import ServerSpec, VLLMServer
from benchmarks.common import ROOT, machine, print_table, write_json
from benchmarks.vllm_workers import MODEL_NAME, parser as worker_parser

ENGINE_MODES = ("offline", "inproc")
SERVER_MODES = ("raw", "gristmill", "raw-stream", "gristmill-stream", "batched")
RATIOS = [("inproc", "offline", "in-process / offline", 0.90),
          ("gristmill", "raw", "gristmill / raw aiohttp (non-streaming)", 0.95),
          ("gristmill-stream", "raw-stream", "gristmill / raw aiohttp (streaming)", None),
          ("raw", "offline", "raw aiohttp via vllm serve / offline", None),
          ("raw-stream", "raw", "streaming / non-streaming (raw aiohttp)", None),
          ("gristmill-stream", "gristmill", "streaming / non-streaming (gristmill)", None),
          ("batched", "gristmill", "batched / one request per prompt (gristmill)", None)]


_GRISTMILL_FOR_RUNTIME: dict[str, str] = {}


def runtime_env(runtime: Runtime) -> dict[str, str]:
    """The runtime's environment with this gristmill importable (installed once per run)."""
    if not _GRISTMILL_FOR_RUNTIME:
        site = Path(tempfile.mkdtemp(prefix="gm-gristmill-"))
        _GRISTMILL_FOR_RUNTIME.update(gristmill_importable(site))
    return {**runtime.env(), **_GRISTMILL_FOR_RUNTIME}


def worker(runtime: Runtime, mode: str, common: list[str], url: str = "") -> dict[str, Any]:
    env = runtime_env(runtime)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        argv = [str(runtime.python), "-m", "benchmarks.vllm_workers", "--mode", mode,
                f"--out={out}", *common]
        if url:
            argv += ["--url", url]
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=7200)
        if done.returncode != 0:
            raise RuntimeError(f"mode {mode} failed:\n{done.stderr[-3000:]}")
        return json.loads(out.read_text())


def summarize(mode: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["tokens"] / r["wall_s"] for r in runs]
    return {"mode": mode, "tok_per_s": statistics.median(rates), "runs_tok_per_s": rates,
            "tokens": runs[0]["tokens"], "wall_s": statistics.median(r["wall_s"] for r in runs)}


async def server_modes(runtime: Runtime, args: argparse.Namespace, common: list[str],
                       modes: list[str], log: Path) -> dict[str, list[dict[str, Any]]]:
    spec = ServerSpec(model=args.model, served_model_name=MODEL_NAME, dtype=args.dtype,
                      max_model_len=args.max_model_len, max_num_seqs=args.max_num_seqs,
                      enforce_eager=args.eager, extra_args=("--disable-log-stats",))
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    async with VLLMServer(spec, runtime, log_path=log) as server:
        # modes interleave repeat by repeat: a noisy neighbour hits every mode alike
        one = ["--repeats=1" if a.startswith("--repeats") else a for a in common]
        for _ in range(args.repeats):
            for mode in modes:
                result = await asyncio.to_thread(worker, runtime, mode, one, server.base_url)
                runs[mode] += result["runs"]
    return runs


def build_tiny_model(runtime: Runtime) -> str:
    out = Path(tempfile.mkdtemp(prefix="gm-tiny-model-"))
    subprocess.run([str(runtime.python), str(ROOT / "backends" / "vllm" / "tiny_model.py"),
                    str(out)], env=runtime.env(), check=True, capture_output=True, timeout=600)
    return str(out)


def main() -> None:
    p = worker_parser()
    p.description = __doc__
    p.add_argument("--modes", default=",".join(ENGINE_MODES + SERVER_MODES))
    p.add_argument("--name", default="vllm_bench", help="results/NAME.json")
    args = p.parse_args()
    runtime = ensure_runtime()
    args.model = args.model or build_tiny_model(runtime)
    modes = args.modes.split(",")
    common = [f"--model={args.model}", f"--prompts={args.prompts}",
              f"--output-tokens={args.output_tokens}", f"--repeats={args.repeats}",
              f"--concurrency={args.concurrency}", f"--dtype={args.dtype}",
              f"--max-model-len={args.max_model_len}", f"--max-num-seqs={args.max_num_seqs}",
              "--eager" if args.eager else "--no-eager", f"--batch-prompts={args.batch_prompts}",
              f"--batch-window-ms={args.batch_window_ms}"]
    started = time.time()
    load = [os.getloadavg()]
    results: dict[str, list[dict[str, Any]]] = {}
    for mode in modes:  # a mode named twice runs twice (alternate them against drift)
        if mode in ENGINE_MODES:
            results.setdefault(mode, []).extend(worker(runtime, mode, common)["runs"])
    load.append(os.getloadavg())
    served = list(dict.fromkeys(m for m in modes if m in SERVER_MODES))
    if served:
        log = Path(tempfile.mkdtemp(prefix="gm-vllm-bench-")) / "server.log"
        print(f"vllm serve log: {log}")
        results.update(asyncio.run(server_modes(runtime, args, common, served, log)))
    load.append(os.getloadavg())
    rows = [summarize(m, results[m]) for m in dict.fromkeys(modes) if m in results]
    by = {r["mode"]: r["tok_per_s"] for r in rows}
    print_table(rows, [("mode", "mode", str), ("tok_per_s", "output tok/s", "{:,.0f}".format),
                       ("runs_tok_per_s", "repeats", lambda v: ", ".join(f"{x:,.0f}" for x in v)),
                       ("tokens", "tokens", "{:,}".format), ("wall_s", "wall s", "{:.2f}".format)])
    ratios = []
    for a, b, title, target in RATIOS:
        if a in by and b in by:
            ratios.append({"ratio": title, "value": by[a] / by[b], "target": target})
            met = "" if target is None else ("  (target >= %.2f: %s)" % (
                target, "met" if by[a] / by[b] >= target else "MISSED"))
            print(f"{title}: {by[a] / by[b]:.3f}{met}")
    write_json(args.name, {"settings": vars(args), "machine": machine(),
                              "load_avg_1_5_15": load, "started": started,
                              "rows": rows, "ratios": ratios})


if __name__ == "__main__":
    main()
