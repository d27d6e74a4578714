"""Which shard of a run a seed belongs to: a function of its text alone, so every session
and every cluster size splits the input the same way, and exact duplicates share a shard
(each shard's seed dedup then still removes them all)."""

from __future__ import annotations

import hashlib
from typing import Iterable, Iterator, TypeVar

SHARD_RULE = "blake2b-64(seed text) mod shards"  # recorded in the manifest

S = TypeVar("S")


def shard_of(text: str, shards: int) -> int:
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest) % shards


def in_shard(seeds: Iterable[S], shard: int, shards: int) -> Iterator[S]:
    """The seeds of shard `shard` of `shards` (each with a `text`)."""
    return (seed for seed in seeds if shard_of(seed.text, shards) == shard)  # type: ignore[attr-defined]
