"""One view of a run on a cluster: RUN/state.json adds up the shards' own state.json (each
shard writes its own every few seconds, and at its end), so `gristmill status RUN` reads a
cluster run like any other; the driver prints a progress line from the same sums."""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any

from gristmill.cluster.merge import add_up
from gristmill.dataset.files import read_json

if TYPE_CHECKING:
    from gristmill.cluster.driver import ClusterRun


def cluster_state(driver: ClusterRun, status: str) -> dict[str, Any]:
    parts = [state for k in range(driver.shards)
             if (state := read_json(driver.shard_dir(k) / "state.json")) is not None]
    total = add_up(parts) or {}
    done = sum(1 for s in parts if s.get("status") == "finished"
               and s.get("stop_reason") == "complete")
    ended = driver.outcome.as_dict() if driver.outcome is not None else {}
    return {"status": status, **ended, "pid": os.getpid(), "updated": time.time(),
            "run_dir": str(driver.dir.path), "elapsed_s": driver.elapsed,
            "seeds_admitted": total.get("seeds_admitted", 0),
            "records": total.get("records", 0), "rejects": total.get("rejects", 0),
            "stages": total.get("stages", []),
            "cache": total.get("cache") or {"hits": 0, "misses": 0},
            "cost_usd": total.get("cost_usd"),
            "cluster": {"shards": driver.shards, "shards_done": done,
                        "shards_running": len(driver.live), "worker_restarts": driver.restarts}}


def progress_line(state: dict[str, Any]) -> str:
    c = state["cluster"]
    return (f"cluster: shards {c['shards_done']}/{c['shards']} done, {c['shards_running']} "
            f"running · seeds {state['seeds_admitted']:,} · records {state['records']:,} · "
            f"rejects {state['rejects']:,} · {state['elapsed_s']:.0f}s")


async def keep_cluster_state(driver: ClusterRun, interval_s: float, show_every_s: float | None,
                             say: Any) -> None:
    """RUN/state.json every `interval_s`, a progress line every `show_every_s` (None: no
    line); cancelled when the run ends."""
    shown = time.monotonic()
    while True:
        state = await asyncio.to_thread(cluster_state, driver, "running")
        driver.dir.write_state(state)
        if show_every_s is not None and time.monotonic() - shown >= show_every_s:
            say(progress_line(state))
            shown = time.monotonic()
        await asyncio.sleep(interval_s)
