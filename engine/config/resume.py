"""Which config changes would change answers. Resuming a run with such a change would mix two
datasets, so it is refused (unless --force) with the fields that changed."""

from __future__ import annotations

from typing import Any

# Fields that change how fast or where requests go, never what is answered.
OPERATIONAL = frozenset({
    "max_in_flight", "rpm", "tpm", "rate_window_s", "adaptive", "metrics", "metrics_interval_s",
    "timeouts", "retry", "workers", "queue_size", "grace_s", "headers", "query", "base_urls",
    "api_key_env", "default_max_tokens", "tokenizer", "stream",
    # where and how a fleet runs the model (its model, dtype, max_model_len, extra_args count)
    "kind", "gpus", "gpus_per_server", "servers", "max_num_seqs", "max_num_batched_tokens",
    "prefix_caching", "enforce_eager", "env", "startup_timeout_s", "max_restarts",
})


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key in OPERATIONAL:
                continue
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(data, list) and data and all(isinstance(v, dict) for v in data):
        out = {}
        for i, value in enumerate(data):
            out.update(flatten(value, f"{prefix}[{i}]"))
        return out
    return {prefix: data}


def answer_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted paths whose values differ, ignoring operational fields and the run name."""
    a, b = flatten(old), flatten(new)
    a.pop("name", None)
    b.pop("name", None)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
