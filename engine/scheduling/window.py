"""Sliding-window accounting for request and token rate limits.

A limit of N per window W is kept exactly: a new grant of `amount` fits when the amounts
counted in the last W seconds plus `amount` stay within N. The server counts arrivals, so an
entry's time is when its request was sent, not when it was granted: a grant is *pending*
(it counts, and cannot expire) until `stamp` gives it its send time. A starved event loop may
send a grant late; counted from the grant, that late burst would share the server's window
with the next one. Entries can be corrected later (a token estimate replaced by the server's
actual usage)."""

from __future__ import annotations

from collections import deque

INF = float("inf")


class Entry:
    __slots__ = ("at", "amount")

    def __init__(self, at: float | None, amount: float) -> None:
        self.at = at  # the send time; None while pending
        self.amount = amount


class SlidingWindow:
    def __init__(self, limit: float | None, window_s: float, margin_s: float = 0.0) -> None:
        self.limit = limit
        # The margin keeps an entry a little longer than the window, because the server
        # counts arrivals, which happen shortly after our sends and not all equally late.
        self.span = window_s + margin_s
        self._entries: deque[Entry] = deque()  # sent, in send order
        self.pending = 0.0  # granted, not yet sent
        self._pending_count = 0
        self.total = 0.0  # sent entries in the window plus pending

    def _expire(self, now: float) -> None:
        horizon = now - self.span
        entries = self._entries
        while entries and entries[0].at <= horizon:  # type: ignore[operator]
            self.total -= entries.popleft().amount
        if not entries:
            self.total = self.pending  # no float drift from long runs of +/- corrections

    def wait_time(self, amount: float, now: float) -> float:
        """Seconds until `amount` fits (0.0 when it fits now; inf when it waits for a
        pending grant to be sent, because only then is its expiry known)."""
        if self.limit is None:
            return 0.0
        self._expire(now)
        if self.total + amount <= self.limit or (not self._entries and not self._pending_count):
            return 0.0  # an empty window admits even an oversize request
        excess = self.total + amount - self.limit
        freed = 0.0
        for entry in self._entries:
            freed += entry.amount
            if freed >= excess:
                return entry.at + self.span - now  # type: ignore[operator]
        if self._pending_count:
            return INF
        return self._entries[-1].at + self.span - now  # type: ignore[operator]

    def add(self, amount: float) -> Entry | None:
        """A pending entry for a grant (None when there is no limit)."""
        if self.limit is None:
            return None
        self.pending += amount
        self._pending_count += 1
        self.total += amount
        return Entry(None, amount)

    def stamp(self, entry: Entry | None, now: float) -> None:
        """The entry's request was sent at `now`: from then on it expires."""
        if entry is None or entry.at is not None:
            return
        entry.at = now
        self._pending_count -= 1
        self.pending = self.pending - entry.amount if self._pending_count else 0.0
        self._entries.append(entry)

    def correct(self, entry: Entry | None, amount: float, now: float) -> None:
        """Replace an estimate with the actual amount, if the entry is still counted."""
        if entry is None or (entry.at is not None and entry.at <= now - self.span):
            return
        if entry.at is None:
            self.pending += amount - entry.amount
        self.total += amount - entry.amount
        entry.amount = amount

    def __len__(self) -> int:
        return len(self._entries) + self._pending_count
