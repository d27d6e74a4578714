"""A backend whose every answer is scripted, in process, for engine-core tests.

`ScriptedBackend` speaks the backend protocol (and `complete_body`, which the micro-batcher
uses). What each call does is a `Step`: how long it takes (virtual seconds on the test loop),
its answer or the engine error it raises, and for a stream its deltas. Steps come from a list
(in call order; `default` once it runs out) or from a function of the request. The backend
records what it was asked: every call, in flight now, peak in flight.

`make_pool` and `make_client` are the one place tests build a PermitPool or a ModelClient."""

from __future__ import annotations

import asyncio
import copy
import random
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Sequence

from gristmill.capabilities import Capabilities
from gristmill.errors import BackendError
from gristmill.protocol import Completion, Delta, Request, SentCallback, Usage
from gristmill.scheduling.aimd import AIMD
from gristmill.scheduling.client import ModelClient
from gristmill.scheduling.permits import PermitPool
from gristmill.scheduling.retry import RetryPolicy
from gristmill.scheduling.tokens import estimate_tokens


def answer_for(prompt: str) -> str:
    """The default answer: a pure function of the prompt, so any two calls can be compared."""
    return f"Answer about: {prompt}"


def prompt_of(request: Request) -> str:
    if request.messages is not None:
        return request.messages[-1].get("content") or ""
    if isinstance(request.prompt, list):
        raise ValueError("a batch has one prompt per member")
    return request.prompt or ""


@dataclass
class Step:
    """What one call does. `latency`: virtual seconds before the answer (for a stream, before
    its first delta). `error`: raised instead of answering (a fresh copy per call); for a
    stream with `cut_after` set, raised after that many deltas. `text` None: `answer_for`
    the prompt. `deltas`: how a stream splits the text (default: 8-character pieces), sent
    `gap` virtual seconds apart. `hang`: never answers (until cancelled)."""

    text: str | None = None
    latency: float = 0.0
    error: BackendError | None = None
    cut_after: int | None = None
    deltas: Sequence[str] | None = None
    gap: float = 0.0
    finish_reason: str = "stop"
    hang: bool = False
    tool_calls: list[dict[str, Any]] | None = None  # answered whole (complete) only

    def answer(self, prompt: str) -> str:
        return answer_for(prompt) if self.text is None else self.text

    def pieces(self, prompt: str) -> list[str]:
        if self.deltas is not None:
            return list(self.deltas)
        text = self.answer(prompt)
        return [text[i:i + 8] for i in range(0, len(text), 8)] or [""]

    def raise_error(self) -> None:
        if self.error is not None:
            raise copy.copy(self.error)  # the client writes `attempts` on the one it raises


def fail(error: BackendError, latency: float = 0.0, **kw: Any) -> Step:
    return Step(error=error, latency=latency, **kw)


@dataclass
class Call:
    """One call as the backend saw it: when it started and ended (virtual seconds), how."""

    request: Request
    started: float
    ended: float | None = None
    outcome: str = "pending"  # "ok", the error's class name, or "cancelled"


Script = Sequence[Step] | Callable[[Request, int], Step]


@dataclass(eq=False)
class ScriptedBackend:
    script: Script = ()
    default: Step = field(default_factory=Step)
    name: str = "scripted"
    model: str = "scripted"
    # reports_sends: calls `sent` as a request starts, like an HTTP backend once its headers
    # are on the wire
    capabilities: Capabilities = field(default_factory=Capabilities)

    def __post_init__(self) -> None:
        self.calls: list[Call] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.closed = False

    # -- the script ---------------------------------------------------------------------
    def _next_step(self, request: Request) -> Step:
        index = len(self.calls)
        if callable(self.script):
            return self.script(request, index)
        return self.script[index] if index < len(self.script) else self.default

    @property
    def outcomes(self) -> list[str]:
        return [c.outcome for c in self.calls]

    @property
    def started_at(self) -> list[float]:
        return [c.started for c in self.calls]

    # -- bookkeeping shared by every kind of call ----------------------------------------
    async def _begin(self, request: Request, sent: SentCallback | None) -> tuple[Step, Call]:
        if self.closed:
            raise RuntimeError("call on a closed backend")
        if sent is not None and self.capabilities.reports_sends:
            sent()
        loop = asyncio.get_running_loop()
        step = self._next_step(request)
        call = Call(request, loop.time())
        self.calls.append(call)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        return step, call

    def _end(self, call: Call, outcome: str) -> None:
        self.in_flight -= 1
        call.ended = asyncio.get_running_loop().time()
        call.outcome = outcome

    async def _wait(self, step: Step, seconds: float) -> None:
        if step.hang:
            await asyncio.get_running_loop().create_future()  # until cancelled
        if seconds:
            await asyncio.sleep(seconds)

    async def _run(self, request: Request, sent: SentCallback | None,
                   body: Callable[[Step], Any]) -> Any:
        step, call = await self._begin(request, sent)
        try:
            result = await body(step)
        except BaseException as error:  # a cancel, a backend error, a defect alike
            cancelled = isinstance(error, asyncio.CancelledError)
            self._end(call, "cancelled" if cancelled else type(error).__name__)
            raise
        self._end(call, "ok")
        return result

    # -- the backend protocol -----------------------------------------------------------
    async def complete(self, request: Request, sent: SentCallback | None = None) -> Completion:
        async def body(step: Step) -> Completion:
            await self._wait(step, step.latency)
            step.raise_error()
            prompt = prompt_of(request)
            text = step.answer(prompt)
            return Completion(text, step.finish_reason,
                              Usage(estimate_tokens(prompt), estimate_tokens(text)),
                              request.model, tool_calls=step.tool_calls)
        return await self._run(request, sent, body)

    async def complete_body(self, request: Request,
                            sent: SentCallback | None = None) -> dict[str, Any]:
        """A /v1/completions answer for a batch of prompts (what the micro-batcher sends)."""
        async def body(step: Step) -> dict[str, Any]:
            await self._wait(step, step.latency)
            step.raise_error()
            prompts = request.prompt if isinstance(request.prompt, list) else [request.prompt]
            texts = [step.answer(p or "") for p in prompts]
            return {"model": request.model, "choices": [
                {"index": i, "text": t, "finish_reason": step.finish_reason}
                for i, t in enumerate(texts)],
                "usage": {"prompt_tokens": sum(estimate_tokens(p or "") for p in prompts),
                          "completion_tokens": sum(estimate_tokens(t) for t in texts)}}
        return await self._run(request, sent, body)

    async def stream(self, request: Request,
                     sent: SentCallback | None = None) -> AsyncIterator[Delta]:
        step, call = await self._begin(request, sent)
        outcome = "cancelled"  # also when the consumer closes the stream early
        try:
            await self._wait(step, step.latency)
            if step.cut_after is None:
                step.raise_error()
            prompt = prompt_of(request)
            pieces = step.pieces(prompt)
            for i, piece in enumerate(pieces):
                if step.cut_after is not None and i == step.cut_after:
                    step.raise_error()
                if i and step.gap:
                    await asyncio.sleep(step.gap)
                last = i == len(pieces) - 1
                yield Delta(piece, step.finish_reason if last else None,
                            Usage(estimate_tokens(prompt), estimate_tokens("".join(pieces)))
                            if last else None)
            outcome = "ok"
        except BackendError as error:
            outcome = type(error).__name__
            raise
        finally:
            self._end(call, outcome)

    async def aclose(self) -> None:
        self.closed = True


# -- the one place tests build permit pools and clients -----------------------------------
def make_pool(cap: int = 8, **kw: Any) -> PermitPool:
    """A permit pool (`rpm`, `tpm`, `window_s`, `margin_s`, `clock` as PermitPool takes them;
    without `clock` it reads the running loop's, virtual on the test loop)."""
    return PermitPool(cap, **kw)


def make_client(backend: Any, *, cap: int = 8, max_attempts: int = 3, base_s: float = 0.01,
                max_s: float = 0.05, adaptive: bool = False, seed: int = 1,
                default_max_tokens: int = 256, **pool: Any) -> ModelClient:
    """A ModelClient around `backend` with a fixed-seed jitter, so retry times repeat."""
    return ModelClient(backend, make_pool(cap, **pool),
                       policy=RetryPolicy(max_attempts, base_s, max_s),
                       aimd=AIMD(cap) if adaptive else None, count_tokens=estimate_tokens,
                       default_max_tokens=default_max_tokens, rng=random.Random(seed))


async def assert_settled(*things: Any) -> None:
    """Nothing leaked: no request in flight in a backend, no permit borrowed and no waiter
    queued in a client's pool, no task but the test's own left on the loop."""
    for thing in things:
        if isinstance(thing, ModelClient):
            assert thing.pool.in_flight == 0, "borrowed permit"
            assert thing.pool.waiting == 0, "queued waiter"
            thing = thing.backend
        assert getattr(thing, "in_flight", 0) == 0, "request in flight"
    assert asyncio.all_tasks() == {asyncio.current_task()}, "pending task"
