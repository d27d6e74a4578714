"""The seeds of one shard, read from the file the cluster's driver wrote for it
(RUN/shards/<k>/seeds.jsonl): each seed as it came from the input the one time it was read,
its id included, so the shard's records are those a single pass over the input makes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import orjson

from gristmill.seeds.report import Seed


def seed_line(seed: Seed, position: int) -> bytes:
    """A seed and its place in the whole input (a cluster's target counts in that order)."""
    return orjson.dumps([seed.id, seed.text, seed.source, seed.kind, seed.language,
                         seed.title, position, seed.extra]) + b"\n"


def positions(path: Path) -> Iterator[tuple[str, int]]:
    """(seed id, place in the whole input) of every seed in a shard's file."""
    with path.open("rb") as lines:
        for line in lines:
            fields = orjson.loads(line)
            yield fields[0], fields[6]


class PresplitReport:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.seeds = 0

    def summary(self) -> dict[str, Any]:
        return {"seeds": self.seeds, "presplit": str(self.path)}


class PresplitSource:
    """Iterate it for the shard's seeds, in the input's order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.report = PresplitReport(path)

    def __iter__(self) -> Iterator[Seed]:
        self.report.seeds = 0
        with self.path.open("rb") as lines:
            for line in lines:
                self.report.seeds += 1
                fields = orjson.loads(line)
                yield Seed(*fields[:6], extra=fields[7] if len(fields) > 7 else None)
