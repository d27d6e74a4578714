"""Which skills, agents and instruction types a seed gets: deterministic and balanced.

Each skill's agents and taxonomy are shuffled once (an RNG seeded by the skill's name) into a
cycle, and seed number i takes the next window of that cycle. So a re-run makes the same
choices, and over a run every agent and type is used within one of an even share: the quota
is kept by construction, not by counters that would depend on completion order."""

from __future__ import annotations

import random
from typing import Sequence, TypeVar

T = TypeVar("T")


def shuffled(items: Sequence[T], key: str) -> list[T]:
    order = list(items)
    random.Random(key).shuffle(order)
    return order


def window(cycle: Sequence[T], index: int, size: int) -> list[T]:
    """The `index`-th window of `size` consecutive entries of an endless repetition of cycle."""
    size = min(size, len(cycle))
    start = index * size
    return [cycle[(start + i) % len(cycle)] for i in range(size)]


def item_rng(item_id: str, purpose: str) -> random.Random:
    """An RNG for one choice about one item: same item, same choice."""
    return random.Random(f"{item_id}/{purpose}")
