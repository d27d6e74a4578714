"""The dry run's cost estimate: each step's (stage, kind, judge) prompt and completion tokens
at its model's price, online and through a batch API (the discount off both).

Prompt tokens are the dry run's (exact where the backend has a tokenizer). Completion tokens
are every answer at its max_tokens, an upper bound; or, with `--like RUN`, the mean tokens
per answer that run measured, per step where its summary has them, else overall. No prompt
is assumed cached: the estimate is the uncached price."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gristmill.config.pipeline import PipelineConfig
from gristmill.config.prices import price_for
from gristmill.dataset.files import read_json
from gristmill.errors import ConfigError
from gristmill.protocol import Usage


def measured_means(run_dir: Path) -> tuple[dict[str, float], float]:
    """Completion tokens per answer in an earlier run: by stage (its summary's `stages`),
    and overall (the backends' tokens per request, for a summary without per-stage counts)."""
    summary = read_json(run_dir / "summary.json")
    if summary is None:
        raise ConfigError(f"--like {run_dir}: no summary.json (give a finished or stopped run)")
    by_stage = {s["name"]: s["completion_tokens"] / s["answers"]
                for s in summary.get("stages", []) if s.get("answers")}
    backends = summary.get("backends", {}).values()
    requests = sum(b.get("requests", 0) for b in backends)
    overall = sum(b.get("completion_tokens", 0) for b in backends) / requests if requests else 0.0
    if not by_stage and not overall:
        raise ConfigError(f"--like {run_dir}: its summary counts no answers to measure")
    return by_stage, overall


def _mean_for(step: str, by_stage: dict[str, float], overall: float) -> float:
    """An AgentInstruct kind's stages are numbered per refinement round (suggest_1, ...)."""
    found = [v for name, v in by_stage.items() if name == step or
             name.rpartition("_")[0] == step and name.rpartition("_")[2].isdigit()]
    return sum(found) / len(found) if found else overall


def estimate_cost(config: PipelineConfig, plan: dict[str, Any],
                  like: Path | None = None) -> dict[str, Any]:
    means = measured_means(like) if like is not None else None
    online = batch = 0.0
    unpriced: list[str] = []
    steps = {}
    for name, step in plan["steps"].items():
        completion = step["completion_tokens"]
        if means is not None:
            completion = round(_mean_for(name, *means) * step["requests"])
        price = price_for(config.backends[step["backend"]], step["model"])
        usage = Usage(step["prompt_tokens"], completion)
        cost = price.cost(usage) if price is not None else None
        if price is None:
            unpriced.append(f"backend {step['backend']!r} model {step['model']!r}")
        else:
            online += cost
            batch += price.cost(usage, batch=True)
        steps[name] = {**step, "completion_tokens": completion, "cost_usd": cost}
    basis = (f"completion tokens: the means measured on {like}" if like is not None else
             "completion tokens: every answer at its max_tokens, an upper bound")
    return {"online_usd": online, "batch_usd": batch, "priced": len(unpriced) < len(steps),
            "unpriced": sorted(set(unpriced)), "basis": basis, "steps": steps}


def describe(cost: dict[str, Any], scale: float = 1.0, what: str = "") -> str:
    """One line (two with unpriced models); `scale`: the same per seed for more seeds."""
    lines = []
    if cost["priced"]:
        lines.append(f"cost{what}: about ${cost['online_usd'] * scale:,.4f} online, "
                     f"${cost['batch_usd'] * scale:,.4f} in batch mode ({cost['basis']}; "
                     "no prompt cached)")
    if cost["unpriced"] and not what:
        lines.append(f"no price (not in the cost): {', '.join(cost['unpriced'])}; give the "
                     "backend `price: {input, cached_input, output}` (docs/spend.md)")
    return "\n".join(lines)
