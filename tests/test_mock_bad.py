"""The mock server's bad answers (`--bad-rate`): drawn per arrival, recognisable by the
validators, long, and counted in /stats; tokens_sent stops when the client goes away."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import aiohttp
import orjson
import pytest
import pytest_asyncio

from gristmill.backends.mock.process import MockServerProcess as MockServer
from gristmill.validation import DEFAULT_STREAM, Context, build_stream, run_stream_on_text
from tests.conftest import ROOT

pytestmark = pytest.mark.timeout(30)

CHAT = "/v1/chat/completions"
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["items"],
          "properties": {"items": {"type": "array", "items": {"type": "string"},
                                   "minItems": 2, "maxItems": 3}}}
JSON_FORMAT = {"type": "json_schema", "json_schema": {"name": "items", "schema": SCHEMA}}
VALIDATOR_OF = {"refusal": "refusal", "loop": "repetition", "json": "json_prefix",
                "language": "language"}


def chat(content: str = "Tell me about mills.", **extra: object) -> dict:
    return {"model": "mock", "messages": [{"role": "user", "content": content}], **extra}


@pytest_asyncio.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


async def answer(session: aiohttp.ClientSession, url: str, body: dict) -> tuple[str, dict]:
    async with session.post(url + CHAT, json=body) as r:
        assert r.status == 200
        out = await r.json()
    return out["choices"][0]["message"]["content"], out


async def streamed(session: aiohttp.ClientSession, url: str, body: dict) -> str:
    parts = []
    async with session.post(url + CHAT, json={**body, "stream": True}) as r:
        async for line in r.content:
            payload = line.strip()[6:]
            if payload and payload != b"[DONE]":
                choices = orjson.loads(payload)["choices"]
                parts.append(choices[0]["delta"].get("content", "") if choices else "")
    return "".join(parts)


def rejected_by(text: str, structured: bool = False) -> str | None:
    rejection = run_stream_on_text(build_stream(DEFAULT_STREAM), text,
                                   Context(structured=structured, schema=SCHEMA))
    return rejection and rejection.validator


async def test_bad_answers_are_drawn_per_arrival_and_reproducible(session):
    with MockServer("--bad-rate", "0.5", "--seed", "3") as s:
        body = chat()  # the same body every time: only the arrival decides
        texts = [(await answer(session, s.url, body))[0] for _ in range(40)]
        bad = [rejected_by(t) is not None for t in texts]
        stats = s.stats()
        assert stats["bad_answers"] == sum(bad) and 8 <= sum(bad) <= 32
        assert sum(stats["bad_kinds"].values()) == sum(bad) and "json" not in stats["bad_kinds"]
        good = [t for t, b in zip(texts, bad) if not b]
        assert len(set(good)) == 1  # good answers are the body's usual answer
        s.reset()
        again = [rejected_by((await answer(session, s.url, body))[0]) is not None
                 for _ in range(40)]
        assert again == bad and s.stats()["bad_answers"] == sum(bad)


async def test_kinds_are_recognisable_long_and_capped(session):
    with MockServer("--bad-rate", "1") as s:
        seen = set()
        for i in range(24):
            text, out = await answer(session, s.url, chat(f"Question {i}?"))
            assert out["usage"]["completion_tokens"] == 1000 == len(text.split(" "))
            seen.add(rejected_by(text))
        assert seen == {"refusal", "repetition", "language"}
        kinds = s.stats()["bad_kinds"]
        assert set(kinds) == {"refusal", "loop", "language"} and sum(kinds.values()) == 24
        text, _ = await answer(session, s.url, chat(response_format=JSON_FORMAT))
        assert rejected_by(text, structured=True) == "json_prefix" and text.startswith("{")
        assert s.stats()["bad_kinds"]["json"] == 1
        _, out = await answer(session, s.url, chat(max_tokens=50))
        assert out["choices"][0]["finish_reason"] == "length"
        assert out["usage"]["completion_tokens"] == 50


@pytest.mark.parametrize("kind", ["refusal", "loop", "language", "json"])
async def test_each_kind_streams_like_it_answers(session, kind):
    with MockServer("--bad-rate", "1", "--bad-kinds", kind, "--bad-tokens", "300") as s:
        body = chat("Rivers?", **({"response_format": JSON_FORMAT} if kind == "json" else {}))
        whole, out = await answer(session, s.url, body)
        assert await streamed(session, s.url, body) == whole
        assert out["usage"]["completion_tokens"] == 300
        assert rejected_by(whole, structured=kind == "json") == VALIDATOR_OF[kind]
        assert s.stats()["bad_kinds"] == {kind: 2}


async def test_only_json_allowed_leaves_text_requests_alone(session):
    with MockServer("--bad-rate", "1", "--bad-kinds", "json") as s:
        text, _ = await answer(session, s.url, chat())
        assert rejected_by(text) is None and s.stats()["bad_answers"] == 0


async def test_tokens_sent_stops_when_the_client_leaves_a_bad_stream(session):
    with MockServer("--bad-rate", "1", "--bad-kinds", "refusal", "--tokens-per-s", "200") as s:
        seen = 0
        async with session.post(s.url + CHAT, json=chat(stream=True)) as r:
            async for line in r.content:
                seen += bool(line.strip())
                if seen == 5:
                    break
            r.close()  # drop the connection mid-stream, as an aborting client does
        stats = await s.idle()
        assert stats["disconnects"] == 1 and stats["completed"] == 0
        assert stats["bad_answers"] == 1 and stats["completion_tokens"] == 1000
        sent = stats["tokens_sent"]
        assert 5 <= sent < 40
        await asyncio.sleep(0.3)
        assert s.stats()["tokens_sent"] == sent


def test_invalid_bad_options_exit_with_usage_error():
    for args in (["--bad-kinds", "refusal,rude"], ["--bad-rate", "1.5"], ["--bad-tokens", "0"]):
        proc = subprocess.run([sys.executable, "-m", "gristmill.backends.mock.server", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=20)
        assert proc.returncode == 2 and "error" in proc.stderr, args
