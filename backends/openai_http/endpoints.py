"""Several endpoints behind one backend: which one takes the next request, and which are out.

A request goes to the endpoint in rotation with the most room under its in-flight cap
(fewest outstanding requests relative to the cap; with equal caps, least outstanding). An
endpoint that fails `eject_after` times in a row while another one is in rotation (connection refused or cut, connect timeout,
500/502/504) leaves the rotation for a backoff that doubles with each ejection in a row; a
probe (GET <base_url>/models, any answer below 500) brings it back. An endpoint whose server
the fleet is restarting is `down` until the fleet says it is healthy. 429/503 mean "slow
down", not "broken": they never eject.

The decisions (`choose`, `record_failure`, `record_success`, `due_for_probe`) are plain
functions; `EndpointSet` adds the one event that wakes requests waiting for any endpoint and
the probe loop, which sleeps until the next ejection ends, something is ejected or the run
ends."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import aiohttp

from gristmill.errors import ConnectionReset
from gristmill.scheduling.waiting import wait_for_event

log = logging.getLogger("gristmill.endpoints")


@dataclass(frozen=True, slots=True)
class EjectionPolicy:
    eject_after: int = 3  # consecutive failures
    base_s: float = 1.0  # first ejection; doubles per ejection in a row
    max_s: float = 30.0


class Endpoint:
    __slots__ = ("url", "session", "outstanding", "cap", "failures", "ejections",
                 "ejected_until", "down", "requests", "answered")

    def __init__(self, url: str, session: Any = None, cap: int = 1 << 30) -> None:
        self.url = url
        self.session = session
        self.outstanding = 0
        self.cap = cap  # set from the server's /metrics when that is on
        self.failures = 0  # in a row
        self.ejections = 0  # in a row
        self.ejected_until: float | None = None  # None: not ejected
        self.down = False  # its server is being (re)started
        self.requests = 0  # picked for a request; those answered with a 200 (/metrics)
        self.answered = 0

    @property
    def in_rotation(self) -> bool:
        return not self.down and self.ejected_until is None

    @property
    def state(self) -> str:
        return "restarting" if self.down else "ejected" if self.ejected_until is not None else "up"


# -- decisions -----------------------------------------------------------------------------
def choose(endpoints: Sequence[Endpoint]) -> Endpoint | None:
    """The endpoint in rotation with the most room under its cap; None if none is in rotation."""
    best, best_load = None, float("inf")
    for e in endpoints:
        if e.in_rotation:
            load = e.outstanding / e.cap
            if load < best_load:
                best, best_load = e, load
    return best


def record_failure(e: Endpoint, now: float, policy: EjectionPolicy, others_up: bool) -> bool:
    """Count a failure; True if it ejects the endpoint now. The last endpoint in rotation is
    never ejected: with nowhere else to go, the retry path's backoff is the better wait."""
    e.failures += 1
    if e.ejected_until is not None or e.down or e.failures < policy.eject_after \
            or not others_up:
        return False
    e.ejected_until = now + min(policy.max_s, policy.base_s * 2 ** e.ejections)
    e.ejections += 1
    return True


def record_success(e: Endpoint) -> None:
    e.failures = 0
    e.ejections = 0


def reinstate(e: Endpoint) -> None:
    """A probe answered: back in rotation (the backoff keeps growing if it fails again soon)."""
    e.ejected_until = None
    e.failures = 0


def reject_probe(e: Endpoint, now: float, policy: EjectionPolicy) -> None:
    e.ejected_until = now + min(policy.max_s, policy.base_s * 2 ** e.ejections)
    e.ejections += 1


def due_for_probe(endpoints: Sequence[Endpoint], now: float) -> tuple[list[Endpoint], float]:
    """Ejected endpoints whose backoff is over, and when the next one's ends (inf: none)."""
    due, next_at = [], float("inf")
    for e in endpoints:
        if e.ejected_until is None or e.down:
            continue
        if e.ejected_until <= now:
            due.append(e)
        else:
            next_at = min(next_at, e.ejected_until)
    return due, next_at


# -- the set, with its events ----------------------------------------------------------------
class EndpointSet:
    def __init__(self, endpoints: list[Endpoint], policy: EjectionPolicy | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.endpoints = endpoints
        self.policy = policy or EjectionPolicy()
        self.clock = clock
        self.down_wait_s = 10.0  # how long a request waits for an endpoint to come back
        self.unreachable_since: float | None = None  # first failed connect since any answer
        self._back = asyncio.Event()  # an endpoint came back into rotation
        self._ejected = asyncio.Event()  # wakes the probe loop

    def by_url(self, url: str) -> Endpoint:
        return next(e for e in self.endpoints if e.url == url)

    async def pick(self) -> Endpoint:
        """The endpoint for the next request; waits (up to `down_wait_s`) while none is in
        rotation, then fails like a refused connection, so the retry path takes over."""
        endpoint = choose(self.endpoints)
        if endpoint is not None:
            endpoint.requests += 1
            return endpoint
        deadline = self.clock() + self.down_wait_s
        while endpoint is None:
            remaining = deadline - self.clock()
            if remaining <= 0:
                states = ", ".join(f"{e.url} {e.state}" for e in self.endpoints)
                raise ConnectionReset(f"no endpoint in rotation for {self.down_wait_s:.0f}s "
                                      f"({states})")
            self._back.clear()
            await wait_for_event(self._back, remaining)
            endpoint = choose(self.endpoints)
        endpoint.requests += 1
        return endpoint

    def failed(self, endpoint: Endpoint) -> None:
        others_up = any(e.in_rotation for e in self.endpoints if e is not endpoint)
        if record_failure(endpoint, self.clock(), self.policy, others_up):
            log.warning("endpoint %s ejected after %d failures in a row (probe in %.0fs)",
                        endpoint.url, endpoint.failures, endpoint.ejected_until - self.clock())
            self._ejected.set()

    def succeeded(self, endpoint: Endpoint) -> None:
        """A 200 from `endpoint`."""
        endpoint.answered += 1
        record_success(endpoint)

    def answered(self) -> None:
        """Some endpoint answered (any status): the backend is reachable."""
        self.unreachable_since = None

    def not_connected(self, endpoint: Endpoint) -> float:
        """A connection to `endpoint` could not be made: counts as its failure; returns how
        long no endpoint of the set has answered since connections started failing."""
        self.failed(endpoint)
        now = self.clock()
        if self.unreachable_since is None:
            self.unreachable_since = now
        return now - self.unreachable_since

    def mark_down(self, url: str) -> None:
        self.by_url(url).down = True

    def mark_up(self, url: str) -> None:
        endpoint = self.by_url(url)
        endpoint.down = False
        reinstate(endpoint)
        endpoint.ejections = 0
        self._back.set()

    async def probe_ejected(self, timeout_s: float = 5.0) -> None:
        """Probe each ejected endpoint when its backoff ends; runs until cancelled."""
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                due, next_at = due_for_probe(self.endpoints, self.clock())
                for endpoint, alive in zip(due, await asyncio.gather(
                        *(probe(session, e.url) for e in due))):
                    if alive:
                        log.warning("endpoint %s answers again: back in rotation", endpoint.url)
                        reinstate(endpoint)
                        self._back.set()
                    else:
                        reject_probe(endpoint, self.clock(), self.policy)
                if due:
                    continue  # recompute the next wake-up with the new backoffs
                self._ejected.clear()
                delay = None if next_at == float("inf") else max(0.0, next_at - self.clock())
                await wait_for_event(self._ejected, delay)


async def probe(session: aiohttp.ClientSession, base_url: str) -> bool:
    """Does the server answer at all? (`/models` exists on every OpenAI-style server; a 401
    from a hosted API still means it is reachable.)"""
    try:
        async with session.get(base_url + "/models") as resp:
            return resp.status < 500
    except (aiohttp.ClientError, TimeoutError):
        return False
