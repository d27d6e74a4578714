"""`gristmill status RUN` and `gristmill cache stats RUN`: read a run directory, running or not."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from gristmill.errors import ConfigError
from gristmill.dataset.files import read_json


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe(run_dir: Path) -> str:
    state = read_json(run_dir / "state.json")
    if state is None:
        raise ConfigError(f"{run_dir}: no state.json; is this a run directory?")
    status = state["status"]
    if status == "running" and not _alive(state["pid"]):
        status = "stopped without finishing (the process is gone); `gristmill resume` continues it"
    elif state.get("stop_reason"):
        status += f" ({state['stop_reason']}, exit {state['exit_code']})"
        if state.get("detail"):
            status += f": {state['detail']}"
    age = time.time() - state["updated"]
    lines = [f"{run_dir}: {status} (updated {age:.0f}s ago)",
             f"seeds admitted {state['seeds_admitted']:,} · records {state['records']:,} · "
             f"rejects {state['rejects']:,} · cache hits {state['cache']['hits']:,}"]
    if (cost := state.get("cost_usd")) is not None:  # older runs, unpriced models: none
        lines.append(cost_line(cost))
    for stage in state["stages"]:
        lines.append(f"  {stage['name']:<12} done {stage['done']:>9,}  in flight "
                     f"{stage['in_flight']:>5,}  failed {stage['failed']:>7,}")
    return "\n".join(lines + coverage_lines(state.get("coverage")) + batch_lines(run_dir))


def coverage_lines(coverage: dict[str, Any] | None) -> list[str]:
    """Records per skill, and how many of its taxonomy types have any, with the thinnest."""
    if not coverage or not coverage.get("by_skill"):
        return []
    types: dict[str, dict[str, int]] = {}
    for key, count in coverage.get("by_type", {}).items():
        skill, _, name = key.partition("/")
        types.setdefault(skill, {})[name] = count
    lines = ["records by skill (types with records; the fewest):"]
    for skill, count in coverage["by_skill"].items():
        mine = types.get(skill, {})
        thinnest = ", ".join(f"{n} {c:,}" for n, c in sorted(mine.items(), key=lambda kv: kv[1])[:2])
        lines.append(f"  {skill:<24} {count:>9,}  types {len(mine):>3}"
                     + (f"  (fewest: {thinnest})" if thinnest else ""))
    return lines


def batch_lines(run_dir: Path, every: bool = False) -> list[str]:
    """Hosted batch files: how many are done, and each open one's state and counts (every
    one's with `every`)."""
    from gristmill.backends.openai_batch.ledger import read_files

    lines = []
    for backend, files in read_files(run_dir).items():
        done = sum(1 for f in files if f["done"])
        lines.append(f"batches of {backend}: {len(files)} files, {done} done")
        for f in files:
            if every or not f["done"]:
                lines.append(f"  {f['name']}  {f['requests']:>6,} requests  "
                             f"{f['batch_id'] or ''}  {f['status'] or 'sealed'}  "
                             f"{f['counts'] or ''}{'  done' if f['done'] else ''}")
    return lines


def cost_line(cost: dict[str, Any]) -> str:
    line = f"spent ${cost['total']:,.4f} (this session ${cost['this_session']:,.4f})"
    priced = {k: v for k, v in cost["by_backend"].items() if v is not None}
    if len(cost["by_backend"]) > 1:
        line += " · " + ", ".join(f"{k} ${v:,.4f}" for k, v in priced.items())
    if (budget := cost.get("budget")) is not None:
        line += f" · budget ${budget['cap_usd']:,.2f}" + (" (reached)" if budget["reached"] else "")
    return line


def cache_stats(run_dir: Path) -> dict[str, Any]:
    db = run_dir / "run.sqlite"
    if not db.exists():
        raise ConfigError(f"{run_dir}: no run.sqlite; is this a run directory?")
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        entries, size = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(value)), 0) FROM answers").fetchone()
    finally:
        conn.close()
    state = read_json(run_dir / "state.json") or {}
    cache = state.get("cache", {})
    files = sum(p.stat().st_size for p in run_dir.glob("run.sqlite*"))
    return {"answers": entries, "answer_bytes": size, "database_bytes": files,
            "hits_last_run": cache.get("hits", 0), "misses_last_run": cache.get("misses", 0)}
