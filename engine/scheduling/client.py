"""A backend as the engine uses it: permits, rate hints, AIMD and retries around the calls.

`ModelClient.call` is the only way a stage reaches a model. It takes a permit (priority:
deeper stages first), makes one attempt, gives the permit back with the actual token usage,
and on a transient failure or a malformed answer (each on its own budget) goes back into the
permit queue after its backoff."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from contextlib import aclosing
from functools import partial
from typing import Callable, Protocol

from gristmill.dataset.cache import AnswerCache
from gristmill.dataset.store import SpendRow
from gristmill.errors import (BackendError, ErrorRateExceeded, MalformedAnswer, NotSent, Parked,
                              RateLimited, Unreachable)
from gristmill.protocol import Backend, Completion, Request, SentCallback, Usage
from gristmill.tool_calls import ToolCallParts
from gristmill.scheduling.aimd import AIMD
from gristmill.scheduling.budget import Budget
from gristmill.scheduling.error_rate import ErrorRateGuard
from gristmill.scheduling.histogram import Histogram
from gristmill.scheduling.permits import Permit, PermitPool
from gristmill.scheduling.retry import RetryPolicy, retry_delay
from gristmill.scheduling.spend import ModelSpend, Price
from gristmill.scheduling.tokens import Counter as TokenCounter, count_messages

log = logging.getLogger("gristmill.client")


class StreamObserver(Protocol):
    """What watches a streamed answer (the stage's streaming validators): started as each
    stream begins (a retry starts over), fed the new text every `every` characters, it raises
    to abort the stream."""

    every: int

    def start(self) -> None: ...

    def feed(self, text: str) -> None: ...


class ModelClient:
    def __init__(self, backend: Backend, pool: PermitPool, *, policy: RetryPolicy,
                 aimd: AIMD | None, count_tokens: TokenCounter, default_max_tokens: int,
                 rng: random.Random | None = None, guard: ErrorRateGuard | None = None,
                 price_of: Callable[[str], Price | None] | None = None) -> None:
        self.backend = backend
        self.pool = pool
        self.policy = policy
        self.aimd = aimd
        self.count_tokens = count_tokens
        self.default_max_tokens = default_max_tokens
        self.rng = rng or random.Random()
        self.guard = guard
        self.regenerate_with: ModelClient | None = None  # a batch client's online twin
        self.requests = 0
        self.retries = 0
        self.errors: Counter[str] = Counter()
        self.retried: Counter[str] = Counter()  # retries by the error that caused them
        self.aborted = 0  # attempts stopped by the caller, neither answered nor failed
        # seconds, for the run's /metrics: answered attempts; a stream's first text
        self.latency, self.first_token = Histogram(), Histogram()
        self.usage = Usage()
        self.cache: AnswerCache | None = None  # set by the run when caching is on
        self._in_flight: dict[bytes, asyncio.Future[None]] = {}  # cache key -> its leader
        self.caps: dict[str, int] = {}  # in-flight caps by who set them; the smallest rules
        self.server_load: dict[str, object] = {}  # last metrics per endpoint, for display
        # What answers cost, per model asked for (earlier sessions' included once the run
        # restores them); prices looked up once per model.
        self.spend: dict[str, ModelSpend] = {}
        self._price_of = price_of or (lambda model: None)
        self._prices: dict[str, Price | None] = {}
        self.budget: Budget | None = None  # the run's, shared by its clients, when capped
        self.persist_spend: Callable[[SpendRow], None] | None = None  # without a cache
        # Requests waiting in a batch file (`Parked`), by key: the budget they reserved,
        # kept until the answer is taken (their item is asked again then).
        self.parked: dict[bytes, float] = {}

    def set_cap(self, source: str, value: int) -> None:
        self.caps[source] = value
        self.pool.cap = min(self.caps.values())

    def estimate_tokens(self, request: Request) -> int:
        return self.prompt_tokens(request) + self.max_tokens(request)

    def prompt_tokens(self, request: Request) -> int:
        """The prompt's tokens: exact with the backend's tokenizer, else estimated."""
        if request.messages is not None:
            return count_messages(request.messages, self.count_tokens)
        return self.count_tokens(request.prompt or "")

    def max_tokens(self, request: Request) -> int:
        return int(request.params.get("max_tokens") or self.default_max_tokens)

    def price(self, model: str) -> Price | None:
        if model not in self._prices:
            self._prices[model] = self._price_of(model)
        return self._prices[model]

    async def call(self, request: Request, priority: int = 0,
                   watch: StreamObserver | None = None) -> Completion:
        """The completion, or the last error once retries are spent or the error is final.
        `watch` is fed a streamed answer as it arrives and may raise to abort the request."""
        if self.cache is None:
            return await self._request(request, priority, watch, None)
        while True:
            key, cached = self.cache.get(request)
            if cached is not None:
                return cached  # validators judge it whole (`cached` is set)
            leader = self._in_flight.get(key)
            if leader is None:
                break
            # The same request is already in flight: share its answer instead of paying for
            # a second one (whose answer the cache would not keep). If the leader fails, try.
            await asyncio.shield(leader)
        done = asyncio.get_running_loop().create_future()
        self._in_flight[key] = done
        try:
            return await self._request(request, priority, watch, key)
        finally:
            del self._in_flight[key]
            done.set_result(None)  # followers look in the cache again

    async def _request(self, request: Request, priority: int, watch: StreamObserver | None,
                       key: bytes | None) -> Completion:
        prompt_tokens, max_tokens = self.prompt_tokens(request), self.max_tokens(request)
        tokens = prompt_tokens + max_tokens
        price, budget = self.price(request.model), self.budget
        # a run with a budget has a price for every model (checked before it starts)
        worst = price.worst_case(prompt_tokens, max_tokens) if budget and price else 0.0
        attempt = malformed = unreachable = 0  # all attempts; malformed; not connected
        while True:
            attempt += 1
            permit = await self.pool.acquire(priority, tokens)
            waited = self.parked.pop(key, None) if key is not None else None
            if waited is not None:  # its answer has come: it was counted and reserved then
                worst = waited
            elif budget is not None and not budget.reserve(worst):
                self.pool.release(permit)  # never sent: the run ends once the rest has
                raise NotSent(f"the budget of ${budget.cap:.4f} is reached")
            else:
                self.requests += 1
            sent = self._sent_signal(permit)
            started = self.pool.clock()
            try:
                if request.stream:
                    completion = await self._stream(request, watch, sent)
                else:  # one coroutine less per request on the common path
                    completion = await self.backend.complete(request, sent)
            except BackendError as error:
                self.pool.release(permit)
                if budget is not None:  # unanswered: no usage to charge
                    budget.release(worst)
                malformed += isinstance(error, MalformedAnswer)
                unreachable += isinstance(error, Unreachable)
                delay = self._failed(error, permit, attempt, malformed, unreachable)
                if delay is None:
                    error.attempts = attempt
                    self._guard(error)
                    raise
                await asyncio.sleep(delay)
                continue
            except Parked as parked:  # in a batch file: the budget stays reserved till then
                self.pool.release(permit)
                self.parked[parked.key] = worst
                raise
            except BaseException:
                self.pool.release(permit)
                if budget is not None:
                    budget.release(worst)
                self.aborted += 1  # a streaming validator or a cancel stopped it
                raise
            self.pool.release(permit, completion.usage.total_tokens or None)
            self.latency.observe(self.pool.clock() - started)
            spent = self._succeeded(completion, request.model, price)
            if budget is not None:
                budget.settle(worst, spent[2] or 0.0)
            if self.guard is not None:
                self.guard.record(False)
            if key is not None and self.cache is not None:
                self.cache.put(key, completion, spent)  # committed together
            elif self.persist_spend is not None:
                self.persist_spend(spent)
            return completion

    def _sent_signal(self, permit: Permit) -> SentCallback | None:
        """Rate windows count a request from its send: a backend that reports sends gets a
        callback to call then; for others the send is now."""
        if permit.request_entry is None and permit.token_entry is None:
            return None  # no rate window to count in
        if not self.backend.capabilities.reports_sends:
            self.pool.sent(permit)
            return None
        return partial(self.pool.sent, permit)

    async def _stream(self, request: Request, watch: StreamObserver | None,
                      sent: SentCallback | None) -> Completion:
        parts: list[str] = []
        calls = ToolCallParts()
        finish, usage = None, None
        fed, unfed = 0, 0  # parts given to the watch; characters since
        every = 0
        started = self.pool.clock()
        if watch is not None:
            watch.start()
            every = watch.every
        async with aclosing(self.backend.stream(request, sent)) as deltas:
            async for delta in deltas:
                if text := delta.text:
                    if not parts:
                        self.first_token.observe(self.pool.clock() - started)
                    parts.append(text)
                    if watch is not None:
                        unfed += len(text)
                        if unfed >= every:  # coalesced here: one call per `every` characters
                            watch.feed("".join(parts[fed:]))
                            fed, unfed = len(parts), 0
                if delta.tool_calls:
                    calls.add(delta.tool_calls)
                finish = delta.finish_reason or finish
                usage = delta.usage or usage
        try:
            tool_calls = calls.calls()
        except ValueError as error:  # a call that never got its id or name
            raise MalformedAnswer(f"malformed answer: {error}", status=200) from None
        return Completion("".join(parts), finish, usage or Usage(), request.model,
                          tool_calls=tool_calls)

    def _succeeded(self, completion: Completion, model: str, price: Price | None) -> SpendRow:
        """Count the answer's usage and cost; the row to persist."""
        usage = completion.usage
        self.usage.prompt_tokens += usage.prompt_tokens
        self.usage.completion_tokens += usage.completion_tokens
        self.usage.cached_prompt_tokens += usage.cached_prompt_tokens
        cost = price.cost(usage) if price is not None else None
        spend = self.spend.get(model)
        if spend is None:
            spend = self.spend[model] = ModelSpend()
        spend.add(cost, usage)
        if self.aimd is not None:
            cap = self.aimd.on_success()
            if cap != self.caps.get("aimd"):
                self.set_cap("aimd", cap)
        return (self.backend.name, model, cost, usage.prompt_tokens, usage.cached_prompt_tokens,
                usage.completion_tokens, 1)

    def _failed(self, error: BackendError, permit: Permit, attempt: int, malformed: int,
                unreachable: int) -> float | None:
        self.errors[type(error).__name__] += 1
        if isinstance(error, RateLimited):
            if error.retry_after:
                self.pool.pause(error.retry_after)
            if self.aimd is not None:
                self.set_cap("aimd", self.aimd.on_overload(permit.granted_at, self.pool.clock()))
        delay = retry_delay(self.policy, error, attempt, self.rng, malformed, unreachable)
        if delay is not None:
            self.retries += 1
            self.retried[type(error).__name__] += 1
            log.debug("%s: attempt %d failed (%s), retry in %.2fs", self.backend.name,
                      attempt, error, delay)
        return delay

    def _guard(self, error: BackendError) -> None:
        """A request ended in `error`: stop the run if the error-rate guard trips."""
        guard = self.guard
        if guard is not None and guard.record(True):
            raise ErrorRateExceeded(
                f"backend {self.backend.name!r}: {guard.failed} of its last {guard.window} "
                f"requests failed after their retries (the limit is {guard.rate:.0%}; errors "
                f"so far: {', '.join(f'{k} {v}' for k, v in self.errors.most_common())}; last: "
                f"{error}); fix the cause or change stop_on_error_rate, then "
                "`gristmill resume`") from error

    @property
    def in_flight(self) -> int:
        return self.pool.in_flight

    async def aclose(self) -> None:
        self.pool.close()
        await self.backend.aclose()
