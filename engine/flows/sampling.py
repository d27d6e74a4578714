"""Which skills, agents and instruction types a seed gets: deterministic and balanced.

Each skill's agents and taxonomy are shuffled once (an RNG seeded by the skill's name) into a
cycle, and a seed takes a window of that cycle picked by its choice index: a number drawn from
its id (`seed_id` rule), so the choice does not depend on where the seed is in the stream and a
shard of the input chooses as the whole run would; over a run every window is equally likely
(benchmarks/choice_balance.py measures the spread). Runs started before that rule keep the
one their manifest records (`seed_position`: seed number i takes the i-th window, an even
share by construction)."""

from __future__ import annotations

import hashlib
import random
from typing import Sequence, TypeVar

T = TypeVar("T")


def shuffled(items: Sequence[T], key: str) -> list[T]:
    order = list(items)
    random.Random(key).shuffle(order)
    return order


CHOICE_RULES = ("seed_id", "seed_position")  # the first is every new run's


def choice_index(rule: str, seed_id: str, position: int) -> int:
    """The number that picks a seed's windows under `rule`."""
    if rule == "seed_position":
        return position
    return int.from_bytes(hashlib.blake2b(f"choices/{seed_id}".encode(), digest_size=8).digest())


def window(cycle: Sequence[T], index: int, size: int) -> list[T]:
    """The `index`-th window of `size` consecutive entries of an endless repetition of cycle."""
    size = min(size, len(cycle))
    start = index * size
    return [cycle[(start + i) % len(cycle)] for i in range(size)]


def item_rng(item_id: str, purpose: str) -> random.Random:
    """An RNG for one choice about one item: same item, same choice."""
    return random.Random(f"{item_id}/{purpose}")


def weighted_sample(items: Sequence[T], weights: Sequence[float], index: int,
                    size: int) -> list[T]:
    """`size` distinct items, each drawn with probability in proportion to its weight (one key
    u^(1/w) per item, the largest win: Efraimidis and Spirakis), from an RNG seeded by the
    choice index: the same seed draws the same items. A weight of 0 is never drawn."""
    rng = random.Random(f"weighted/{index}")
    keyed = sorted(((rng.random() ** (1 / w), i) for i, w in enumerate(weights) if w > 0),
                   reverse=True)
    return [items[i] for _, i in sorted(keyed[:size], key=lambda kv: kv[1])]
