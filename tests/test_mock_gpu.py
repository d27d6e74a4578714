"""Simulated-GPU mode of the mock server: the pure scheduler, then the spawned process."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest
import pytest_asyncio

from gristmill.backends.mock.gpu import GpuScheduler, Seq

pytestmark = pytest.mark.timeout(30)

CHAT = "/v1/chat/completions"
NAMES = ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
         "vllm:gpu_cache_usage_perc", "vllm:num_preemptions_total", "vllm:prompt_tokens_total",
         "vllm:generation_tokens_total", "vllm:request_success_total")


# -- the scheduler, without a loop ---------------------------------------------------------
def run_step(sched: GpuScheduler, now: float = 0.0) -> list[Seq]:
    return sched.finish_step(sched.plan_step(now))


def test_batch_cap_fifo_and_one_token_per_step_for_each():
    sched = GpuScheduler(max_running=2)
    seqs = [sched.add(Seq(10, target)) for target in (1, 3, 2, 2)]
    plan = sched.plan_step(0.0)
    assert plan.seqs == plan.admitted == tuple(seqs[:2]) and list(sched.waiting) == seqs[2:]
    assert sched.finish_step(plan) == seqs[:2]  # both made a token; the first is done
    assert seqs[0].done and sched.running == [seqs[1]]
    assert sched.plan_step(0.0).admitted == (seqs[2],)  # the head of the queue, not seqs[3]
    while sched.busy:
        run_step(sched)
    assert all(s.done and s.generated == s.target for s in seqs)
    assert sched.generation_tokens == 8 and sched.prompt_tokens == 40
    assert sched.steps < sched.generation_tokens  # a batch shares its steps


def test_step_time_grows_with_the_batch_and_prefill():
    sched = GpuScheduler(max_running=8, step_ms=10, step_ms_per_seq=0.5, prefill_tokens_per_ms=50)
    for _ in range(2):
        sched.add(Seq(100, 5))
    first = sched.plan_step(0.0)
    assert first.prefill_tokens == 200 and first.duration == pytest.approx(0.015)  # 10+1+4 ms
    sched.finish_step(first)
    assert sched.plan_step(0.0).duration == pytest.approx(0.011)  # no newcomer: 10 + 2 * 0.5
    assert sched.step_ms_for(64) == pytest.approx(42.0)


def test_kv_budget_gates_admission_but_never_starves_a_lone_prompt():
    sched = GpuScheduler(max_running=8, kv_tokens=250)
    a, b, c = (sched.add(Seq(100, 10)) for _ in range(3))
    assert sched.plan_step(0.0).admitted == (a, b)  # c would need 200 + 101 > 250
    assert sched.kv_used == 200 and sched.kv_usage == pytest.approx(0.8)
    assert list(sched.waiting) == [c]
    huge = GpuScheduler(kv_tokens=50)
    big = huge.add(Seq(80, 2))
    assert huge.plan_step(0.0).admitted == (big,)  # alone, over budget, yet it runs
    while huge.busy:
        run_step(huge)
    assert big.done and huge.preemptions == 0 and huge.kv_used == 0


def test_preemption_sends_the_newest_to_the_front_and_loses_its_progress():
    sched = GpuScheduler(max_running=8, kv_tokens=210)
    old, new, third = sched.add(Seq(100, 50)), sched.add(Seq(100, 50)), sched.add(Seq(100, 50))
    plan = sched.plan_step(0.0)
    assert plan.admitted == (old, new)
    sched.finish_step(plan)
    for _ in range(4):
        run_step(sched)
    assert sched.preemptions == 0 and sched.kv_used == 210  # 5 tokens each: just fits
    touched = run_step(sched)  # both reach 6 tokens: 212 > 210
    assert touched == [old, new] and sched.preemptions == 1
    assert sched.running == [old] and list(sched.waiting) == [new, third]
    assert new.generated == 0 and new.emitted == 6 and old.generated == 6
    assert sched.kv_used == 106 and sched.generation_tokens == 12
    plan = sched.plan_step(0.0)
    assert plan.admitted == (new,)  # back first, ahead of `third`
    assert sched.finish_step(plan) == [old]  # `new` regenerates what a client already has
    assert run_step(sched) == [old]
    assert new.generated == 2 and new.emitted == 6 and sched.generation_tokens == 16


def test_cancel_leaves_the_queue_at_once_and_the_batch_at_a_step_boundary():
    sched = GpuScheduler(max_running=1, kv_tokens=1000)
    running, queued = sched.add(Seq(100, 10)), sched.add(Seq(100, 10))
    run_step(sched)
    sched.cancel(queued)
    assert not sched.waiting
    plan = sched.plan_step(0.0)
    sched.cancel(running)
    assert sched.running == [running]  # the step under way is paid for
    assert sched.finish_step(plan) == [] and running.generated == 1
    assert sched.kv_used == 0 and not sched.busy and sched.plan_step(0.0).seqs == ()
    zero = sched.add(Seq(5, 0))  # max_tokens 0: done in its prefill step, no token
    assert run_step(sched) == [zero] and zero.done and sched.generation_tokens == 1


# -- the server process -------------------------------------------------------------------
def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {name: value summed over its label sets}; every sample names
    the model."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        name, _, labels = series.partition("{")
        assert 'model_name="mock"' in labels, line
        out[name] = out.get(name, 0.0) + float(value)
    return out


def chat(content: str, **extra: object) -> dict:
    return {"model": "mock", "messages": [{"role": "user", "content": content}], **extra}


@pytest_asyncio.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


async def metrics(session: aiohttp.ClientSession, server) -> dict[str, float]:
    async with session.get(server.url + "/metrics") as r:
        assert r.status == 200 and r.content_type == "text/plain"
        return parse_metrics(await r.text())


async def ask(session: aiohttp.ClientSession, server, body: dict) -> dict:
    async with session.post(server.url + CHAT, json=body) as r:
        assert r.status == 200
        return await r.json()


async def stream_text(session: aiohttp.ClientSession, server, body: dict) -> tuple[str, int]:
    """The streamed text, and how many tokens the server had generated in all when the
    first content event arrived (fewer than the whole answer: it came as it was made)."""
    parts, generated_at_first = [], None
    async with session.post(server.url + CHAT, json={**body, "stream": True}) as r:
        async for line in r.content:
            if line.startswith(b"data: {"):
                if generated_at_first is None:
                    generated_at_first = (await metrics(session, server))[
                        "vllm:generation_tokens_total"]
                chunk = orjson.loads(line[6:])
                parts += [c["delta"].get("content", "") for c in chunk["choices"]]
    return "".join(parts), int(generated_at_first or 0)


async def test_metrics_without_gpu_count_real_requests(mock_server_factory, session):
    server = mock_server_factory("--output-tokens", "7")
    outs = [await ask(session, server, chat(f"q{i}")) for i in range(3)]
    outs.append(await ask(session, server, chat("capped", max_tokens=2)))
    m = await metrics(session, server)
    assert set(m) == set(NAMES)
    assert m["vllm:request_success_total"] == 4 and m["vllm:num_requests_running"] == 0
    assert m["vllm:generation_tokens_total"] == 3 * 7 + 2
    assert m["vllm:prompt_tokens_total"] == sum(o["usage"]["prompt_tokens"] for o in outs)
    assert m["vllm:kv_cache_usage_perc"] == m["vllm:num_preemptions_total"] == 0
    assert server.stats()["gpu"] is None


async def test_batch_saturates_then_queues_and_shares_steps(mock_server_factory, session):
    server = mock_server_factory("--gpu", "--max-running", "4", "--output-tokens", "40")
    pending = [asyncio.ensure_future(ask(session, server, chat(f"s{i}"))) for i in range(10)]
    m = await metrics(session, server)
    # Newcomers join at step boundaries: sample until all ten are in and the batch is full.
    while m["vllm:num_requests_running"] < 4 or sum(
            m[f"vllm:num_requests_{k}"] for k in ("running", "waiting")) < 10:
        m = await metrics(session, server)
    assert m["vllm:num_requests_running"] == 4 and m["vllm:num_requests_waiting"] == 6
    outs = await asyncio.gather(*pending)
    gpu = server.stats()["gpu"]
    assert gpu["running"] == gpu["waiting"] == 0 and gpu["generation_tokens"] == 400
    assert 100 <= gpu["steps"] < 400 / 2  # 400 tokens, 4 a step at best; not 400 steps
    m = await metrics(session, server)
    assert m["vllm:request_success_total"] == 10 and m["vllm:generation_tokens_total"] == 400
    assert m["vllm:prompt_tokens_total"] == sum(o["usage"]["prompt_tokens"] for o in outs)


async def test_throughput_grows_with_concurrency(mock_server_factory, session):
    # Throughput in tokens per simulated step (the wall-clock rate is measured by
    # `python -m benchmarks.mock_timing`): a step makes a token for every running sequence.
    server = mock_server_factory("--gpu", "--max-running", "8", "--output-tokens", "30")

    async def run(concurrency: int, requests: int) -> dict:
        server.reset()
        for wave in range(0, requests, concurrency):
            await asyncio.gather(*(ask(session, server, chat(f"t{wave + i}"))
                                   for i in range(concurrency)))
        return server.stats()["gpu"]

    alone = await run(1, 3)
    batch = await run(8, 16)
    assert alone["steps"] == alone["generation_tokens"] == 90  # one token per step
    assert batch["generation_tokens"] == 480 and batch["steps"] < 480 / 4
    per_step = lambda gpu: gpu["generation_tokens"] / gpu["steps"]  # noqa: E731
    assert per_step(batch) > 3 * per_step(alone)  # 8 at a time: ~7x


async def test_small_kv_budget_preempts_and_wastes_tokens(mock_server_factory, session):
    server = mock_server_factory("--gpu", "--max-running", "16", "--kv-tokens", "300",
                                 "--output-tokens", "40")
    outs = await asyncio.gather(*(ask(session, server, chat(f"k{i}")) for i in range(16)))
    delivered = sum(o["usage"]["completion_tokens"] for o in outs)
    m = await metrics(session, server)
    assert delivered == 16 * 40 and m["vllm:request_success_total"] == 16
    assert m["vllm:num_preemptions_total"] > 0
    assert m["vllm:generation_tokens_total"] > delivered  # regenerated after preemption
    assert m["vllm:kv_cache_usage_perc"] == 0 and server.stats()["gpu"]["preemptions"] > 0


async def test_streaming_matches_non_streaming_and_arrives_step_by_step(mock_server_factory,
                                                                       session):
    server = mock_server_factory("--gpu", "--max-running", "4", "--output-tokens", "30")
    bodies = [chat(f"same text {i}") for i in range(4)]
    whole = await asyncio.gather(*(ask(session, server, b) for b in bodies))
    before = (await metrics(session, server))["vllm:generation_tokens_total"]
    streamed = await asyncio.gather(*(stream_text(session, server, b) for b in bodies))
    for out, (text, generated_at_first) in zip(whole, streamed):
        assert text == out["choices"][0]["message"]["content"]
        # 4 x 30 tokens in 30 steps: the first token arrived long before the last was made
        assert generated_at_first - before < 4 * 30 / 2
    capped = await ask(session, server, chat("cap", max_tokens=3))
    assert capped["usage"]["completion_tokens"] == 3
    assert (await stream_text(session, server, chat("cap", max_tokens=3)))[0] == \
        capped["choices"][0]["message"]["content"]
    assert server.stats()["completed"] == 10


async def test_disconnect_frees_the_slot(mock_server_factory, session):
    server = mock_server_factory("--gpu", "--max-running", "1", "--output-tokens", "500")
    async with session.post(server.url + CHAT, json=chat("long", stream=True)) as r:
        async for line in r.content:
            if line.startswith(b"data: {"):
                break  # the first step's token: the sequence is running
        r.close()
    with pytest.raises(asyncio.TimeoutError):  # a long non-streaming one, abandoned
        await asyncio.wait_for(ask(session, server, chat("slow")), 0.2)
    out = await ask(session, server, chat("quick", max_tokens=5))
    assert out["usage"]["completion_tokens"] == 5
    stats = await server.idle()
    # the one slot was freed by both disconnects: had either sequence kept it, the quick one
    # would have waited for its 500 steps
    assert stats["gpu"]["steps"] < 500
    assert stats["disconnects"] == 2 and stats["completed"] == 1
    assert stats["gpu"]["running"] == stats["gpu"]["waiting"] == 0


async def test_faults_apply_before_joining_the_batch(mock_server_factory, session):
    server = mock_server_factory("--gpu", "--rate-500", "1")
    async with session.post(server.url + CHAT, json=chat("x")) as r:
        assert r.status == 500
    assert server.stats()["gpu"]["steps"] == 0
