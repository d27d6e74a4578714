"""What a run reports about itself: state.json and timeline.jsonl while it runs (what
`gristmill status` and the report read), and the summary at its end."""

from __future__ import annotations

import asyncio
import os
import resource
import time
from typing import TYPE_CHECKING, Any

import orjson

from gristmill.runs.spend import cost_summary

if TYPE_CHECKING:
    from gristmill.runs.lifecycle import Run


def cache_stats(run: Run) -> dict[str, int]:
    caches = [c.cache for c in run.clients.values() if c.cache is not None]
    return {"hits": sum(c.hits for c in caches), "misses": sum(c.misses for c in caches)}


def state(run: Run, status: str) -> dict[str, Any]:
    stats = run.stats
    ended = run.outcome.as_dict() if run.outcome is not None else {}
    return {"status": status, **ended, "pid": os.getpid(), "updated": time.time(),
            "run_dir": str(run.dir.path), "seeds_admitted": stats.seeds_admitted,
            "records": stats.resumed_records + stats.records,
            "rejects": sum(stats.rejects.values()), "elapsed_s": stats.elapsed,
            "stages": [s.as_dict() for s in stats.stages], "cache": cache_stats(run),
            "cost_usd": cost_summary(run),
            **({"coverage": stats.coverage()} if stats.by_skill or stats.covered_before else {})}


def write_state(run: Run, status: str) -> None:
    """state.json, and a line of timeline.jsonl (the report's throughput over time; a
    resumed run appends its own session)."""
    now = state(run, status)
    run.dir.write_state(now)
    point = {"t": now["updated"], "session": run.session_started, "status": status,
             "elapsed_s": round(now["elapsed_s"], 3), "seeds": now["seeds_admitted"],
             "records": now["records"], "rejects": now["rejects"], "tokens": run.stats.tokens}
    with (run.dir.path / "timeline.jsonl").open("ab") as fh:
        fh.write(orjson.dumps(point) + b"\n")


async def keep_state(run: Run, interval_s: float) -> None:
    """state.json every `interval_s` while the run lasts; cancelled when it ends."""
    while True:
        write_state(run, "running")
        await asyncio.sleep(interval_s)


def process_cpu_s() -> float:
    """CPU (user + system) this process has spent since it started."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return round(usage.ru_utime + usage.ru_stime, 3)


def summary(run: Run) -> dict[str, Any]:
    stats = run.stats
    out = stats.summary()
    out["run_dir"] = str(run.dir.path)
    out["process_cpu_s"] = process_cpu_s()  # startup included; a cluster's: its workers' sum
    if run.outcome is not None:
        out.update(run.outcome.as_dict())
    out["records_total"] = stats.resumed_records + stats.records
    out["cache"] = cache_stats(run)
    out["cost_usd"] = cost_summary(run)  # null: no model priced (docs/spend.md)
    if run.dedup is not None:
        out["dedup"] = run.dedup
    if run.target is not None:
        out["target"] = run.target.summary()
    if run.judge is not None:
        out["judge"] = run.judge.counts.as_dict()
    out["seed_input"] = run.source.report.summary()
    out["backends"] = {}
    for name, c in run.clients.items():
        out["backends"][name] = {"requests": c.requests, "retries": c.retries,
                                 "errors": dict(c.errors),
                                 "prompt_tokens": c.usage.prompt_tokens,
                                 "cached_prompt_tokens": c.usage.cached_prompt_tokens,
                                 "completion_tokens": c.usage.completion_tokens,
                                 "cost_usd": out["cost_usd"] and out["cost_usd"]["by_backend"][name]}
        fleet = c.backend.capabilities.fleet
        if fleet is not None:
            out["backends"][name]["servers"] = fleet.summary()
    return out
