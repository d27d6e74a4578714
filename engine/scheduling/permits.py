"""Backend permits: who may send the next request, and when.

Every request to a backend first takes a permit. A permit is granted when the backend has an
in-flight slot free under its cap (adjustable at run time), its request and token windows have
room, and no server-imposed pause (Retry-After, an exhausted x-ratelimit budget) is in force.
A grant counts against the windows from the moment its request is sent (`sent`, called by
the backend once the request is on the wire; at the latest at release), not from the grant:
the server counts arrivals, and a starved loop can send a grant late.
Waiters are served by priority: deeper pipeline stages first, so started items finish and free
memory before new seeds enter; FIFO within a priority.

The decision (`grant_ready`) is plain synchronous code with no event loop; it runs when a
permit is released, when the cap grows, or when a single timer fires at the moment a rate
window reopens, or when a send makes a window's reopening time known. Waiters sleep on
futures; nobody polls.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Callable

from gristmill.protocol import RateHints
from gristmill.scheduling.window import Entry, SlidingWindow


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


class Permit:
    __slots__ = ("tokens", "request_entry", "token_entry", "granted_at", "released")

    def __init__(self, tokens: int, request_entry: Entry | None, token_entry: Entry | None,
                 granted_at: float) -> None:
        self.tokens = tokens
        self.request_entry = request_entry  # None: no window to count in
        self.token_entry = token_entry
        self.granted_at = granted_at
        self.released = False


class Waiter:
    __slots__ = ("key", "tokens", "future", "permit")

    def __init__(self, key: tuple[int, int], tokens: int, future: asyncio.Future | None) -> None:
        self.key = key
        self.tokens = tokens
        self.future = future
        self.permit: Permit | None = None

    def __lt__(self, other: "Waiter") -> bool:
        return self.key < other.key


class PermitPool:
    def __init__(self, cap: int, *, rpm: int | None = None, tpm: int | None = None,
                 window_s: float = 60.0, margin_s: float = 0.05,
                 clock: Callable[[], float] | None = None) -> None:
        if cap < 1:
            raise ValueError("cap must be >= 1")
        self._cap = cap
        self.in_flight = 0
        self.requests = SlidingWindow(rpm, window_s, margin_s)
        self.tokens = SlidingWindow(tpm, window_s, margin_s)
        self.paused_until = 0.0
        # The running loop's clock by default: the window timers are `call_later`s on that
        # loop, so the decisions must read the same clock (also a test loop's virtual one).
        self.clock = clock or _loop_time
        self._waiters: list[Waiter] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")

    # -- state --------------------------------------------------------------------------
    @property
    def cap(self) -> int:
        return self._cap

    @cap.setter
    def cap(self, value: int) -> None:
        grew = value > self._cap
        self._cap = max(1, int(value))
        if grew:
            self._dispatch()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def pause(self, seconds: float) -> None:
        """Grant nothing for `seconds` (the server said so)."""
        self.paused_until = max(self.paused_until, self.clock() + seconds)

    # -- the decision (synchronous, no event loop needed) -------------------------------
    def enqueue(self, priority: int, tokens: int, future: asyncio.Future | None = None) -> Waiter:
        waiter = Waiter((-priority, next(self._seq)), tokens, future)
        heapq.heappush(self._waiters, waiter)
        return waiter

    def delay_for(self, tokens: int, now: float) -> float:
        """0.0 if a request of `tokens` may start now, else seconds until it may (inf: cap)."""
        if self.in_flight >= self._cap:
            return float("inf")
        return max(self.paused_until - now, self.requests.wait_time(1, now),
                   self.tokens.wait_time(tokens, now), 0.0)

    def grant(self, tokens: int, now: float) -> Permit:
        self.in_flight += 1
        return Permit(tokens, self.requests.add(1), self.tokens.add(tokens), now)

    def stamp(self, permit: Permit, now: float) -> bool:
        """The permit's request was sent at `now`: its window entries start to expire.
        True if a window was waiting for this to know when it reopens."""
        if permit.request_entry is None and permit.token_entry is None:
            return False
        self.requests.stamp(permit.request_entry, now)
        self.tokens.stamp(permit.token_entry, now)
        return True

    def grant_ready(self, now: float) -> tuple[list[Waiter], float]:
        """Grant waiters in priority order while they fit. Returns those granted and the
        time at which the head waiter will fit (inf if it waits for a release)."""
        granted = []
        while self._waiters:
            head = self._waiters[0]
            delay = self.delay_for(head.tokens, now)
            if delay > 0.0:
                return granted, now + delay
            heapq.heappop(self._waiters)
            head.permit = self.grant(head.tokens, now)
            granted.append(head)
        return granted, float("inf")

    # -- the async edge -----------------------------------------------------------------
    async def acquire(self, priority: int = 0, tokens: int = 0) -> Permit:
        now = self.clock()
        if not self._waiters and self.delay_for(tokens, now) == 0.0:
            return self.grant(tokens, now)  # fast path: nobody ahead, room now
        waiter = self.enqueue(priority, tokens, asyncio.get_running_loop().create_future())
        self._dispatch()
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.permit is not None:  # granted, but the caller is gone: give it back
                self.release(waiter.permit)
            else:
                self._waiters.remove(waiter)
                heapq.heapify(self._waiters)
                self._dispatch()  # the head may have changed
            raise
        assert waiter.permit is not None
        return waiter.permit

    def sent(self, permit: Permit) -> None:
        """Called by the backend once the permit's request is on the wire."""
        if self.stamp(permit, self.clock()) and self._waiters and self._timer is None:
            self._dispatch()  # waiters blocked on pending grants can now get a timer

    def release(self, permit: Permit, actual_tokens: int | None = None) -> None:
        if permit.released:
            return
        permit.released = True
        self.in_flight -= 1
        now = self.clock()
        self.stamp(permit, now)  # never sent (or the backend did not say): count from now
        if actual_tokens is not None:
            self.tokens.correct(permit.token_entry, actual_tokens, now)
        self._dispatch()

    def _dispatch(self) -> None:
        if not self._waiters:
            return
        granted, wake_at = self.grant_ready(self.clock())
        for waiter in granted:
            if waiter.future is not None and not waiter.future.done():
                waiter.future.set_result(None)
        if wake_at != float("inf"):
            self._arm_timer(wake_at)

    def _arm_timer(self, at: float) -> None:
        if self._timer is not None and self._timer_at <= at:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = at
        self._timer = loop.call_later(max(0.0, at - self.clock()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        self._dispatch()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def learn_rate_hints(pool: PermitPool, hints: RateHints) -> None:
    """Learn the limits a server announces (unless configured) and respect an exhausted
    budget until it resets."""
    if hints.limit_requests and pool.requests.limit is None:
        pool.requests.limit = hints.limit_requests
    if hints.limit_tokens and pool.tokens.limit is None:
        pool.tokens.limit = hints.limit_tokens
    if hints.remaining_requests == 0 and hints.reset_requests_s:
        pool.pause(hints.reset_requests_s)
    if hints.remaining_tokens == 0 and hints.reset_tokens_s:
        pool.pause(hints.reset_tokens_s)
