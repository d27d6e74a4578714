"""The client's retries on the scripted backend and the virtual clock: each error type is
retried or not, as specified, after the backoff or the server's Retry-After, with nothing
left behind; a retried stream is watched from its own start."""

from __future__ import annotations

import asyncio
import random

import pytest

from gristmill.errors import (BadRequest, ConnectionReset, FirstTokenTimeout,
                              RateLimited, ServerError, TotalTimeout)
from gristmill.protocol import Request
from tests.scripted import ScriptedBackend, Step, assert_settled, fail, make_client

pytestmark = pytest.mark.engine_core

def ask(text: str = "Say something about mills.", stream: bool = False) -> Request:
    return Request("scripted", messages=[{"role": "user", "content": text}], stream=stream)


@pytest.mark.parametrize("error", [
    ServerError("500", status=500), ConnectionReset("reset"), RateLimited("429"),
    FirstTokenTimeout("first token"), TotalTimeout("total")])
@pytest.mark.parametrize("stream", [False, True])
async def test_transient_errors_are_retried_until_the_attempts_run_out(error, stream):
    backend = ScriptedBackend(default=fail(error))
    client = make_client(backend, max_attempts=3, base_s=0.01, max_s=0.05)
    with pytest.raises(type(error)) as exc:
        await client.call(ask(stream=stream))
    assert len(backend.calls) == 3 and exc.value.attempts == 3  # max_attempts
    assert client.retries == 2 and client.errors[type(error).__name__] == 3
    assert backend.outcomes == [type(error).__name__] * 3
    await assert_settled(client)


@pytest.mark.virtual_clock
async def test_backoff_is_jittered_exponential_and_capped():
    backend = ScriptedBackend(default=fail(ServerError("500")))
    client = make_client(backend, max_attempts=6, base_s=1.0, max_s=4.0)
    with pytest.raises(ServerError):
        await client.call(ask())
    starts = backend.started_at
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    # full jitter: attempt k waits uniform(0, min(max_s, base_s * 2**(k-1)))
    rng = random.Random(1)
    expected = [rng.uniform(0.0, min(4.0, 1.0 * 2 ** k)) for k in range(5)]
    assert gaps == pytest.approx(expected)
    assert all(gap <= bound for gap, bound in zip(gaps, [1, 2, 4, 4, 4]))
    await assert_settled(client)


async def test_client_errors_are_never_retried():
    backend = ScriptedBackend(default=fail(BadRequest("422", status=422)))
    client = make_client(backend)
    with pytest.raises(BadRequest) as exc:
        await client.call(ask())
    assert exc.value.status == 422 and exc.value.attempts == 1
    assert len(backend.calls) == 1 and client.retries == 0
    await assert_settled(client)


@pytest.mark.virtual_clock
async def test_retry_after_is_obeyed_and_pauses_every_request():
    backend = ScriptedBackend([fail(RateLimited("429", retry_after=0.4), latency=0.1)],
                              default=Step(latency=0.1))
    client = make_client(backend, max_attempts=3, base_s=0.01, max_s=0.05)
    first = asyncio.create_task(client.call(ask("first")))
    await asyncio.sleep(0.05)  # the first is out; a second waits behind the pause it brings
    second = asyncio.create_task(client.call(ask("second")))
    await asyncio.gather(first, second)
    # the 429 came back at 0.1: no request is sent for 0.4 s, not even the second's
    assert backend.started_at == pytest.approx([0.0, 0.05, 0.5])
    assert backend.outcomes == ["RateLimited", "ok", "ok"]
    assert client.retries == 1
    await assert_settled(client)


@pytest.mark.virtual_clock
async def test_retry_after_gaps_between_attempts():
    backend = ScriptedBackend(default=fail(RateLimited("429", retry_after=0.4)))
    client = make_client(backend, max_attempts=3, base_s=0.01, max_s=0.05)
    with pytest.raises(RateLimited):
        await client.call(ask())
    starts = backend.started_at
    assert starts == pytest.approx([0.0, 0.4, 0.8])  # never sooner than Retry-After
    await assert_settled(client)


class RecordingWatch:
    """The client's side of a stream watch, recorded: what each attempt was fed."""

    every = 8

    def __init__(self):
        self.attempts = []

    def start(self):
        self.attempts.append([])

    def feed(self, text):
        self.attempts[-1].append(text)


async def test_a_retried_stream_is_watched_from_its_own_start():
    cut = Step(error=ConnectionReset("cut"), cut_after=3, text="x" * 60)
    backend = ScriptedBackend([cut], default=Step(text="The answer, in many small pieces."))
    client = make_client(backend, max_attempts=5)
    watch = RecordingWatch()
    completion = await client.call(ask(stream=True), watch=watch)
    assert len(watch.attempts) == 2 and backend.outcomes == ["ConnectionReset", "ok"]
    assert sum(map(len, watch.attempts[:-1])) > 0, "the cut attempt fed its text"
    fed = "".join(watch.attempts[-1])  # the answer's own stream, from its start
    assert completion.text == "The answer, in many small pieces."
    assert completion.text.startswith(fed) and len(completion.text) - len(fed) < watch.every
    await assert_settled(client)


async def test_some_faults_still_complete_every_request():
    rng = random.Random(3)

    def faulty(request: Request, index: int) -> Step:
        roll = rng.random()
        if roll < 0.2:
            return fail(ServerError("500"), latency=0.01)
        if roll < 0.3:
            return Step(error=ConnectionReset("reset"), cut_after=1) if request.stream \
                else fail(ConnectionReset("reset"))
        return Step(latency=0.02)

    backend = ScriptedBackend(faulty)
    client = make_client(backend, cap=4, max_attempts=10, base_s=0.001, max_s=0.01)
    got = await asyncio.gather(*(client.call(ask(f"question {i}", stream=i % 2 == 1))
                                 for i in range(30)))
    assert all(c.text and c.finish_reason in ("stop", "length") for c in got)
    assert [c.text for c in got] == [f"Answer about: question {i}" for i in range(30)]
    assert client.retries > 0 and client.in_flight == 0
    assert backend.peak_in_flight == 4  # the cap, and no more
    await assert_settled(client)


async def test_cancelled_calls_give_back_their_permits_and_requests():
    backend = ScriptedBackend(default=Step(latency=5.0))
    client = make_client(backend, cap=2)
    calls = [asyncio.create_task(client.call(ask(f"q{i}"))) for i in range(5)]
    await asyncio.sleep(0.01)
    assert backend.in_flight == 2 and client.pool.waiting == 3
    for call in calls:
        call.cancel()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert backend.outcomes == ["cancelled", "cancelled"]
    await assert_settled(client)


async def test_a_defect_in_the_backend_is_not_retried_and_leaks_nothing():
    def broken(request: Request, index: int) -> Step:
        raise KeyError("defect")

    client = make_client(ScriptedBackend(broken))
    with pytest.raises(KeyError):
        await client.call(ask())
    assert client.retries == 0
    await assert_settled(client)
