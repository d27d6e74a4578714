"""Runs in the vLLM runtime's Python (the test venv has no vLLM): one in-process engine for
every check, since it takes ~30 s and ~3 GB to start. Prints one JSON object of observations;
tests/test_vllm_inproc.py asserts on them.

    python -m tests.vllm_drivers.inproc_checks MODEL_DIR WORK_DIR
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import psutil

from gristmill.protocol import Request
from gristmill.backends.vllm.inproc import VLLMInProcBackend
from gristmill.config.load import validate_config
from gristmill.runs.runner import Run, RunOptions

CHAT = [{"role": "user", "content": "Tell me about rivers and mills."}]
LONG = {"max_tokens": 1500, "ignore_eos": True, "temperature": 0}


def pipeline(model: str, work: Path, seeds: int) -> dict[str, Any]:
    """One streamed stage whose answers a streaming validator rejects after 40 characters."""
    seed_file = work / "seeds.jsonl"
    seed_file.write_text("".join(json.dumps({"text": f"Seed {i} about rivers and mills."}) + "\n"
                                 for i in range(seeds)))
    return {"name": "inproc", "seeds": {"path": str(seed_file), "min_chars": 1},
            "backends": {"default": {"kind": "vllm-inproc", "model": model,
                                     "max_model_len": 2048, "max_in_flight": 8,
                                     "engine_args": {"enforce_eager": True}}},
            "stages": [{"name": "answer", "prompt": "Write about: {{ seed }}", "stream": True,
                        "output": {"type": "text"}, "sampling": LONG,
                        "validators": {"defaults": False, "check_every_chars": 16,
                                       "max_regenerations": 0,
                                       "stream": [{"name": "max_length", "max_chars": 40}]}}]}


async def generation(backend: VLLMInProcBackend) -> dict[str, Any]:
    params = {"max_tokens": 24, "temperature": 0, "ignore_eos": True}
    whole = await backend.complete(Request("m", messages=CHAT, params=params))
    deltas = [d async for d in backend.stream(Request("m", messages=CHAT, params=params,
                                                      stream=True))]
    text = await backend.complete(Request("m", prompt="Once upon a time", params=params))
    schema = {"type": "string", "enum": ["water", "wind"]}
    structured = await backend.complete(Request(
        "m", messages=CHAT, params={"max_tokens": 40, "temperature": 0},
        response_format={"type": "json_schema", "json_schema": {"name": "m", "schema": schema}}))
    final = deltas[-1]
    return {"complete_text": whole.text, "complete_usage": [whole.usage.prompt_tokens,
                                                            whole.usage.completion_tokens],
            "stream_text": "".join(d.text for d in deltas), "stream_deltas": len(deltas),
            "stream_final_usage": [final.usage.prompt_tokens, final.usage.completion_tokens]
            if final.usage else None,
            "stream_usage_only_last": all(d.usage is None for d in deltas[:-1]),
            "stream_finish": final.finish_reason,
            "prompt_usage": [text.usage.prompt_tokens, text.usage.completion_tokens],
            "structured_text": structured.text, "unfinished_after": backend.unfinished()}


async def cancellation(backend: VLLMInProcBackend) -> dict[str, Any]:
    started = asyncio.Event()
    received = 0

    async def consume() -> None:
        nonlocal received
        async for delta in backend.stream(Request("m", messages=CHAT, params=LONG, stream=True)):
            received += len(delta.text)
            started.set()

    aborted_before = backend.aborted
    task = asyncio.create_task(consume())
    await started.wait()
    during = backend.unfinished()
    task.cancel()
    try:
        await task
        cancelled = False
    except asyncio.CancelledError:
        cancelled = True
    # a bad request is mapped, and leaves nothing behind either
    try:
        await backend.complete(Request("m", messages=CHAT, params={"temperature": -1}))
        bad_request = None
    except Exception as exc:  # noqa: BLE001  (reported to the test, which checks the type)
        bad_request = type(exc).__name__
    return {"unfinished_during": during, "cancelled": cancelled,
            "aborted": backend.aborted - aborted_before, "unfinished_after": backend.unfinished(),
            "bad_request": bad_request, "unfinished_after_bad": backend.unfinished()}


async def main(model: str, work: Path) -> dict[str, Any]:
    seeds = 4
    the_run = Run(validate_config(pipeline(model, work, seeds)),
                  RunOptions(run_dir=work / "run", progress=False))
    backend = the_run.clients["default"].backend
    assert isinstance(backend, VLLMInProcBackend)
    engine = await backend.start()
    children_running = [" ".join(p.cmdline()) for p in psutil.Process().children(recursive=True)]
    out = {"generation": await generation(backend), "cancel": await cancellation(backend)}
    aborted_before = backend.aborted
    summary = await the_run.execute()  # closes the backend: the engine shuts down
    out["pipeline"] = {"records": summary["records"], "rejects": summary["rejects"],
                       "seeds": seeds, "aborted": backend.aborted - aborted_before,
                       "validation": summary["validation"],
                       "unfinished_after": engine.get_num_unfinished_requests(),
                       "engine_closed": backend.engine is None}
    _, alive = psutil.wait_procs(psutil.Process().children(recursive=True), timeout=30)
    # Python's multiprocessing resource tracker stays until this process exits, by design
    out["shutdown"] = {"children_while_running": children_running,
                       "children_left": [p.cmdline() for p in alive
                                         if "resource_tracker" not in " ".join(p.cmdline())]}
    return out


if __name__ == "__main__":
    result = asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
    print(json.dumps(result))
