"""`gristmill run CONFIG --dry-run --target-records N`: how many seeds, and about how many
requests and tokens, N kept records take.

Seeds needed = ceil(N / records kept per seed). That rate comes from `--keep-rate`, or is
measured on an earlier run (`--like RUN`: its records per admitted seed, times the share its
dedup kept), or, given neither, is the most the pipeline can make per seed (every answer
kept, every list full): then the seeds are a lower bound. Requests and tokens are the dry
run's per-seed averages (themselves upper bounds: every answer at its max_tokens) times the
seeds needed."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from gristmill.dataset.files import read_json
from gristmill.errors import ConfigError


def measured_keep_rate(run_dir: Path) -> float:
    """Records kept per admitted seed in an earlier run: its summary (or, while it runs or
    after a crash, its state), scaled by the share dedup kept."""
    summary = read_json(run_dir / "summary.json")
    if summary is not None:
        records, seeds = summary.get("records_total", 0), summary.get("seeds", 0)
    else:
        state = read_json(run_dir / "state.json") or {}
        records, seeds = state.get("records", 0), state.get("seeds_admitted", 0)
    if not seeds:
        raise ConfigError(f"--like {run_dir}: no summary.json or state.json with admitted seeds "
                          "(give a run directory, or --keep-rate)")
    dedup = read_json(run_dir / "dedup.json") or {}
    kept = dedup["kept"] / dedup["input"] if dedup.get("input") else 1.0
    return records / seeds * kept


def estimate(plan: dict[str, Any], n: int, keep_rate: float | None,
             like: Path | None) -> dict[str, Any]:
    """The dry run's `plan` (over the seeds it read) scaled to the seeds N records take."""
    if keep_rate is not None and keep_rate <= 0:
        raise ConfigError(f"--keep-rate {keep_rate}: give records kept per seed, above 0")
    seeds = plan["seeds"]
    if not seeds:
        raise ConfigError("no seeds to estimate from")
    if keep_rate is not None:
        rate, basis = keep_rate, f"--keep-rate {keep_rate:g} records per seed"
    elif like is not None:
        rate = measured_keep_rate(like)
        basis = f"{rate:.3g} records kept per seed, measured on {like}"
    else:
        rate = plan["records"] / seeds
        basis = (f"no keep rate given: at most {rate:.3g} records per seed (every answer "
                 "kept), so at least this many seeds; give --keep-rate R or --like RUN")
    if rate <= 0:
        raise ConfigError(f"{basis}: no records kept, no number of seeds reaches {n}")
    needed = math.ceil(n / rate)
    per_seed = {k: plan[k] / seeds for k in ("requests", "prompt_tokens", "completion_tokens")}
    return {"records": n, "keep_rate": rate, "basis": basis, "seeds": needed,
            "seeds_available": seeds, **{k: math.ceil(v * needed) for k, v in per_seed.items()}}


def describe(est: dict[str, Any]) -> str:
    lines = [f"target {est['records']:,} records: about {est['seeds']:,} seeds -> "
             f"{est['requests']:,} requests, at most {est['prompt_tokens']:,} prompt + "
             f"{est['completion_tokens']:,} completion tokens ({est['basis']})"]
    if est["seeds"] > est["seeds_available"]:
        lines.append(f"the source has {est['seeds_available']:,} seeds (within --limit): the "
                     "run would end with fewer records (stop reason complete)")
    return "\n".join(lines)
