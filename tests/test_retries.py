"""Against the mock server (a real process): each HTTP failure maps to the error type the
client retries (or not) by. The retry logic itself, on the scripted backend and the virtual
clock, is in tests/test_client_retries.py."""

from __future__ import annotations

import random

import pytest

from gristmill.protocol import Request
from gristmill.config.pipeline import BackendConfig
from gristmill.errors import (BadRequest, ConnectionReset, FatalUpstream, FirstTokenTimeout,
                              RateLimited, ServerError, TotalTimeout)
from gristmill.runs.assembly import make_client

pytestmark = pytest.mark.integration

CHAT = [{"role": "user", "content": "Say something about mills."}]


def client_for(base_url: str, **overrides):
    overrides.setdefault("retry", {"max_attempts": 3, "base_s": 0.01, "max_s": 0.05})
    config = BackendConfig(base_urls=[base_url], model="mock", **overrides)
    client = make_client("test", config)
    client.rng = random.Random(1)
    return client


async def call_and_count(server, client, request=None):
    server.reset()
    try:
        return await client.call(request or Request("mock", messages=CHAT)), server.stats()
    finally:
        await client.aclose()


@pytest.mark.parametrize("fault, error", [
    ("--rate-500", ServerError),
    ("--rate-reset", ConnectionReset),
    ("--rate-cut", ConnectionReset),
])
async def test_transient_errors_are_retried_until_the_attempts_run_out(
        mock_server_factory, fault, error):
    server = mock_server_factory(fault, "1.0")
    client = client_for(server.base_url)
    with pytest.raises(error):
        await call_and_count(server, client)
    assert server.stats()["requests"] == 3  # max_attempts
    assert client.retries == 2 and client.in_flight == 0


async def test_hung_stream_times_out_in_the_first_token_phase_and_is_retried(mock_server_factory):
    server = mock_server_factory("--rate-hang", "1.0")
    client = client_for(server.base_url, timeouts={"first_token": 0.2, "total": 5})
    with pytest.raises(FirstTokenTimeout):
        await call_and_count(server, client, Request("mock", messages=CHAT, stream=True))
    assert server.stats()["requests"] == 3


async def test_hung_answer_times_out_at_the_total_deadline_and_is_retried(mock_server_factory):
    # a non-streamed answer arrives whole: a long generation is not a first-token timeout
    server = mock_server_factory("--rate-hang", "1.0")
    client = client_for(server.base_url, timeouts={"first_token": 0.05, "total": 0.3})
    with pytest.raises(TotalTimeout):
        await call_and_count(server, client)
    assert server.stats()["requests"] == 3


async def test_cut_stream_is_a_retryable_reset(mock_server_factory):
    server = mock_server_factory("--rate-cut", "1.0")
    client = client_for(server.base_url)
    with pytest.raises(ConnectionReset):
        await call_and_count(server, client, Request("mock", messages=CHAT, stream=True))
    assert server.stats()["requests"] == 3


@pytest.mark.parametrize("path, error", [("/nope/v1", FatalUpstream), ("/v1", BadRequest)])
async def test_client_errors_are_never_retried(mock_server_factory, path, error):
    """A 400 fails the item; a 404 (no such path) is fatal for the whole backend."""
    server = mock_server_factory()
    client = client_for(server.url + path)
    bad = Request("mock", messages=None, prompt=None)  # no messages: the server answers 400
    with pytest.raises(error) as exc:
        await call_and_count(server, client, bad)
    assert ("400" if error is BadRequest else "HTTP 404") in str(exc.value)
    assert server.stats()["requests"] <= 1 and client.retries == 0


async def test_retry_after_reaches_the_client_and_is_retried(mock_server_factory):
    # how long the client waits is tested on the virtual clock (test_client_retries.py)
    server = mock_server_factory("--rate-429", "1.0", "--retry-after", "0.05")
    client = client_for(server.base_url)
    with pytest.raises(RateLimited) as exc:
        await call_and_count(server, client)
    assert exc.value.retry_after == pytest.approx(0.05) and exc.value.status == 429
    assert server.stats()["requests"] == 3 and client.retries == 2
