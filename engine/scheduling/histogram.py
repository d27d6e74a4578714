"""A fixed-bucket histogram of seconds, cheap enough to feed on every request: one `bisect`
and two additions. The run's /metrics reads it as a Prometheus histogram at scrape time."""

from __future__ import annotations

from bisect import bisect_left

# Seconds: from a local mock's milliseconds to a long generation on a busy server.
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
           300.0)


class Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = SECONDS) -> None:
        self.bounds = bounds  # upper bounds, inclusive (Prometheus' `le`), ascending
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """(`le`, observations at or below it) per bound, then ("+Inf", all): the buckets
        as Prometheus exposes them."""
        out, total = [], 0
        for bound, n in zip((*map(str, self.bounds), "+Inf"), self.counts):
            total += n
            out.append((bound, total))
        return out
