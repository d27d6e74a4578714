"""An asyncio loop on a virtual clock, for engine-core tests that must not sleep.

`loop.time()` is a number that only moves when every task is blocked: then it jumps to the
next scheduled timer at once (the pattern of aiostream's TimeTrackingTestLoop). So
`asyncio.sleep`, `asyncio.timeout`, `loop.call_later` and everything built on the loop's
clock (the permit pool's windows, the batcher's window) run in no real time and at exact,
repeatable virtual times.

I/O is still polled for real, without waiting: a ready socket or a thread's wake-up is
handled before time moves. A test that waits on a thread while a timer is pending sees the
timer fire first (time jumps while the thread works), so threads and virtual time do not mix.

uvloop cannot be given a clock (its timers run on libuv's), so tests that assert virtual
times run on this loop only; the others run on it and on uvloop."""

from __future__ import annotations

import asyncio
import math
import selectors
import time
from asyncio.log import logger
from typing import Callable


class _SkippingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """Polls without blocking; when a timer is what the loop would wait for, and no I/O is
    ready, skips the wait (the loop's clock jumps instead)."""

    def __init__(self, skip: Callable[[], None]) -> None:
        super().__init__()
        self._skip = skip
        self.blocked_s = 0.0  # real time spent blocked (no timer pending), for slow-callback reports

    def select(self, timeout: float | None = None) -> list:
        if timeout is None:  # nothing scheduled: only I/O (a thread, a socket) can wake the loop
            started = time.perf_counter()
            try:
                return super().select(None)
            finally:
                self.blocked_s += time.perf_counter() - started
        events = super().select(0)
        if not events and timeout > 0:
            self._skip()
        return events


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector loop whose `time()` is virtual, starting at 0.0."""

    def __init__(self) -> None:
        self._now = 0.0
        self.jumps = 0  # how many times the clock skipped ahead, for tests that care
        super().__init__(_SkippingSelector(self._skip_to_next_timer))

    def time(self) -> float:
        return self._now

    def call_later(self, delay: float, callback: Callable[..., object], *args: object,
                   context: object = None) -> asyncio.TimerHandle:
        # A real clock always moves on between two readings, so a positive delay too small
        # to change the float `now + delay` still ends in the future there. Here it must too:
        # code that re-arms a timer for "what is left" of a span (which float rounding can
        # leave a hair above zero) would otherwise fire it forever at the same instant.
        when = self._now + delay
        if delay > 0 and when <= self._now:
            when = math.nextafter(self._now, math.inf)
        return self.call_at(when, callback, *args, context=context)  # type: ignore[arg-type]

    def _skip_to_next_timer(self) -> None:
        # `_run_once` has just dropped cancelled timers from the head of the heap, so the head
        # is the next timer due; jumping exactly to it keeps the times exact.
        if self._scheduled:
            self._now = max(self._now, self._scheduled[0]._when)
            self.jumps += 1

    def _run_once(self) -> None:
        # On a virtual clock a callback takes no time, so asyncio's debug report of slow
        # callbacks ("Executing ... took") never fires; measure one iteration in real time.
        if not self.get_debug():
            return super()._run_once()
        selector: _SkippingSelector = self._selector  # type: ignore[assignment]
        blocked, started = selector.blocked_s, time.perf_counter()
        super()._run_once()
        busy = time.perf_counter() - started - (selector.blocked_s - blocked)
        if busy >= self.slow_callback_duration:
            logger.warning("Executing callbacks took %.3f seconds (real time, at virtual "
                           "time %.3f)", busy, self._now)
        return None


def new_virtual_loop() -> VirtualClockLoop:
    return VirtualClockLoop()
