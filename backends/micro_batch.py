"""Micro-batches: many text prompts in one /v1/completions request.

Requests with the same model, sampling params and response format that arrive within a short
window (or fill a batch) go out as one request whose `prompt` is a list; each caller gets the
choice with its index. Every caller keeps its own permit and retries, so a failed batch fails
each member, and each goes back through the client's retry policy on its own (it joins a later
batch). Streamed and chat requests pass through unbatched.

`plan` decides (flush now? how many? when to look again?) as a plain function; the batcher
only keeps the queues and the timer, and sends."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import orjson

from gristmill.config.pipeline import MicroBatchConfig
from gristmill.errors import BackendError
from gristmill.protocol import Completion, Delta, Request, SentCallback, Usage

from gristmill.backends.openai_http.backend import OpenAIHTTPBackend
from gristmill.backends.openai_http.wire import finish_of, malformed, model_of, text_of, usage_of


# A loop runs a timer up to its clock's resolution early; a window that ends within this much
# counts as ended, or the timer re-armed for the rest would fire again at once, in a spin.
TIMER_SLACK_S = 1e-6


def plan(pending: int, oldest_age_s: float, max_prompts: int,
         window_s: float) -> tuple[int, float | None]:
    """(prompts to send now, seconds until the next decision, None: no decision pending).
    A full batch goes at once; otherwise the oldest prompt waits at most `window_s`."""
    if pending >= max_prompts:
        return max_prompts, None
    if pending == 0:
        return 0, None
    if oldest_age_s >= window_s - TIMER_SLACK_S:
        return pending, None
    return 0, window_s - oldest_age_s


def batch_key(request: Request) -> bytes:
    """Requests that may share one HTTP request: everything but the prompt is equal."""
    return orjson.dumps([request.model, request.params, request.response_format],
                        option=orjson.OPT_SORT_KEYS)


def batchable(request: Request) -> bool:
    return (not request.stream and isinstance(request.prompt, str)
            and int(request.params.get("n") or 1) == 1)


def split_answer(data: dict[str, Any], count: int,
                 model: str) -> list[Completion | BackendError]:
    """Each prompt's completion, by choice index. The server reports one usage for the
    batch: each prompt gets a share by characters (the totals stay exact). A member whose
    choice is missing or malformed gets a `MalformedAnswer`; the others their answers."""
    by_index: dict[int, dict[str, Any]] = {}
    for choice in data["choices"]:
        if isinstance(choice, dict) and isinstance(choice.get("index"), int):
            by_index[choice["index"]] = choice
    usage = usage_of(data.get("usage"))
    answers = [_member_answer(by_index.get(i), i) for i in range(count)]
    texts = [a[0] if isinstance(a, tuple) else "" for a in answers]
    shares_c = _shares(usage.completion_tokens, [len(t) for t in texts])
    shares_p = _shares(usage.prompt_tokens, [1] * count)
    model = model_of(data, model)
    return [Completion(a[0], a[1], Usage(shares_p[i], shares_c[i]), model)
            if isinstance(a, tuple) else a for i, a in enumerate(answers)]


def _member_answer(choice: dict[str, Any] | None,
                   index: int) -> tuple[str, str | None] | BackendError:
    """(text, finish_reason) of one member's choice, or the error that member gets."""
    if choice is None:
        return malformed(f"the batched answer has no choice with index {index}")
    try:
        return text_of(choice, chat=False), finish_of(choice)
    except BackendError as error:
        return error


def _all(callbacks: list[SentCallback]) -> SentCallback:
    def call() -> None:
        for callback in callbacks:
            callback()
    return call


def _shares(total: int, weights: list[int]) -> list[int]:
    """`total` split in proportion to `weights` (whole numbers summing to `total`)."""
    weight = sum(weights)
    if weight == 0:
        weights, weight = [1] * len(weights), len(weights)
    shares = [total * w // weight for w in weights]
    for i in range(total - sum(shares)):
        shares[i % len(shares)] += 1
    return shares


@dataclass(slots=True, eq=False)
class _Member:
    request: Request
    future: asyncio.Future[Completion]
    arrived: float
    sent: SentCallback | None  # the member's own send signal: called when its batch is sent


@dataclass(slots=True)
class _Queue:
    members: list[_Member] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class CompletionBatcher:
    """An OpenAIHTTPBackend (api 'completions') whose non-streamed prompts go out in batches."""

    def __init__(self, inner: OpenAIHTTPBackend, config: MicroBatchConfig) -> None:
        self.name = inner.name
        self.inner = inner
        self.capabilities = inner.capabilities  # every one: endpoints, fleet, metrics, sends
        self.config = config
        self._queues: dict[bytes, _Queue] = {}
        self._sends: set[asyncio.Task[None]] = set()  # batches in flight, owned until done
        self.batches = 0
        self.batched_prompts = 0

    @property
    def waiting(self) -> int:
        """Prompts queued for a batch that has not been sent yet."""
        return sum(len(q.members) for q in self._queues.values())

    @property
    def sending(self) -> int:
        return len(self._sends)

    def stream(self, request: Request, sent: SentCallback | None = None) -> AsyncIterator[Delta]:
        return self.inner.stream(request, sent)

    async def complete(self, request: Request, sent: SentCallback | None = None) -> Completion:
        if not batchable(request):
            return await self.inner.complete(request, sent)
        loop = asyncio.get_running_loop()
        key = batch_key(request)
        member = _Member(request, loop.create_future(), loop.time(), sent)
        self._queues.setdefault(key, _Queue()).members.append(member)
        self._decide(key)
        try:
            return await member.future
        except asyncio.CancelledError:
            self._leave(key, member)  # not sent yet: it never will be
            raise

    def _leave(self, key: bytes, member: _Member) -> None:
        queue = self._queues.get(key)
        if queue is not None and member in queue.members:
            queue.members.remove(member)
            self._decide(key)

    def _decide(self, key: bytes) -> None:
        queue = self._queues[key]
        if queue.timer is not None:
            queue.timer.cancel()
            queue.timer = None
        loop = asyncio.get_running_loop()
        while True:
            members = queue.members
            age = loop.time() - members[0].arrived if members else 0.0
            count, wake = plan(len(members), age, self.config.max_prompts,
                               self.config.window_ms / 1000)
            if count == 0:
                break
            batch, queue.members = members[:count], members[count:]
            self._send(batch)
        if wake is not None:
            queue.timer = loop.call_later(wake, self._decide, key)
        elif not queue.members:
            del self._queues[key]

    def _send(self, batch: list[_Member]) -> None:
        task = asyncio.get_running_loop().create_task(self._call(batch))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _call(self, batch: list[_Member]) -> None:
        """One request for the batch; every member gets its answer or its own error."""
        first = batch[0].request
        together = Request(first.model, prompt=[m.request.prompt for m in batch],
                           params=first.params, response_format=first.response_format)
        self.batches += 1
        self.batched_prompts += len(batch)
        sents = [m.sent for m in batch if m.sent is not None]
        try:
            data = await self.inner.complete_body(together, _all(sents) if sents else None)
            results = split_answer(data, len(batch), first.model)
        except asyncio.CancelledError:  # the backend is closing
            for member in batch:
                member.future.cancel()
            raise
        except BackendError as error:
            results = [copy.copy(error) for _ in batch]  # each member retries on its own
        except Exception as error:  # a defect: hand it to the callers rather than hang them
            results = [error] * len(batch)
        for member, result in zip(batch, results):
            if member.future.done():  # its caller was cancelled while the batch was out
                continue
            if isinstance(result, BaseException):
                member.future.set_exception(result)
            else:
                member.future.set_result(result)

    async def aclose(self) -> None:
        for queue in self._queues.values():
            if queue.timer is not None:
                queue.timer.cancel()
            for member in queue.members:
                member.future.cancel()
        self._queues.clear()
        sends = list(self._sends)
        for task in sends:
            task.cancel()
        await asyncio.gather(*sends, return_exceptions=True)
        await self.inner.aclose()
