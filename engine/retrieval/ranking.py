"""The order of search results and the draw of distractors: plain functions over arrays,
deterministic to the last tie."""

from __future__ import annotations

import hashlib

import numpy as np


def ranked(scores: np.ndarray, n: int) -> np.ndarray:
    """Rows of the `n` highest scores, best first. Equal scores keep row order, and rows are
    in seed-id order, so a tie goes to the smaller seed id (argpartition alone would cut a
    group of equal scores anywhere)."""
    n = min(n, len(scores))
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    threshold = np.partition(scores, len(scores) - n)[len(scores) - n]
    above = np.flatnonzero(scores > threshold)
    tied = np.flatnonzero(scores == threshold)[: n - len(above)]
    rows = np.concatenate([above, tied])
    return rows[np.lexsort((rows, -scores[rows]))]


def drawn(item_id: str, pool: list[str], n: int) -> list[int]:
    """Indexes into `pool` of `n` members chosen by a hash of the item's id and each
    member's: the same item draws the same ones, another item others, in the order of
    their hashes (not by rank, so the best distractor is not always first)."""
    def key(index: int) -> bytes:
        return hashlib.blake2b(f"{item_id}/{pool[index]}".encode(), digest_size=8).digest()
    return sorted(range(len(pool)), key=key)[:n]
