"""The shards' results as one run: RUN/output.jsonl and RUN/rejects.jsonl from the shards'
files, a run-level store with the shards' seeds (the review page, the report and `judge
align` read seeds there and keep labels there), and one summary adding up the shards'.

Each shard's lines go in id order and the shards in index order, so the same records give the
same bytes whatever the cluster did; per shard, its counts and the SHA-256 of what it added
are kept (summary.json and the manifest). A shard's torn last line (a worker killed while
writing) is left out: its record is written again when the shard resumes."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path
from typing import Any

import orjson

from gristmill.dataset.store import SCHEMA

SINKS = ("output", "rejects")


def shard_lines(path: Path) -> list[bytes]:
    """A shard's complete lines, in id order."""
    if not path.exists():
        return []
    lines = [line for line in path.read_bytes().splitlines(keepends=True)
             if line.endswith(b"\n")]
    return sorted(lines, key=lambda line: orjson.loads(line)["id"])


def merge_shards(run_dir: Path, shard_dirs: list[Path]) -> list[dict[str, Any]]:
    """Write the run's output and rejects from its shards'; per shard, counts and checksums."""
    shards: list[dict[str, Any]] = [{"shard": k} for k in range(len(shard_dirs))]
    for sink in SINKS:
        merging = run_dir / f"{sink}.jsonl.merging"
        with merging.open("wb") as out:
            for info, shard_dir in zip(shards, shard_dirs):
                digest = hashlib.sha256()
                lines = shard_lines(shard_dir / f"{sink}.jsonl")
                for line in lines:
                    out.write(line)
                    digest.update(line)
                info[sink] = {"lines": len(lines), "sha256": digest.hexdigest()}
        os.replace(merging, run_dir / f"{sink}.jsonl")
    return shards


def merge_seeds(run_dir: Path, shard_dirs: list[Path]) -> None:
    """RUN/run.sqlite with every shard's seeds (a resume adds those new since); the answers
    stay in the shards' stores, where their shards ask for them."""
    conn = sqlite3.connect(run_dir / "run.sqlite", isolation_level=None, timeout=30.0)
    try:
        conn.executescript(SCHEMA)
        for shard_dir in shard_dirs:
            if (shard_dir / "run.sqlite").exists():
                conn.execute("ATTACH DATABASE ? AS shard", (str(shard_dir / "run.sqlite"),))
                conn.execute("INSERT OR IGNORE INTO seeds SELECT * FROM shard.seeds")
                conn.execute("DETACH DATABASE shard")
    finally:
        conn.close()


def add_up(parts: list[Any]) -> Any:
    """The sum of the shards' summaries: numbers add, dicts add key by key, lists of named
    entries (stages) add by name; anything else is the first shard's."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    first = parts[0]
    if isinstance(first, bool) or not isinstance(first, (int, float, dict, list)):
        return first
    if isinstance(first, (int, float)):
        return sum(p for p in parts if isinstance(p, (int, float)))
    if isinstance(first, dict):
        keys = dict.fromkeys(k for p in parts if isinstance(p, dict) for k in p)
        return {k: add_up([p.get(k) for p in parts if isinstance(p, dict)]) for k in keys}
    if all(isinstance(e, dict) and "name" in e for p in parts for e in p):
        names = dict.fromkeys(e["name"] for p in parts for e in p)
        return [add_up([e for p in parts for e in p if e["name"] == name]) for name in names]
    return first


def merged_summary(summaries: list[dict[str, Any]], elapsed_s: float) -> dict[str, Any]:
    """One summary for the run; rates over the driver's wall time."""
    out = {"seeds": 0, "records": 0, "rejects": 0, "tokens": 0, "rejects_by_reason": {},
           "resumed_records": 0, **(add_up(summaries) or {})}  # no shard ran: zeros
    for key in ("run_dir", "status", "stop_reason", "detail", "exit_code", "dedup"):
        out.pop(key, None)  # the driver's own
    out["elapsed_s"] = round(elapsed_s, 3)
    out["records_per_s"] = round(out.get("records", 0) / elapsed_s, 3) if elapsed_s else 0.0
    out["tokens_per_s"] = round(out.get("tokens", 0) / elapsed_s, 1) if elapsed_s else 0.0
    return out
