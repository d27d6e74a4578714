"""The run directory must be the same folder on every node (shared storage mounted at the same
path): each node is asked, by a task pinned to it, whether it sees the file the driver just
wrote. A node that does not is a clear error before any shard starts, not records that the
driver never finds."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gristmill.errors import ConfigError


def sees(path: str, token: str) -> bool:
    try:
        return token in Path(path).read_text()
    except OSError:
        return False


async def check_shared(ray: Any, path: Path, token: str, patience_s: float = 30.0) -> None:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0)(sees)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    asks = [asyncio.wait_for(probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        n["NodeID"], soft=False)).remote(str(path), token), patience_s) for n in nodes]
    # a node that is going away (it fails or does not answer) runs no shard: not a finding
    answers = await asyncio.gather(*asks, return_exceptions=True)
    blind = [n.get("NodeManagerAddress", n["NodeID"]) for n, seen in zip(nodes, answers)
             if seen is False]
    if blind:
        raise ConfigError(f"the run directory {path.parent} is not visible on node(s) "
                          f"{', '.join(blind)}: put it on storage every node mounts at the same "
                          "path (docs/cluster.md)")
