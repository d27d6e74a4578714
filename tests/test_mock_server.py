"""The mock server, exercised through real HTTP against the spawned process."""

from __future__ import annotations

import asyncio
import random
import re
import subprocess
import sys
import time

import aiohttp
import jsonschema
import orjson
import pytest
import pytest_asyncio

from gristmill.backends.mock.faults import RateLimiter, parse_latency
from gristmill.scheduling.tokens import count_messages, estimate_tokens

from gristmill.backends.mock.process import MockServerProcess as MockServer
from tests.conftest import ROOT

pytestmark = pytest.mark.timeout(30)

CHAT, TEXT = "/v1/chat/completions", "/v1/completions"
SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 10, "maxLength": 40},
        "level": {"enum": ["easy", "medium", "hard"]},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
        "ratio": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "public": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 20},
                 "minItems": 2, "maxItems": 4},
        "pairs": {"type": "array", "items": {"$ref": "#/$defs/Pair"}},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["title", "level", "score", "pairs"],
    "additionalProperties": False,
    "$defs": {"Pair": {"type": "object", "additionalProperties": False,
                       "properties": {"question": {"type": "string"},
                                      "answer": {"type": "string"}},
                       "required": ["question", "answer"]}},
}


def chat(content: str = "Tell me about rivers.", **extra: object) -> dict:
    return {"model": "test-model", "messages": [{"role": "user", "content": content}], **extra}


async def post(session: aiohttp.ClientSession, url: str, body: object) -> tuple[int, dict, dict]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with session.post(url, data=data, headers={"Content-Type": "application/json"}) as r:
        return r.status, dict(r.headers), orjson.loads(await r.read())


async def stream(session: aiohttp.ClientSession, url: str, body: dict) -> list:
    """SSE events as dicts, '[DONE]' as the string."""
    async with session.post(url, json={**body, "stream": True}) as r:
        assert r.status == 200 and r.content_type == "text/event-stream"
        return [_event(line) async for line in r.content if line.strip()]


def _event(line: bytes) -> dict | str:
    assert line.startswith(b"data: ")
    payload = line[6:].strip()
    return "[DONE]" if payload == b"[DONE]" else orjson.loads(payload)


def chat_text(events: list) -> str:
    return "".join(e["choices"][0]["delta"].get("content", "") for e in events
                   if isinstance(e, dict) and e["choices"])


@pytest.fixture(scope="module", params=["aiohttp", "fast"])
def server(request):
    """The full mock, and its fast edge (`--fast`, the benchmarks' server): the same answers,
    errors and /stats from both."""
    edge = ["--fast"] if request.param == "fast" else []
    with MockServer(*edge, "--model", "test-model", "--model", "m", "--record-arrivals") as s:
        yield s


@pytest.fixture(scope="module")
def limited():
    with MockServer("--rpm", "5", "--tpm", "300", "--rate-window-s", "1",
                    "--output-tokens", "10") as s:
        yield s


@pytest_asyncio.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


async def test_startup_line_health_and_models(server, session):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url)
    async with session.get(server.url + "/health") as r:
        assert r.status == 200
    async with session.get(server.base_url + "/models") as r:
        ids = [m["id"] for m in (await r.json())["data"]]
    assert ids == ["test-model", "m"]


async def test_chat_answer_is_deterministic_prose_with_usage(server, session):
    body = chat()
    status, _, first = await post(session, server.url + CHAT, body)
    _, _, again = await post(session, server.url + CHAT, dict(reversed(list(body.items()))))
    _, _, other = await post(session, server.url + CHAT, chat("Tell me about lakes."))
    assert status == 200 and first["id"].startswith("cmpl-") and first["model"] == "test-model"
    text = first["choices"][0]["message"]["content"]
    assert text == again["choices"][0]["message"]["content"]
    assert text != other["choices"][0]["message"]["content"]
    usage = first["usage"]
    assert usage["prompt_tokens"] == count_messages(body["messages"])
    assert usage["completion_tokens"] == len(text.split())
    assert 40 <= usage["completion_tokens"] <= 120
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert first["choices"][0]["finish_reason"] == "stop" and text.endswith(".")
    sentences = [s for s in re.split(r"(?<=\.) ", text)]
    assert len(sentences) == len(set(sentences)) >= 3
    assert all(s[0].isupper() for s in sentences)


async def test_stream_matches_non_stream(server, session):
    body = chat("Stream this.", stream_options={"include_usage": True})
    _, _, whole = await post(session, server.url + CHAT, chat("Stream this."))
    events = await stream(session, server.url + CHAT, body)
    assert events[-1] == "[DONE]"
    usage_chunk, final = events[-2], events[-3]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"] == whole["usage"]
    assert final["choices"][0]["finish_reason"] == "stop"
    assert chat_text(events) == whole["choices"][0]["message"]["content"]
    content_events = [e for e in events[:-3]]
    assert len(content_events) == whole["usage"]["completion_tokens"]
    assert content_events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(e["object"] == "chat.completion.chunk" for e in content_events)
    plain = await stream(session, server.url + CHAT, chat("Stream this."))
    assert all("usage" not in e for e in plain[:-1]) and chat_text(plain) == chat_text(events)


async def test_max_tokens_caps_with_finish_reason_length(server, session):
    for key in ("max_tokens", "max_completion_tokens"):
        body = chat("Long answer please.", **{key: 7})
        _, _, out = await post(session, server.url + CHAT, body)
        assert out["usage"]["completion_tokens"] == 7
        assert out["choices"][0]["finish_reason"] == "length"
        events = await stream(session, server.url + CHAT, body)
        assert chat_text(events) == out["choices"][0]["message"]["content"]
        assert events[-2]["choices"][0]["finish_reason"] == "length"
    _, _, roomy = await post(session, server.url + CHAT, chat(max_tokens=1000))
    assert roomy["choices"][0]["finish_reason"] == "stop"


async def test_json_schema_and_json_object(server, session):
    fmt = {"type": "json_schema", "json_schema": {"name": "card", "schema": SCHEMA}}
    for i in range(5):
        _, _, out = await post(session, server.url + CHAT, chat(f"card {i}", response_format=fmt))
        value = orjson.loads(out["choices"][0]["message"]["content"])
        jsonschema.validate(value, SCHEMA)
        assert set(value) == set(SCHEMA["properties"]) and len(value["pairs"]) == 3
        assert out["usage"]["completion_tokens"] == len(out["choices"][0]["message"]["content"].split(" "))
    events = await stream(session, server.url + CHAT, chat("card 4", response_format=fmt))
    assert chat_text(events) == out["choices"][0]["message"]["content"]
    _, _, obj = await post(session, server.url + CHAT,
                           chat(response_format={"type": "json_object"}))
    value = orjson.loads(obj["choices"][0]["message"]["content"])
    assert isinstance(value["text"], str) and value["text"].endswith(".")


async def test_completions_with_a_list_prompt(server, session):
    prompts = ["Once upon a time", "The recipe calls for"]
    _, _, batch = await post(session, server.url + TEXT, {"model": "m", "prompt": prompts})
    assert batch["object"] == "text_completion"
    assert [c["index"] for c in batch["choices"]] == [0, 1]
    for prompt, choice in zip(prompts, batch["choices"]):
        _, _, alone = await post(session, server.url + TEXT, {"model": "m", "prompt": [prompt]})
        assert alone["choices"][0]["text"] == choice["text"]
    assert batch["usage"]["prompt_tokens"] == sum(map(estimate_tokens, prompts))
    assert batch["usage"]["completion_tokens"] == sum(len(c["text"].split())
                                                      for c in batch["choices"])
    events = await stream(session, server.url + TEXT, {"model": "m", "prompt": prompts})
    for choice in batch["choices"]:
        parts = [e["choices"][0]["text"] for e in events[:-1]
                 if e["choices"][0]["index"] == choice["index"]]
        assert "".join(parts) == choice["text"]


async def test_bad_requests_get_400(server, session):
    server.reset()
    bodies = [b"{not json", {"messages": [{"role": "user", "content": "x"}]},
              {"model": "m"}, {"model": "m", "messages": []}]
    for body in bodies:
        status, _, out = await post(session, server.url + CHAT, body)
        assert status == 400 and out["error"]["type"] == "invalid_request_error"
        assert out["error"]["message"] and out["error"]["code"]
    status, _, _ = await post(session, server.url + TEXT, {"model": "m", "prompt": 3})
    assert status == 400
    stats = server.stats()
    assert stats["status_counts"] == {"400": 5} and stats["requests"] == 5


async def test_stats_count_concurrency_tokens_and_arrivals(server, session):
    server.reset()
    sent = time.monotonic()
    outs = await asyncio.gather(*(post(session, server.url + CHAT, chat(f"q{i}"))
                                  for i in range(5)))
    async with session.post(server.url + CHAT + "?api-version=7", json=chat("q5"),
                            headers={"X-Team": "mill"}) as r:
        outs.append((r.status, {}, await r.json()))
    stats = server.stats()
    assert stats["last_request"]["query"] == {"api-version": "7"}
    assert stats["last_request"]["headers"]["x-team"] == "mill"
    assert stats["requests"] == stats["completed"] == 6 and stats["status_counts"] == {"200": 6}
    assert stats["prompt_tokens"] == sum(o[2]["usage"]["prompt_tokens"] for o in outs)
    assert stats["completion_tokens"] == sum(o[2]["usage"]["completion_tokens"] for o in outs)
    assert stats["tokens_sent"] == stats["completion_tokens"]
    assert stats["max_requests_in_window"] == 6
    assert stats["max_tokens_in_window"] == stats["prompt_tokens"] + stats["completion_tokens"]
    arrivals = stats["arrivals"]
    assert len(arrivals) == 6 and arrivals == sorted(arrivals) and arrivals[0] > 0
    # on the monotonic clock every process shares: after the first send, before now
    origin = stats["arrivals_origin"]
    assert sent - 0.01 <= origin + arrivals[0] <= origin + arrivals[-1] <= time.monotonic()
    server.reset()
    zeroed = server.stats()
    assert zeroed["requests"] == zeroed["tokens_sent"] == zeroed["max_requests_in_window"] == 0
    assert zeroed["arrivals"] == [] and zeroed["status_counts"] == {}


async def test_peak_in_flight_under_concurrency_with_latency(session):
    with MockServer("--latency-ms", "300") as s:
        # held 300 ms each, all at once (the wall time: `python -m benchmarks.mock_timing`)
        outs = await asyncio.gather(*(post(session, s.url + CHAT, chat(f"c{i}"))
                                      for i in range(12)))
        assert all(o[0] == 200 for o in outs)
        stats = s.stats()
        assert stats["peak_in_flight"] == 12 and stats["in_flight"] == 0
        assert stats["completed"] == 12


@pytest.mark.parametrize("args, status", [(("--rate-429", "1", "--retry-after", "0.25"), 429),
                                          (("--rate-500", "1"), 500)])
async def test_injected_error_statuses(session, args, status):
    with MockServer(*args) as s:
        code, headers, out = await post(session, s.url + CHAT, chat())
        assert code == status and out["error"]["message"]
        if status == 429:
            assert headers["Retry-After"] == "0.25"
        stats = s.stats()
        assert stats["status_counts"] == {str(status): 1} and stats["completed"] == 0
        assert stats["faults"] == {str(status): 1}


async def test_reset_drops_the_connection(session):
    with MockServer("--rate-reset", "1") as s:
        with pytest.raises(aiohttp.ClientConnectionError):
            await post(session, s.url + CHAT, chat())
        stats = await s.idle()
        assert stats["faults"] == {"reset": 1} and stats["status_counts"] == {}


async def test_cut_truncates_body_and_stream(server, session):
    body = chat("Cut me off.")
    _, _, full = await post(session, server.url + CHAT, body)
    total = full["usage"]["completion_tokens"]
    with MockServer("--rate-cut", "1") as s:
        async with session.post(s.url + CHAT, json=body) as r:
            assert r.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()
        events = []
        with pytest.raises(aiohttp.ClientPayloadError):
            async with session.post(s.url + CHAT, json={**body, "stream": True}) as r:
                async for line in r.content:
                    if line.strip():
                        events.append(_event(line))
        assert len(events) == total // 2 and "[DONE]" not in events
        assert full["choices"][0]["message"]["content"].startswith(chat_text(events))
        stats = await s.idle()
        assert stats["faults"] == {"cut": 2} and stats["completed"] == 0


async def test_hang_times_out_on_client_and_shutdown_is_clean(session):
    s = MockServer("--rate-hang", "1").start()
    try:
        timeout = aiohttp.ClientTimeout(total=0.4)
        with pytest.raises(asyncio.TimeoutError):
            async with session.post(s.url + CHAT, json=chat(), timeout=timeout) as r:
                await r.read()
        stats = await s.idle()
        assert stats["disconnects"] == 1 and stats["faults"] == {"hang": 1}
        pending = asyncio.ensure_future(post(session, s.url + CHAT, chat()))
        while s.stats()["in_flight"] == 0:
            await asyncio.sleep(0.02)
        s.reset()  # zeroes counters, but in_flight is a gauge of now
        stats = s.stats()
        assert stats["in_flight"] == stats["peak_in_flight"] == 1 and stats["requests"] == 0
    finally:
        assert s.stop() == 0  # a clean exit with a request still hanging
    with pytest.raises(aiohttp.ClientConnectionError):
        await pending


async def test_fault_draws_are_seeded_and_replay_after_reset(session):
    with MockServer("--rate-500", "0.5", "--seed", "7") as s:
        async def statuses() -> list[int]:
            return [(await post(session, s.url + CHAT, chat()))[0] for _ in range(16)]
        first = await statuses()
        s.reset()
        assert await statuses() == first and {200, 500} <= set(first)


async def test_rpm_enforced_with_ratelimit_headers(limited, session):
    limited.reset()
    results = [await post(session, limited.url + CHAT, chat("hi")) for _ in range(7)]
    assert [r[0] for r in results] == [200] * 5 + [429] * 2
    assert [r[1]["x-ratelimit-remaining-requests"] for r in results[:5]] == list("43210")
    assert all(r[2]["usage"]["completion_tokens"] == 10 for r in results[:5])
    for _, headers, _ in results:
        assert headers["x-ratelimit-limit-requests"] == "5"
        assert headers["x-ratelimit-limit-tokens"] == "300"
        assert re.fullmatch(r"\d+(\.\d+)?s", headers["x-ratelimit-reset-requests"])
    retry = float(results[-1][1]["Retry-After"])
    assert 0 < retry <= 1
    await asyncio.sleep(retry + 0.02)
    assert (await post(session, limited.url + CHAT, chat("hi")))[0] == 200
    stats = limited.stats()
    assert stats["rate_limited"] == 2 and stats["max_requests_in_window"] == 7


async def test_tpm_enforced(limited, session):
    limited.reset()
    body = chat("x" * 400)  # 100 + 4 prompt tokens + 10 completion tokens = 114
    results = [await post(session, limited.url + CHAT, body) for _ in range(3)]
    assert [r[0] for r in results] == [200, 200, 429]
    assert [r[1]["x-ratelimit-remaining-tokens"] for r in results] == ["186", "72", "72"]
    assert 0 < float(results[2][1]["Retry-After"]) <= 1
    assert limited.stats()["max_tokens_in_window"] == 3 * 114


async def test_tokens_per_s_paces_and_disconnect_stops_counting(session):
    with MockServer("--tokens-per-s", "50", "--output-tokens", "100") as s:
        # the pace itself (10 tokens in 0.2 s) is measured by `python -m benchmarks.mock_timing`
        status, _, out = await post(session, s.url + CHAT, chat(max_tokens=10))
        assert status == 200
        s.reset()
        seen = 0
        async with session.post(s.url + CHAT, json=chat(stream=True)) as r:
            async for line in r.content:
                seen += bool(line.strip())
                if seen == 5:
                    break
            r.close()  # drop the connection mid-stream
        stats = await s.idle()
        assert stats["disconnects"] == 1 and stats["completed"] == 0
        sent = stats["tokens_sent"]
        assert 5 <= sent < 20
        await asyncio.sleep(0.3)
        assert s.stats()["tokens_sent"] == sent


def test_latency_specs_and_limiter_arithmetic():
    rng = random.Random(1)
    assert parse_latency("0").is_zero and parse_latency("100").sample(rng) == 0.1
    assert all(0.05 <= parse_latency("50-200").sample(rng) <= 0.2 for _ in range(100))
    mean = sum(parse_latency("exp:100").sample(rng) for _ in range(4000)) / 4000
    assert 0.09 < mean < 0.11
    with pytest.raises(ValueError):
        parse_latency("200-50")
    limiter = RateLimiter(rpm=2, tpm=None, window=10.0)
    assert limiter.admit(0.0, 1) == limiter.admit(4.0, 1) == 0.0
    assert limiter.admit(5.0, 1) == 5.0  # the first request leaves the window at t=10
    assert limiter.headers(5.0)["x-ratelimit-reset-requests"] == "5s"
    assert limiter.admit(10.0, 1) == 0.0


def test_invalid_options_exit_with_usage_error():
    for args in (["--rate-429", "0.6", "--rate-500", "0.6"], ["--latency-ms", "soon"]):
        proc = subprocess.run([sys.executable, "-m", "gristmill.backends.mock.server", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=20)
        assert proc.returncode == 2 and "error" in proc.stderr
