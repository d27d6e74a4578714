"""An answer that breaks the wire format — bad JSON in a body or an SSE event, a null or
missing field, an HTML page with 200, a stream that ends before its finish — is one error
type, `MalformedAnswer`, raised at the backend's edge and retried on its own budget; once
that is spent the item is a reject, and the run goes on (and exits 0)."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys

import pytest

from gristmill.backends.micro_batch import CompletionBatcher
from gristmill.backends.openai_http.sse import SSEDecoder
from gristmill.backends.openai_http.wire import body_of, first_answer, read_chunk
from gristmill.errors import MalformedAnswer, ServerError
from gristmill.protocol import Request
from gristmill.scheduling.retry import RetryPolicy, retry_delay
from gristmill.backends.mock.faults import WireDrawer
from tests.conftest import ROOT, pipeline_config
from tests.test_cli import gristmill, read_jsonl, write_config
from tests.test_retries import CHAT, client_for

STREAM_KINDS = ("sse-json", "html", "null-delta", "truncated")
BODY_KINDS = ("body-json", "html", "null-delta", "truncated")


# -- reading answers ------------------------------------------------------------------------
def test_a_bad_sse_event_is_a_malformed_answer():
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"choices": []}\n\ndata: {not js') == [{"choices": []}]
    with pytest.raises(MalformedAnswer, match="bad JSON in an SSE event"):
        decoder.feed(b"on\n\n")


@pytest.mark.parametrize("chunk, chat", [
    ([], True),  # not an object
    ({"id": "x"}, True),  # no choices, no usage
    ({"choices": None}, True),
    ({"choices": [{"index": 0, "delta": None, "finish_reason": None}]}, True),
    ({"choices": [{"index": 0, "finish_reason": "stop"}]}, True),  # no delta
    ({"choices": [None]}, True),
    ({"choices": [{"index": 0, "delta": {"content": 3}}]}, True),
    ({"choices": [{"index": 0, "text": None}]}, False),
    ({"choices": [{"index": 0, "text": "a", "finish_reason": 1}]}, False),
    ({"choices": [], "usage": "many"}, False),
])
def test_a_chunk_without_its_fields_is_a_malformed_answer(chunk, chat):
    with pytest.raises(MalformedAnswer):
        read_chunk(chunk, chat, [], [])


def test_well_formed_chunks_are_read():
    parts: list[str] = []
    assert read_chunk({"choices": [{"delta": {"content": "a"}}]}, True, parts, []) == (None, None)
    assert read_chunk({"choices": [{"delta": {}, "finish_reason": "stop"}]}, True,
                      parts, []) == ("stop", None)
    _, usage = read_chunk({"usage": {"prompt_tokens": 2, "completion_tokens": 1}}, True, parts, [])
    assert parts == ["a"] and usage.total_tokens == 3
    with pytest.raises(ServerError, match="boom"):  # a failure the server reported
        read_chunk({"error": {"message": "boom"}}, True, parts, [])


@pytest.mark.parametrize("raw, chat", [
    (b"<html>busy</html>", True),
    (b'{"choices": null}', True),
    (b'{"choices": []}', True),
    (b'{"choices": [{"message": null}]}', True),
    (b'{"choices": [{"text": null}]}', False),
    (b"[1, 2]", False),
])
def test_a_body_without_its_fields_is_a_malformed_answer(raw, chat):
    with pytest.raises(MalformedAnswer):
        first_answer(body_of(raw, "text/html"), chat)


def test_the_malformed_budget_is_apart_from_the_transient_budget():
    policy = RetryPolicy(max_attempts=2, base_s=0.0, max_s=0.0, malformed_retries=2)
    rng, bad, reset = random.Random(0), MalformedAnswer("x"), ServerError("y")
    # attempts 1-2 malformed: retried; attempt 3 transient: the first of its 2 attempts
    assert retry_delay(policy, bad, 1, rng, malformed=1) == 0.0
    assert retry_delay(policy, bad, 2, rng, malformed=2) == 0.0
    assert retry_delay(policy, reset, 3, rng, malformed=2) == 0.0
    assert retry_delay(policy, reset, 4, rng, malformed=2) is None  # 2 transient: spent
    assert retry_delay(policy, bad, 4, rng, malformed=3) is None  # 3 malformed: spent
    none = RetryPolicy(max_attempts=6, malformed_retries=0)
    assert retry_delay(none, bad, 1, rng, malformed=1) is None


# -- the mock server's broken answers -------------------------------------------------------
def test_broken_answers_are_drawn_per_arrival_from_the_seed():
    def draws(seed):
        drawer = WireDrawer(0.3, ("sse-json", "body-json", "html"), seed)
        return [None if (pick := drawer.draw()) is None else (drawer.kind(pick, True),
                                                              drawer.kind(pick, False))
                for _ in range(200)]
    first = draws(1)
    assert first == draws(1) and first != draws(2)
    broken = [d for d in first if d is not None]
    assert 30 <= len(broken) <= 90
    assert {d[0] for d in broken} == {"sse-json", "html"}  # what fits a stream
    assert {d[1] for d in broken} == {"body-json", "html"}  # what fits a body
    assert WireDrawer(0.0, ("html",)).draw() is None


@pytest.mark.parametrize("args, named", [
    (["--bad-wire-kinds", "html,nope"], "--bad-wire-kinds"),
    (["--bad-wire-rate", "1.5"], "--bad-wire-rate"),
    (["--fast", "--bad-wire-rate", "0.1"], "--bad-wire-rate"),  # refused by the fast edge
])
def test_bad_wire_options_are_checked(args, named):
    proc = subprocess.run([sys.executable, "-m", "gristmill.backends.mock.server", "--port", "0",
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and named in proc.stderr


# -- a real server that breaks its answers --------------------------------------------------
def assert_nothing_leaked(client) -> None:
    assert client.in_flight == 0 and client.pool.waiting == 0, "permit"
    http = getattr(client.backend, "inner", client.backend)  # a batcher wraps it
    assert http.in_flight == 0, "request in flight"


def kind_cases():
    return ([pytest.param(k, True, id=f"stream-{k}") for k in STREAM_KINDS]
            + [pytest.param(k, False, id=f"body-{k}") for k in BODY_KINDS])


@pytest.mark.parametrize("kind, stream", kind_cases())
async def test_each_kind_is_retried_on_its_budget_then_raised(mock_server_factory, kind,
                                                              stream):
    server = mock_server_factory("--bad-wire-rate", "1", "--bad-wire-kinds", kind)
    client = client_for(server.base_url, retry={"max_attempts": 5, "base_s": 0.001,
                                                "max_s": 0.002, "malformed_retries": 2})
    try:
        with pytest.raises(MalformedAnswer) as caught:
            await client.call(Request("mock", messages=CHAT, stream=stream))
        assert_nothing_leaked(client)
    finally:
        await client.aclose()
    assert caught.value.attempts == 3 and "malformed answer" in str(caught.value)
    stats = await server.idle()
    assert stats["requests"] == 3 and stats["wire_faults"] == {kind: 3}  # not max_attempts
    assert client.retries == 2 and client.errors == {"MalformedAnswer": 3}


@pytest.mark.parametrize("kind", ["null-delta", "truncated"])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "body"])
async def test_completions_answers_are_checked_too(mock_server_factory, kind, stream):
    server = mock_server_factory("--bad-wire-rate", "1", "--bad-wire-kinds", kind)
    client = client_for(server.base_url, api="completions",
                        retry={"max_attempts": 5, "base_s": 0.001, "max_s": 0.002,
                               "malformed_retries": 1})
    try:
        with pytest.raises(MalformedAnswer):
            await client.call(Request("mock", prompt="Mills?", stream=stream))
        assert_nothing_leaked(client)
    finally:
        await client.aclose()
    assert (await server.idle())["requests"] == 2


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "body"])
async def test_broken_answers_are_retried_to_the_whole_answer(mock_server_factory, stream):
    clean = mock_server_factory()
    server = mock_server_factory("--bad-wire-rate", "0.5", "--seed", "4")
    client = client_for(server.base_url, retry={"max_attempts": 2, "base_s": 0.001,
                                                "max_s": 0.002, "malformed_retries": 20})
    reference = client_for(clean.base_url)
    requests = [Request("mock", messages=[{"role": "user", "content": f"Mill {i}?"}],
                        stream=stream) for i in range(16)]
    try:
        got = await asyncio.gather(*(client.call(r) for r in requests))
        want = await asyncio.gather(*(reference.call(r) for r in requests))
        assert_nothing_leaked(client)
    finally:
        await client.aclose()
        await reference.aclose()
    assert [c.text for c in got] == [c.text for c in want]
    faults = sum(server.stats()["wire_faults"].values())
    assert faults > 0 and client.errors == {"MalformedAnswer": faults}
    assert client.retries == faults


@pytest.mark.parametrize("kind", ["body-json", "null-delta"])
async def test_each_member_of_a_broken_batch_retries_on_its_own_budget(mock_server_factory,
                                                                       kind):
    server = mock_server_factory("--bad-wire-rate", "1", "--bad-wire-kinds", kind)
    client = client_for(server.base_url, api="completions", micro_batch={"max_prompts": 4},
                        retry={"max_attempts": 5, "base_s": 0.001, "max_s": 0.002,
                               "malformed_retries": 2})
    assert isinstance(client.backend, CompletionBatcher)
    try:
        results = await asyncio.gather(
            *(client.call(Request("mock", prompt=f"Mill {i}?")) for i in range(4)),
            return_exceptions=True)
        assert_nothing_leaked(client)
        assert client.backend.waiting == 0 and client.backend.sending == 0
    finally:
        await client.aclose()
    assert all(isinstance(r, MalformedAnswer) and r.attempts == 3 for r in results)
    assert client.errors == {"MalformedAnswer": 12}


# -- gristmill run --------------------------------------------------------------------------
def run_against(server, tmp_path, seeds: int, **retry):
    data = pipeline_config(server.base_url, tmp_path, seeds=seeds, max_in_flight=16,
                           retry={"base_s": 0.001, "max_s": 0.002, **retry})
    data["stages"][0]["stream"] = True  # streamed questions, whole answers
    result = gristmill("run", str(write_config(tmp_path, data)), "--run-dir", "r",
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    run = tmp_path / "r"
    summary = json.loads((run / "summary.json").read_text())
    return result, summary, read_jsonl(run / "output.jsonl"), read_jsonl(run / "rejects.jsonl")


def test_a_run_against_a_server_breaking_answers_completes(mock_server_factory, tmp_path):
    server = mock_server_factory("--bad-wire-rate", "0.3", "--seed", "5")
    seeds = 60  # enough requests that every kind is drawn
    _, summary, records, rejects = run_against(server, tmp_path, seeds, malformed_retries=1)
    faults = server.stats()["wire_faults"]
    assert set(faults) == set(STREAM_KINDS) | set(BODY_KINDS)  # every kind was served
    backend = summary["backends"]["default"]
    assert backend["errors"] == {"MalformedAnswer": sum(faults.values())}
    assert rejects and all(r["error"] == "MalformedAnswer" and r["attempt"] == 2
                           and r["reason"].startswith("malformed answer") for r in rejects)
    assert backend["retries"] > len(rejects)  # some broken answers were retried to success
    by_stage = {s: sum(r["stage"] == s for r in rejects) for s in ("question", "answer1")}
    assert len(records) == 2 * (seeds - by_stage["question"]) - by_stage["answer1"] > 0
    assert summary["rejects"] == len(rejects)


def test_a_server_always_breaking_answers_gives_rejects_after_the_budget(mock_server_factory,
                                                                         tmp_path):
    server = mock_server_factory("--bad-wire-rate", "1", "--bad-wire-kinds", "sse-json")
    result, summary, records, rejects = run_against(server, tmp_path, seeds=3)
    assert records == [] and len(rejects) == 3
    for r in rejects:  # the default budget: 2 retries, so 3 attempts
        assert (r["stage"], r["error"], r["attempt"]) == ("question", "MalformedAnswer", 3)
        assert "bad JSON in an SSE event" in r["reason"]
    assert server.stats()["requests"] == 9 == summary["backends"]["default"]["requests"]
    assert "rejected 3 × question: MalformedAnswer" in result.stdout


# -- pages in a broken charset --------------------------------------------------------------
async def test_pages_in_a_broken_charset_are_read_not_raised():
    from aiohttp import ClientSession, web
    from aiohttp.test_utils import TestServer

    from gristmill.runs.metrics_poller import _scrape

    broken, utf8 = b"\xff\xfe busy \xc3(", {"Content-Type": "text/plain; charset=utf-8"}

    async def error_page(request: web.Request) -> web.Response:
        return web.Response(status=500, body=broken, headers=utf8)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=broken + b"\nvllm:num_requests_running 3\n", headers=utf8)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", error_page)
    app.router.add_get("/metrics", metrics)
    async with TestServer(app) as server:
        client = client_for(str(server.make_url("/v1")), retry={"max_attempts": 1})
        try:
            with pytest.raises(ServerError, match="HTTP 500"):
                await client.call(Request("mock", messages=CHAT))
        finally:
            await client.aclose()
        async with ClientSession() as session:
            load = await _scrape(session, str(server.make_url("/metrics")))
    assert load is not None and load.running == 3
