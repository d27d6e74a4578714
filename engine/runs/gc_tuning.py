"""The garbage collector tuned for the length of a run.

A run keeps hundreds of requests in flight, each a small web of tasks, futures and aiohttp
objects, so Python's young-generation threshold (700 net allocations) triggers a collection
every few requests, and each one walks everything still alive: in the throughput benchmark
a sizeable share of the client's CPU (`benchmarks/RESULTS.md`, "the collector tuned"). During
a run the young
threshold is raised and what start-up built (modules, config, compiled templates) is frozen
out of the collector's sight (unless the caller froze objects of its own already); both are
restored when the last concurrent run ends."""

from __future__ import annotations

import gc
import threading
from contextlib import contextmanager
from typing import Iterator

# Chosen from a side-by-side sweep (benchmarks/RESULTS.md): thresholds from 2,000 to 20,000
# all cut the collector's time by an order of magnitude; a far larger young generation was
# slower again.
YOUNG_THRESHOLD = 10_000

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, int, int] | None = None
_froze = False  # whether the outermost run froze (a caller's own freeze is left alone)


@contextmanager
def tuned_gc(young: int = YOUNG_THRESHOLD) -> Iterator[None]:
    global _depth, _saved, _froze
    with _lock:
        if _depth == 0:
            _saved = gc.get_threshold()
            _froze = gc.get_freeze_count() == 0
            if _froze:
                gc.freeze()
            gc.set_threshold(max(young, _saved[0]), *_saved[1:])
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                if _froze:
                    gc.unfreeze()
