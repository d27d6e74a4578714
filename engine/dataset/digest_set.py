"""A compact exact set of 64-bit digests: seed contents (exact-duplicate seeds) and record
ids (what earlier sessions of a run wrote)."""

from __future__ import annotations

import hashlib
import mmap
import sys
from array import array
from bisect import bisect_left

_BUCKET_BITS = 12  # 4,096 sorted buckets, picked by the digest's top bits
_BUCKETS = 1 << _BUCKET_BITS
_SHIFT = 64 - _BUCKET_BITS
_FIRST_CAPACITY = 8  # entries per bucket: a 256 KiB table at the first insertion
_INT_BYTES = 32  # an int of the overflow set, with its slot


def _new_map(size: int) -> mmap.mmap:
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)  # private: a shared one cannot grow


def _enlarged(table: mmap.mmap, size: int) -> mmap.mmap:
    """`table` made `size` bytes long: in place (mremap), or copied where there is none."""
    try:
        table.resize(size)
        return table
    except SystemError:  # "no mremap()": not Linux
        bigger = _new_map(size)
        bigger.write(table)
        table.close()
        return bigger


def digest64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


class DigestSet:
    """A compact exact set of 64-bit digests (uniform ones: their top bits pick the bucket).

    A Python `set` of digests costs an object per digest plus the table. Here the entries
    live in one anonymous memory map: 4,096 sorted buckets of equal capacity, searched by
    bisection, an insertion moving half a bucket. The newcomers of a full bucket wait in a
    small `set`; when it holds 1/256 of the entries every bucket grows by 1/8, in place: the
    map is enlarged (mremap moves pages, it copies nothing) and the buckets are moved up from
    the last one, so no second table ever exists. The buckets stay mostly full, so an entry
    costs little more than its 8 bytes.

    Off the heap on purpose: as 4,096 `array`s, every array was reallocated many times on its
    way to a million entries and the heap kept the holes, so the RSS grew well beyond the
    arrays' own size; the map grows it by about what it holds. Adding and looking up cost a
    little more than in a `set`, which a seed's requests do not notice. The figures:
    `python -m benchmarks.digest_set` and benchmarks/RESULTS.md.

    The table is made on the first insertion: a run's sets of earlier sessions' ids stay
    empty in a fresh run and hold nothing. A false "duplicate" needs a 64-bit collision:
    about n^2 / 2^65, i.e. 3e-8 at a million entries and 3% at a billion."""

    def __init__(self) -> None:
        self._map: mmap.mmap | None = None  # made on the first insertion
        self._table = memoryview(b"").cast("Q")
        self._capacity = 0
        self._counts = array("I")
        self._overflow: set[int] = set()  # newcomers of full buckets
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        if self._map is None:
            return 0
        return (len(self._map) + sys.getsizeof(self._counts) + sys.getsizeof(self._overflow)
                + _INT_BYTES * len(self._overflow))

    def add(self, text: str) -> bool:
        """Record `text`; False if it was seen before."""
        return self.add_digest(digest64(text))

    def __contains__(self, value: int) -> bool:
        if self._size == 0:
            return False
        full, i, end = self._find(value)
        return i < 0 or (full and value in self._overflow)

    def add_digest(self, value: int) -> bool:
        """Record the digest `value`; False if it was there."""
        if self._map is None:
            self._make_table()
        full, i, end = self._find(value)
        if i < 0 or (full and value in self._overflow):
            return False
        self._size += 1
        if not full:
            self._put(value, i, end)
        else:
            self._overflow.add(value)
            if len(self._overflow) > 64 + (self._size >> 8):
                self._grow()
        return True

    def _find(self, value: int) -> tuple[bool, int, int]:
        """Whether the bucket of `value` is full, and where `value` goes in the table (-1:
        it is there) and the end of its bucket."""
        bucket = value >> _SHIFT
        count = self._counts[bucket]
        start = bucket * self._capacity
        table, end = self._table, start + count
        i = bisect_left(table, value, start, end)
        if i < end and table[i] == value:
            return count == self._capacity, -1, end
        return count == self._capacity, i, end

    def _put(self, value: int, i: int, end: int) -> None:
        table = self._table
        table[i + 1:end + 1] = table[i:end]
        table[i] = value
        self._counts[value >> _SHIFT] += 1

    def _make_table(self) -> None:
        self._capacity = _FIRST_CAPACITY
        self._counts = array("I", bytes(4 * _BUCKETS))
        self._map = _new_map(8 * _BUCKETS * _FIRST_CAPACITY)
        self._table = memoryview(self._map).cast("Q")

    def _grow(self) -> None:
        old = self._capacity
        new = old + max(4, old >> 3)
        assert self._map is not None
        self._table.release()  # a map with a view on it cannot be resized
        self._map = _enlarged(self._map, 8 * _BUCKETS * new)
        table = self._table = memoryview(self._map).cast("Q")
        counts = self._counts
        for bucket in range(_BUCKETS - 1, 0, -1):  # from the top: nothing unmoved is overwritten
            count = counts[bucket]
            table[bucket * new:bucket * new + count] = table[bucket * old:bucket * old + count]
        self._capacity = new
        waiting, self._overflow = self._overflow, set()
        for value in waiting:  # each in its bucket, unless that is full again
            full, i, end = self._find(value)
            if full:
                self._overflow.add(value)
            else:
                self._put(value, i, end)
