"""Micro-batching of /v1/completions prompts: the flush decision as a plain function, answers
mapped back by choice index; on the scripted backend and the virtual clock: fewer requests,
the same answers, the window kept, a failed batch retried per member, nothing left after
cancels and close; and against the mock server (a real process), the same answers on the
wire."""

from __future__ import annotations

import asyncio
import random

import pytest

from gristmill.backends.micro_batch import CompletionBatcher, plan, split_answer
from gristmill.backends.openai_http.backend import OpenAIHTTPBackend
from gristmill.protocol import Request
from gristmill.config.pipeline import BackendConfig, MicroBatchConfig
from gristmill.errors import MalformedAnswer, ServerError
from tests.scripted import ScriptedBackend, Step, assert_settled, fail, make_client


@pytest.mark.parametrize("pending, age, expected", [
    (0, 0.0, (0, None)),           # nothing queued: no timer
    (1, 0.0, (0, 0.004)),          # the first prompt waits the whole window
    (3, 0.003, (0, 0.001)),        # ... and later ones only what is left of it
    (3, 0.004, (3, None)),         # window over: send what there is
    (8, 0.0, (8, None)),           # full: send at once
    (11, 0.0, (8, None)),          # more than full: a full batch now, decide again
])
def test_plan(pending, age, expected):
    count, wake = plan(pending, age, max_prompts=8, window_s=0.004)
    assert count == expected[0]
    assert wake == pytest.approx(expected[1]) if expected[1] is not None else wake is None


def test_split_answer_maps_choices_by_index_and_shares_usage():
    data = {"model": "m", "usage": {"prompt_tokens": 10, "completion_tokens": 7},
            "choices": [{"index": 2, "text": "ccc", "finish_reason": "stop"},
                        {"index": 0, "text": "a", "finish_reason": "length"},
                        {"index": 1, "text": "bbb", "finish_reason": "stop"}]}
    first, second, third = split_answer(data, 3, "m")
    assert (first.text, first.finish_reason) == ("a", "length")
    assert (second.text, third.text) == ("bbb", "ccc")
    assert sum(c.usage.prompt_tokens for c in (first, second, third)) == 10
    assert [c.usage.completion_tokens for c in (first, second, third)] == [1, 3, 3]


def test_a_window_ending_within_a_timer_s_slack_has_ended():
    """A timer fired a hair early (loops run timers up to their clock's resolution early)
    sends the batch instead of re-arming a timer for the rest, which would spin."""
    assert plan(3, 0.05 - 1e-12, 8, 0.05) == (3, None)
    count, wake = plan(3, 0.04, 8, 0.05)
    assert count == 0 and wake == pytest.approx(0.01)


def test_split_answer_fails_only_the_member_without_a_choice():
    data = {"choices": [{"index": 0, "text": "a"}], "usage": None}
    ok, missing = split_answer(data, 2, "m")
    assert ok.text == "a"
    assert isinstance(missing, MalformedAnswer) and "index 1" in str(missing)


def config(url: str, max_attempts: int = 6, **batch) -> BackendConfig:
    return BackendConfig(base_url=url, model="mock", api="completions", max_in_flight=64,
                         micro_batch=MicroBatchConfig(**batch),
                         retry={"base_s": 0.01, "max_s": 0.05, "max_attempts": max_attempts})


def prompt(i: int, **params) -> Request:
    return Request("mock", prompt=f"Prompt number {i} about mills", params={"max_tokens": 30,
                                                                           **params})


def assert_idle(batcher: CompletionBatcher) -> None:
    assert batcher.waiting == 0 and batcher.sending == 0 and not batcher._queues
    assert batcher.inner.in_flight == 0


@pytest.mark.integration
async def test_batched_answers_equal_single_answers_over_http(mock_server):
    single = OpenAIHTTPBackend("single", config(mock_server.base_url))
    batcher = CompletionBatcher(OpenAIHTTPBackend("b", config(mock_server.base_url)),
                                MicroBatchConfig(max_prompts=8, window_ms=50))
    try:
        expected = [await single.complete(prompt(i)) for i in range(20)]
        mock_server.reset()
        got = await asyncio.gather(*(batcher.complete(prompt(i)) for i in range(20)))
        assert [c.text for c in got] == [c.text for c in expected]
        assert mock_server.stats()["requests"] == 3  # 8 + 8 + 4
        total = sum(c.usage.completion_tokens for c in got)
        assert total == sum(c.usage.completion_tokens for c in expected)
        assert_idle(batcher)
    finally:
        await single.aclose()
        await batcher.aclose()


def scripted_batcher(max_prompts: int = 8, window_ms: float = 50,
                     **backend) -> CompletionBatcher:
    return CompletionBatcher(ScriptedBackend(**backend),  # type: ignore[arg-type]
                             MicroBatchConfig(max_prompts=max_prompts, window_ms=window_ms))


@pytest.mark.engine_core
async def test_batched_answers_equal_single_answers():
    single = ScriptedBackend()
    batcher = scripted_batcher(8, 50)
    expected = [await single.complete(prompt(i)) for i in range(20)]
    got = await asyncio.gather(*(batcher.complete(prompt(i)) for i in range(20)))
    assert [c.text for c in got] == [c.text for c in expected]
    assert len(batcher.inner.calls) == 3  # 8 + 8 + 4
    assert [len(c.request.prompt) for c in batcher.inner.calls] == [8, 8, 4]
    assert batcher.batches == 3 and batcher.batched_prompts == 20
    total = sum(c.usage.completion_tokens for c in got)
    assert total == sum(c.usage.completion_tokens for c in expected)
    # different params never share a request
    await asyncio.gather(batcher.complete(prompt(1)), batcher.complete(prompt(2, top_p=0.5)))
    assert len(batcher.inner.calls) == 5
    assert_idle(batcher)
    await batcher.aclose()
    await assert_settled()


@pytest.mark.virtual_clock
async def test_a_full_batch_goes_at_once_and_the_rest_when_the_window_ends():
    batcher = scripted_batcher(8, 50, default=Step(latency=0.5))
    loop = asyncio.get_running_loop()
    first = [asyncio.create_task(batcher.complete(prompt(i))) for i in range(10)]
    await asyncio.sleep(0.02)
    late = [asyncio.create_task(batcher.complete(prompt(i))) for i in range(10, 12)]
    await asyncio.gather(*first, *late)
    # 8 at once; the other 2 wait for the oldest's window (0.05), joined by the late 2
    assert batcher.inner.started_at == pytest.approx([0.0, 0.05])
    assert [len(c.request.prompt) for c in batcher.inner.calls] == [8, 4]
    assert loop.time() == pytest.approx(0.55)
    assert_idle(batcher)
    await batcher.aclose()
    await assert_settled()


@pytest.mark.engine_core
async def test_failed_batches_are_retried_per_member():
    rng = random.Random(3)
    backend = ScriptedBackend(lambda request, index: fail(ServerError("500"), latency=0.001)
                              if rng.random() < 0.5 else Step(latency=0.001))
    # half the requests fail: enough attempts that no member runs out (0.5**30)
    batcher = CompletionBatcher(backend, MicroBatchConfig(max_prompts=4, window_ms=5))  # type: ignore[arg-type]
    client = make_client(batcher, cap=64, max_attempts=30, base_s=0.01, max_s=0.05)
    got = await asyncio.gather(*(client.call(prompt(i)) for i in range(16)))
    assert [c.text for c in got] == [f"Answer about: Prompt number {i} about mills"
                                     for i in range(16)]
    assert client.retries > 0 and client.errors["ServerError"] > 0
    assert len(backend.calls) < 16 + client.retries  # members shared their retries' requests
    assert client.in_flight == 0
    assert_idle(client.backend)
    await client.aclose()
    await assert_settled(client)


@pytest.mark.virtual_clock
async def test_cancelled_members_leave_the_queue_and_nothing_leaks():
    batcher = scripted_batcher(8, 200, default=Step(latency=0.3))
    tasks = [asyncio.create_task(batcher.complete(prompt(i))) for i in range(5)]
    await asyncio.sleep(0.02)
    assert batcher.waiting == 5
    for task in tasks[:2]:
        task.cancel()
    await asyncio.wait(tasks[:2])
    assert batcher.waiting == 3  # the cancelled ones are no longer queued
    await asyncio.sleep(0.25)  # window over (0.2): the batch of 3 is out until 0.5
    assert batcher.sending == 1 and batcher.batched_prompts == 3
    assert batcher.inner.started_at == pytest.approx([0.2])
    tasks[2].cancel()  # cancelled while its batch is out: the others still get answers
    done = await asyncio.gather(*tasks[3:])
    assert all(c.text for c in done) and tasks[2].cancelled()
    assert len(batcher.inner.calls) == 1 and batcher.inner.outcomes == ["ok"]
    assert_idle(batcher)
    await batcher.aclose()
    await assert_settled()


@pytest.mark.engine_core
async def test_close_cancels_queued_and_sent_batches():
    batcher = scripted_batcher(2, 1000, default=Step(latency=5.0))
    tasks = [asyncio.create_task(batcher.complete(prompt(i))) for i in range(3)]
    await asyncio.sleep(0.01)
    assert batcher.sending == 1 and batcher.waiting == 1  # one full batch out, one queued
    await batcher.aclose()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert batcher.inner.outcomes == ["cancelled"] and batcher.inner.closed
    assert_idle(batcher)
    await assert_settled()


@pytest.mark.engine_core
async def test_streamed_and_chat_requests_pass_through():
    batcher = scripted_batcher(8, 1000)
    request = Request("mock", prompt="p", stream=True, params={"max_tokens": 5})
    streamed = [d async for d in batcher.stream(request)]
    assert streamed and batcher.batches == 0
    fanned = await batcher.complete(prompt(2, n=2))  # n > 1: indices are not prompts
    chat = await batcher.complete(Request("mock", messages=[{"role": "user", "content": "c"}]))
    assert fanned.text and chat.text and batcher.batches == 0
    assert [c.request.prompt for c in batcher.inner.calls[:2]] == ["p", prompt(2).prompt]
    assert_idle(batcher)
    await batcher.aclose()
    await assert_settled()
