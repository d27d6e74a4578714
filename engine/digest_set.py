"""A compact exact set of 64-bit digests: seed contents (exact-duplicate seeds) and record
ids (what earlier sessions of a run wrote)."""

from __future__ import annotations

import hashlib
import sys
from array import array
from bisect import bisect_left

_SHARDS = 256  # by the digest's top byte; a merge touches one shard: 1/256 of the set
_MERGE_AT = 32  # a shard's recent digests are merged past 32 + 1/32 of its sorted run


def digest64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


class DigestSet:
    """A compact exact set of 64-bit digests (uniform ones: they pick the shard).

    A Python `set` of digests costs ~70-90 bytes per entry (an object per digest plus the
    table): 70-90 MB per million seeds. Here each of 256 shards keeps a sorted `array('Q')`
    (8 bytes per digest, found by bisection) and a small `set` of recent digests, merged into
    the array once it passes 1/32 of it: ~10 bytes per entry in all, and a merge holds one
    shard twice, so memory grows smoothly, with no moment of old and new table. Merging costs
    ~32 element copies per digest, amortized. A false "duplicate" needs a 64-bit collision:
    about n^2 / 2^65, i.e. 3e-8 at a million entries and 3% at a billion."""

    def __init__(self) -> None:
        self._runs = [array("Q") for _ in range(_SHARDS)]
        self._recent: list[set[int]] = [set() for _ in range(_SHARDS)]
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        """Bytes held: the sorted arrays, and the recent sets with their int objects."""
        ints = sys.getsizeof(1 << 63)
        return (sum(map(sys.getsizeof, self._runs)) + sum(map(sys.getsizeof, self._recent))
                + ints * sum(map(len, self._recent)))

    def add(self, text: str) -> bool:
        """Record `text`; False if it was seen before."""
        return self.add_digest(digest64(text))

    def __contains__(self, value: int) -> bool:
        shard = value >> 56
        if value in self._recent[shard]:
            return True
        run = self._runs[shard]
        i = bisect_left(run, value)
        return i < len(run) and run[i] == value

    def add_digest(self, value: int) -> bool:
        """Record the digest `value`; False if it was there."""
        if value in self:
            return False
        shard = value >> 56
        recent = self._recent[shard]
        recent.add(value)
        self._size += 1
        if len(recent) > _MERGE_AT + (len(self._runs[shard]) >> 5):
            # Timsort finds the sorted run as it is and merges the sorted tail into it.
            self._runs[shard] = array("Q", sorted(self._runs[shard] + array("Q", recent)))
            recent.clear()
        return True
