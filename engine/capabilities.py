"""What a backend can do beyond answering, declared by the backend in one typed value.

The engine and the run read `backend.capabilities`; nothing probes a backend's attributes.
Wrappers (the micro-batcher) pass on the capabilities of what they wrap, so wrapping never
loses endpoint probing, fleet supervision or `/metrics`-driven caps. The endpoint set and the
fleet are described by the protocols below; `gristmill.backends` implements them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Collection, Protocol, Sequence

Answered = Callable[[list[bytes]], None]


class Endpoint(Protocol):
    """One base URL of a backend, as the run's watchers see it."""

    url: str
    cap: int  # most requests in flight here (set from /metrics when scraped)
    outstanding: int
    requests: int  # picked for a request, and of those answered with a 200: for /metrics
    answered: int

    @property
    def in_rotation(self) -> bool: ...


class Endpoints(Protocol):
    """The base URLs of one backend: requests go to the one with the most room, failing ones
    leave the rotation and are probed until they answer again."""

    endpoints: Sequence[Endpoint]
    down_wait_s: float  # how long a request waits for an endpoint to come back

    async def probe_ejected(self) -> None:
        """Probe ejected endpoints when their backoff ends; runs until cancelled."""

    def mark_down(self, url: str) -> None: ...

    def mark_up(self, url: str) -> None: ...


class Fleet(Protocol):
    """Servers gristmill starts for a backend (`vllm serve`): entered before the first request,
    exited after the last; supervised while the run lasts."""

    startup_timeout_s: float

    async def __aenter__(self) -> Fleet: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def supervise(self, endpoints: Endpoints) -> None:
        """Restart servers that exit; runs until cancelled, raises once none is left."""

    def summary(self) -> dict[str, Any]:
        """For the run's summary: the servers' URLs, restarts, those given up on."""


class Batches(Protocol):
    """A backend whose requests wait in batch files: a request raises `Parked` until its
    result has arrived, and the backend tells whom `tell` names which keys have one."""

    def tell(self, answered: Answered) -> None: ...

    def flush(self) -> None:
        """Send what is gathered now: nothing more is coming until answers do."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    endpoints: Endpoints | None = None  # HTTP base URLs: balancing, ejection and probing
    reports_sends: bool = False  # calls `sent` when a request is on the wire
    rate_hints: bool = False  # reports the server's announced limits (`RateHints`)
    scrape_metrics_s: float | None = None  # each endpoint serves vLLM's /metrics: scrape so often
    fleet: Fleet | None = None  # servers started and supervised for this backend
    # Asks the server, before any seed is read, whether the key works and the models (given)
    # exist; raises FatalUpstream if not. None: nothing to ask (an in-process engine).
    preflight: Callable[[Collection[str]], Awaitable[None]] | None = None
    # Work the backend does beside the pipeline (a hosted batch's upload, polling and
    # download); runs until cancelled, started before the first request.
    background: Callable[[], Awaitable[None]] | None = None
    # Awaited once the pipeline has ended (True: it ran to its end, not stopped), before
    # `background` is cancelled: finishes what is owed for answers already handed out (a
    # batch file's done mark).
    drain: Callable[[bool], Awaitable[None]] | None = None
    # Takes a coroutine function that returns once every answer handed out so far is
    # committed to the run's store: a batch file is marked done only then.
    set_commit_barrier: Callable[[Callable[[], Awaitable[None]]], None] | None = None
    batches: Batches | None = None  # requests wait in batch files (their items are parked)
