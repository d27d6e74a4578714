"""`--target-records N` on a cluster: the dataset a single process would keep, the first N
records in the input's seed order (near-duplicates removed in that order), chosen by the
driver over every shard's records.

The driver cannot stop a shard at the right seed (the order runs across shards), so it goes
in rounds: the first L seeds of the input are split and run, the records so far are replayed
through the same `Target` a single process uses, seed by seed in input order; short of N, the
next round takes more seeds (from the records each seed gave so far, with a margin) and only
the shards that got new seeds run again, their earlier answers from their caches. Records of
an overshoot stay in output.jsonl, as in one process; dataset.jsonl gets the N."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from gristmill.cluster.merge import shard_lines
from gristmill.cluster.split import seeds_file
from gristmill.config.pipeline import PipelineConfig
from gristmill.runs.target import Target, make_target
from gristmill.seeds.presplit import positions

MARGIN = 1.1  # seeds asked for beyond the estimate: a round short by a few costs a round


def first_limit(n: int) -> int:
    """Seeds of the first round: most flows make at least one record per seed."""
    return max(1, math.ceil(n / 2))


def next_limit(n: int, limit: int, chosen: int) -> int:
    """Seeds of the next round, from the records per seed the last one kept."""
    if chosen == 0:
        return limit * 8
    wanted = math.ceil(n * limit / chosen * MARGIN) + 1
    return min(max(wanted, limit + 1), limit * 8)


def choose(config: PipelineConfig, shard_dirs: list[Path], n: int) -> Target:
    """The Target of a single process over the shards' records, seeds in input order (the
    driver merges the shards' files once, at the end, for `Target.finish`)."""
    target = make_target(n, config.dedup)
    assert target is not None
    order = sorted((pos, seed) for d in shard_dirs if seeds_file(d).exists()
                   for seed, pos in positions(seeds_file(d)))
    records: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for shard_dir in shard_dirs:
        for line in shard_lines(shard_dir / "output.jsonl"):
            record = orjson.loads(line)
            records[record["seed_id"]].append(record)
    for position, seed in order:
        target.admitted(seed, position)
        for record in records.pop(seed, ()):
            target.record(seed, record)
        if target.seed_done(seed):
            break
    return target
