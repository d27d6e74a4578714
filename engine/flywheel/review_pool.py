"""The review page's records, arranged for sampling without reading their texts: in a seeded
random order, per (skill, type) stratum, and counted per combination of the fields filters use,
so a request costs time in the number of labels, not of records."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

Stratum = tuple[str, str]  # (skill, type)
Combo = tuple[str, str, "bool | None", bool]  # (skill, type, judge verdict, split)


@dataclass(slots=True)
class RecordMeta:
    id: str
    offset: int
    rank: int  # a seeded hash of the id: the random order
    skill: str  # "" when the flow has none
    type: str
    judge: bool | None  # the judge's overall verdict; None: not judged
    split: bool  # some criteria passed and some failed
    in_dataset: bool | None = None  # None: no dataset.jsonl

    @property
    def combo(self) -> Combo:
        return (self.skill, self.type, self.judge, self.split)


def rank_of(record_id: str, seed: int) -> int:
    digest = hashlib.blake2b(f"{seed}:{record_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _rank(meta: RecordMeta) -> int:
    return meta.rank


class RecordPool:
    def __init__(self, metas: Iterable[RecordMeta] = ()) -> None:
        self.metas: list[RecordMeta] = []  # in rank order
        self.by_id: dict[str, RecordMeta] = {}
        self.strata: dict[Stratum, list[RecordMeta]] = {}  # each in rank order
        self.combos: Counter[Combo] = Counter()
        self.add(metas)

    def add(self, metas: Iterable[RecordMeta]) -> None:
        """Take in new records (ids already present are ignored)."""
        touched = set()
        for meta in metas:
            if meta.id in self.by_id:
                continue
            self.by_id[meta.id] = meta
            self.metas.append(meta)
            self.strata.setdefault((meta.skill, meta.type), []).append(meta)
            self.combos[meta.combo] += 1
            touched.add((meta.skill, meta.type))
        if touched:  # sorted runs: timsort merges them in about linear time
            self.metas.sort(key=_rank)
            for stratum in touched:
                self.strata[stratum].sort(key=_rank)

    def __len__(self) -> int:
        return len(self.metas)
