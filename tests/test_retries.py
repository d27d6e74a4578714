"""Each error type is retried or not, as specified; Retry-After is obeyed."""

from __future__ import annotations

import random

import pytest

from gristmill.protocol import Request
from gristmill.config.pipeline import BackendConfig
from gristmill.errors import (BadRequest, ConnectionReset, FirstTokenTimeout, RateLimited,
                              ServerError, TotalTimeout)
from gristmill.runs.assembly import make_client

pytestmark = pytest.mark.both_loops

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


class RecordingWatch:
    """The client's side of a stream watch, recorded: what each attempt was fed."""

    every = 8

    def __init__(self):
        self.attempts = []

    def start(self):
        self.attempts.append([])

    def feed(self, text):
        self.attempts[-1].append(text)


async def test_a_retried_stream_is_watched_from_its_own_start(mock_server_factory):
    server = mock_server_factory("--rate-cut", "0.5", "--seed", "2", "--output-tokens", "60")
    client = client_for(server.base_url, retry={"max_attempts": 5, "base_s": 0.01,
                                                "max_s": 0.02})
    try:
        for i in range(20):  # until one answer needed a retry
            watch = RecordingWatch()
            completion = await client.call(
                Request("mock", messages=[{"role": "user", "content": f"q{i}"}], stream=True),
                watch=watch)
            if len(watch.attempts) > 1:
                break
        else:
            pytest.fail("no request was cut and retried")
    finally:
        await client.aclose()
    assert sum(map(len, watch.attempts[:-1])) > 0, "the cut attempt fed its text"
    fed = "".join(watch.attempts[-1])  # the answer's own stream, from its start
    assert completion.text.startswith(fed) and len(completion.text) - len(fed) < watch.every


@pytest.mark.parametrize("path, status", [("/nope/v1", 404), ("/v1", 400)])
async def test_client_errors_are_never_retried(mock_server_factory, path, status):
    server = mock_server_factory()
    client = client_for(server.url + path)
    bad = Request("mock", messages=None, prompt=None)  # no messages: the server answers 400
    with pytest.raises(BadRequest) as exc:
        await call_and_count(server, client, bad)
    assert exc.value.status == status
    assert server.stats()["requests"] <= 1 and client.retries == 0


async def test_retry_after_is_obeyed(mock_server_factory):
    server = mock_server_factory("--rate-429", "1.0", "--retry-after", "0.4",
                                 "--record-arrivals")
    client = client_for(server.base_url)
    with pytest.raises(RateLimited):
        await call_and_count(server, client)
    arrivals = server.stats()["arrivals"]
    assert len(arrivals) == 3
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert all(gap >= 0.38 for gap in gaps), gaps


async def test_some_faults_still_complete_every_request(mock_server_factory):
    server = mock_server_factory("--rate-500", "0.2", "--rate-reset", "0.1", "--seed", "3")
    client = client_for(server.base_url, retry={"max_attempts": 10, "base_s": 0.001,
                                                "max_s": 0.01})
    try:
        for i in range(30):
            completion = await client.call(Request("mock", messages=[
                {"role": "user", "content": f"question {i}"}]))
            assert completion.text and completion.finish_reason in ("stop", "length")
    finally:
        await client.aclose()
    assert client.retries > 0 and client.in_flight == 0
