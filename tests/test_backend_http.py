"""The OpenAI-compatible backend against real mock servers: both endpoint families,
streaming and not, usage, JSON-schema output, balancing across base URLs."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from gristmill.backends.openai_http.backend import OpenAIHTTPBackend
from gristmill.protocol import Request
from gristmill.config.pipeline import BackendConfig
from gristmill.config.load import validate_config
from gristmill.flows.outputs import response_format
from gristmill.config.pipeline import OutputConfig
from gristmill.runs.runner import RunOptions, run
from tests.conftest import pipeline_config

pytestmark = pytest.mark.integration
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tides?"}]


def backend(*urls: str, **kw) -> OpenAIHTTPBackend:
    return OpenAIHTTPBackend("t", BackendConfig(base_urls=list(urls), model="mock", **kw))


async def test_chat_streamed_equals_non_streamed_with_usage(mock_server):
    b = backend(mock_server.base_url)
    try:
        whole = await b.complete(Request("mock", messages=CHAT, params={"max_tokens": 50}))
        deltas = [d async for d in b.stream(Request("mock", messages=CHAT,
                                                    params={"max_tokens": 50}))]
    finally:
        await b.aclose()
    assert whole.text and "".join(d.text for d in deltas) == whole.text
    assert whole.usage.prompt_tokens > 0 and 0 < whole.usage.completion_tokens <= 50
    final_usage = [d.usage for d in deltas if d.usage][-1]
    assert final_usage == whole.usage
    assert [d.finish_reason for d in deltas if d.finish_reason] == [whole.finish_reason]


async def test_completions_endpoint(mock_server):
    b = backend(mock_server.base_url, api="completions")
    try:
        result = await b.complete(Request("mock", prompt="Once upon a time",
                                          params={"max_tokens": 5}))
        streamed = [d async for d in b.stream(Request("mock", prompt="Once upon a time",
                                                      params={"max_tokens": 5}))]
    finally:
        await b.aclose()
    assert result.finish_reason == "length" and result.usage.completion_tokens == 5
    assert "".join(d.text for d in streamed) == result.text


async def test_json_schema_response_format_gives_parseable_lists(mock_server):
    fmt = response_format(OutputConfig(type="list", min_items=4, max_items=4, max_chars=80))
    b = backend(mock_server.base_url)
    try:
        result = await b.complete(Request("mock", messages=CHAT, response_format=fmt))
    finally:
        await b.aclose()
    items = orjson.loads(result.text)["items"]
    assert len(items) == 4 and all(isinstance(s, str) and 0 < len(s) <= 80 for s in items)


async def test_streaming_pipeline_gives_the_same_records(mock_server, tmp_path):
    records = []
    for stream in (False, True):
        data = pipeline_config(mock_server.base_url, tmp_path, seeds=5)
        for stage in data["stages"]:
            stage["stream"] = stream
        out = tmp_path / f"run-{stream}"
        summary = await run(validate_config(data), RunOptions(run_dir=out, progress=False))
        assert summary["records"] == 10
        records.append(sorted((out / "output.jsonl").read_bytes().splitlines()))
    assert records[0] == records[1]


async def test_least_outstanding_balancing_prefers_the_fast_server(mock_server_factory):
    slow = mock_server_factory("--latency-ms", "200")
    fast = mock_server_factory("--latency-ms", "5")
    b = backend(slow.base_url, fast.base_url, max_in_flight=8)

    async def one(i: int):
        return await b.complete(Request("mock", messages=[{"role": "user", "content": str(i)}]))

    try:
        sem = asyncio.Semaphore(4)

        async def bounded(i: int):
            async with sem:
                return await one(i)
        await asyncio.gather(*(bounded(i) for i in range(80)))
    finally:
        await b.aclose()
    n_slow, n_fast = slow.stats()["requests"], fast.stats()["requests"]
    assert n_slow + n_fast == 80
    assert n_slow >= 1 and n_fast > 5 * n_slow  # both used; the idle one wins


async def test_extra_headers_and_query_reach_the_server(mock_server):
    b = backend(mock_server.base_url, headers={"X-Team": "mill"},
                query={"api-version": "2024-10-21"})
    try:
        await b.complete(Request("mock", messages=CHAT))
    finally:
        await b.aclose()
    last = mock_server.stats()["last_request"]
    assert last["query"] == {"api-version": "2024-10-21"}
    assert last["headers"]["x-team"] == "mill"
