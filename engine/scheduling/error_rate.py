"""The error-rate guard: a backend whose requests mostly fail (after their retries) is in an
outage or misconfigured, and a run of millions should stop rather than reject every seed.

A plain counter over the last `window` ended requests (a ring of flags: O(1) per request);
nothing is judged before a full window, so early bad luck on a few items does not stop a
run. Validator and judge rejects never reach it: they are the model's answers, not errors."""

from __future__ import annotations


class ErrorRateGuard:
    def __init__(self, rate: float, window: int) -> None:
        self.rate, self.window = rate, window
        self._ended = bytearray(window)  # 1: that request ended in an error
        self._next = 0
        self._seen = 0
        self.failed = 0  # errors among the last `window`

    def record(self, failed: bool) -> bool:
        """Count a request that ended; True once more than `rate` of the window failed."""
        i = self._next
        self.failed += failed - self._ended[i]
        self._ended[i] = failed
        self._next = i + 1 if i + 1 < self.window else 0
        self._seen += 1
        return self._seen >= self.window and self.failed > self.rate * self.window
