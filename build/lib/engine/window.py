"""Sliding-window accounting for request and token rate limits.

A limit of N per window W is kept exactly: a new grant of `amount` fits when the amounts
granted in the last W seconds plus `amount` stay within N. Granted entries can be corrected
later (a token estimate replaced by the server's actual usage)."""

from __future__ import annotations

from collections import deque


class Entry:
    __slots__ = ("at", "amount")

    def __init__(self, at: float, amount: float) -> None:
        self.at = at
        self.amount = amount


class SlidingWindow:
    def __init__(self, limit: float | None, window_s: float, margin_s: float = 0.0) -> None:
        self.limit = limit
        # The margin keeps an entry a little longer than the window, because the server
        # counts arrivals, which happen shortly after our grants and not all equally late.
        self.span = window_s + margin_s
        self._entries: deque[Entry] = deque()
        self.total = 0.0

    def _expire(self, now: float) -> None:
        horizon = now - self.span
        entries = self._entries
        while entries and entries[0].at <= horizon:
            self.total -= entries.popleft().amount
        if not entries:
            self.total = 0.0  # no float drift from long runs of +/- corrections

    def wait_time(self, amount: float, now: float) -> float:
        """Seconds until `amount` fits (0.0 when it fits now)."""
        if self.limit is None:
            return 0.0
        self._expire(now)
        if self.total + amount <= self.limit or not self._entries:
            return 0.0  # an empty window admits even an oversize request
        excess = self.total + amount - self.limit
        freed = 0.0
        for entry in self._entries:
            freed += entry.amount
            if freed >= excess:
                return entry.at + self.span - now
        return self._entries[-1].at + self.span - now

    def add(self, amount: float, now: float) -> Entry | None:
        if self.limit is None:
            return None
        entry = Entry(now, amount)
        self._entries.append(entry)
        self.total += amount
        return entry

    def correct(self, entry: Entry | None, amount: float, now: float) -> None:
        """Replace an estimate with the actual amount, if the entry is still in the window."""
        if entry is None or entry.at <= now - self.span:
            return
        self.total += amount - entry.amount
        entry.amount = amount

    def __len__(self) -> int:
        return len(self._entries)
