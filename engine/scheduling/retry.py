"""Which failures are retried, and after how long.

Transient failures (429, 5xx, timeouts, resets) are retried with exponential backoff and full
jitter, never sooner than the server's Retry-After; client errors (400/401/403/404/422) and
invalid output are never retried here: the same request would fail the same way. A malformed
answer (billed, and likely to recur) has its own small budget: its retries do not use up the
transient budget, nor the other way round. A request that could not connect at all
(`Unreachable`) never reached a server: it waits and retries without a budget, because the
backend itself stops the run once it has been unreachable for too long."""

from __future__ import annotations

import random
from dataclasses import dataclass

from gristmill.errors import BackendError, MalformedAnswer, RateLimited, Unreachable


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 6
    base_s: float = 0.5
    max_s: float = 60.0
    malformed_retries: int = 2


def retry_delay(policy: RetryPolicy, error: BaseException, attempt: int,
                rng: random.Random, malformed: int = 0, unreachable: int = 0) -> float | None:
    """Seconds to wait before attempt `attempt + 1`, or None when the error is final.
    `attempt` counts from 1 (the attempt that just failed); `malformed` and `unreachable`
    are how many of the attempts so far, that one included, returned a malformed answer or
    could not connect."""
    if not isinstance(error, BackendError) or not error.retryable:
        return None
    if isinstance(error, Unreachable):
        budget_attempt = min(unreachable, 32)  # the backoff grows to max_s; no budget spent
    elif isinstance(error, MalformedAnswer):
        if malformed > policy.malformed_retries:
            return None
        budget_attempt = malformed
    else:
        budget_attempt = attempt - malformed - unreachable
        if budget_attempt >= policy.max_attempts:
            return None
    backoff = rng.uniform(0.0, min(policy.max_s, policy.base_s * 2 ** (budget_attempt - 1)))
    if isinstance(error, RateLimited) and error.retry_after is not None:
        return max(error.retry_after, backoff)
    return backoff
