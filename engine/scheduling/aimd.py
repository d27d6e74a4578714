"""Additive-increase / multiplicative-decrease of a backend's in-flight cap.

On an overload signal (429, 503) the cap is cut by `decrease`; on each success it grows by
1/cap (about +1 per cap's worth of successes) back towards the configured ceiling. Like TCP,
the cap is cut at most once per round trip: a signal from a request granted before the last
cut was caused by the old, larger cap and is ignored."""

from __future__ import annotations


class AIMD:
    def __init__(self, ceiling: int, floor: int = 1, decrease: float = 0.5) -> None:
        self.ceiling = ceiling
        self.floor = floor
        self.decrease = decrease
        self.value = float(ceiling)
        self.last_cut_at = float("-inf")

    @property
    def cap(self) -> int:
        return max(self.floor, int(self.value))

    def on_success(self) -> int:
        if self.value < self.ceiling:
            self.value = min(self.ceiling, self.value + 1.0 / self.value)
        return self.cap

    def on_overload(self, granted_at: float, now: float) -> int:
        if granted_at >= self.last_cut_at:
            self.value = max(float(self.floor), self.value * self.decrease)
            self.last_cut_at = now
        return self.cap
