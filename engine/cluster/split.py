"""The input read once, by the driver: each seed goes to its shard's file,
RUN/shards/<k>/seeds.jsonl (seeds/presplit.py reads it). Without this every shard would read
the whole input to keep its part: shards × input. `--limit N` takes the first N seeds of the
input, as one process would. Written again for a fresh start or another limit, kept for
every other resume (RUN/shards/split.json marks it complete)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import itertools

import orjson

from gristmill.config.pipeline import PipelineConfig
from gristmill.dataset.files import read_json, write_atomic
from gristmill.runs.assembly import seed_source
from gristmill.seeds.presplit import seed_line
from gristmill.seeds.shards import shard_of

SPLIT_FILE = "split.json"
SHARD_BUFFER = 256 * 1024  # bytes held per shard before they are appended to its file
ALL_BUFFERS = 32 * 1024 * 1024  # and in all, however many shards


def seeds_file(shard_dir: Path) -> Path:
    return shard_dir / "seeds.jsonl"


def split_input(config: PipelineConfig, shard_dirs: list[Path], fresh: bool,
                limit: int | None = None) -> dict[str, Any]:
    """Each shard's seeds in its file; what was read (the seed report) and how many each got."""
    marker = shard_dirs[0].parent / SPLIT_FILE
    done = read_json(marker)
    if done is not None and not fresh and done.get("shards") == len(shard_dirs) \
            and done.get("limit") == (limit or None):
        return done
    source = seed_source(config)  # chunk sizes in the run's own tokens
    shards = len(shard_dirs)
    held = [bytearray() for _ in range(shards)]
    counts = [0] * shards
    opened: set[int] = set()
    total = 0

    def write(k: int) -> None:
        shard_dirs[k].mkdir(parents=True, exist_ok=True)
        with seeds_file(shard_dirs[k]).open("ab" if k in opened else "wb") as out:
            out.write(held[k])
        opened.add(k)
        held[k].clear()

    for position, seed in enumerate(itertools.islice(source, limit or None)):
        k = shard_of(seed.text, shards)
        line = seed_line(seed, position)
        held[k] += line
        counts[k] += 1
        total += len(line)
        if len(held[k]) >= SHARD_BUFFER:
            total -= len(held[k])
            write(k)
        elif total >= ALL_BUFFERS:
            for j in range(shards):
                if held[j]:
                    write(j)
            total = 0
    for k in range(shards):
        write(k)  # every shard gets a file, an empty one too
    done = {"shards": shards, "limit": limit or None, "seeds": sum(counts),
            "per_shard": counts, "input": source.report.summary()}
    write_atomic(marker, orjson.dumps(done))
    return done
