"""`DigestSet` (engine/dataset/digest_set.py), the exact-duplicate filter of seeds and of written ids:
membership, its size, a full bucket's overflow, and growth with and without mremap."""

from __future__ import annotations

import mmap
import random

from gristmill.dataset import digest_set
from gristmill.dataset.digest_set import DigestSet, digest64


def test_digest_set_grows_and_remembers():
    digests = DigestSet()
    assert all(digests.add(f"seed {i}") for i in range(5000))
    assert not any(digests.add(f"seed {i}") for i in range(5000))
    assert len(digests) == 5000
    assert all(digests.add_digest(v) is False and v in digests for v in (
        digest64(f"seed {i}") for i in range(5000)))
    assert digest64("never added") not in digests


def test_an_unused_digest_set_holds_no_table():
    digests = DigestSet()  # like a fresh run's set of earlier sessions' ids
    assert 12345 not in digests and len(digests) == 0
    assert digests.nbytes == 0
    digests.add_digest(12345)
    assert 12345 in digests and digests.nbytes >= 4096 * 8 * 8


def test_digest_set_stays_compact_and_exact():
    rng = random.Random(7)
    values = [rng.getrandbits(64) for _ in range(200_000)]
    digests = DigestSet()
    assert all(digests.add_digest(v) for v in values)
    assert not any(digests.add_digest(v) for v in values[::7])
    assert len(digests) == len(values) and all(v in digests for v in values)
    assert not any(rng.getrandbits(64) in digests for _ in range(10_000))
    assert digests.nbytes <= 11 * len(values)  # a `set` of the same ints: ~60 B each


def test_a_full_bucket_sets_newcomers_aside_until_every_bucket_grows():
    digests = DigestSet()
    one_bucket = [(7 << 52) | i for i in range(1, 200)]  # same top bits: one bucket
    assert all(digests.add_digest(v) for v in one_bucket[:8])
    capacity = digests._capacity
    assert all(digests.add_digest(v) for v in one_bucket[8:60])
    assert digests._capacity == capacity and len(digests._overflow) == 52
    assert all(v in digests for v in one_bucket[:60]) and one_bucket[60] not in digests
    assert not any(digests.add_digest(v) for v in one_bucket[:60])  # set aside, still known
    assert all(digests.add_digest(v) for v in one_bucket[60:])  # past 64 aside: it grows
    assert digests._capacity > capacity
    assert len(digests) == len(one_bucket) and all(v in digests for v in one_bucket)
    # each growth took the bucket's newcomers back in, as far as the bucket now holds them
    assert digests._counts[7] == digests._capacity
    assert len(digests._overflow) == len(one_bucket) - digests._capacity


class _NoRemap(mmap.mmap):
    def resize(self, size):
        raise SystemError("mmap: resizing not available--no mremap()")


def test_the_table_grows_by_copy_where_there_is_no_mremap(monkeypatch):
    monkeypatch.setattr(digest_set, "_new_map",
                        lambda size: _NoRemap(-1, size, flags=mmap.MAP_PRIVATE))
    rng = random.Random(3)
    values = [rng.getrandbits(64) for _ in range(60_000)]
    digests = DigestSet()
    assert all(digests.add_digest(v) for v in values)
    assert digests._capacity > 8  # it grew, by copies
    assert all(v in digests for v in values) and len(digests) == len(values)
