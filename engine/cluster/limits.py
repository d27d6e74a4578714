"""A backend's limits are the whole run's: each of `workers` live shards gets its part of the
in-flight cap and of the rate limits (rounded up, so a small cap still lets each work). Each
shard's AIMD then backs off on its own 429s."""

from __future__ import annotations

import math
from typing import Any


def divided(config: dict[str, Any], workers: int) -> dict[str, Any]:
    """A dumped pipeline config with every backend's max_in_flight, rpm and tpm split."""
    backends = {}
    for name, backend in config["backends"].items():
        backend = dict(backend)
        for field in ("max_in_flight", "rpm", "tpm"):
            if backend.get(field):
                backend[field] = max(1, math.ceil(backend[field] / workers))
        backends[name] = backend
    return {**config, "backends": backends}
