"""The decisions behind fatal stops, as plain functions: what an error answer means, what a
preflight's /models answer means, when the error-rate guard trips, and that a request that
could not connect spends no retry budget."""

from __future__ import annotations

import random

import orjson
import pytest

from gristmill.backends.openai_http.refusals import Where, preflight_verdict, refusal
from gristmill.errors import (BadRequest, ConnectionReset, FatalUpstream, RateLimited,
                              ServerError, Unreachable)
from gristmill.scheduling.error_rate import ErrorRateGuard
from gristmill.scheduling.retry import RetryPolicy, retry_delay

URL = "https://api.example.com/v1"
WHERE = Where("hosted", "gpt-x", "OPENAI_API_KEY")


def body(code: str, message: str = "m", type_: str = "invalid_request_error") -> str:
    return orjson.dumps({"error": {"message": message, "type": type_, "code": code}}).decode()


@pytest.mark.parametrize("status, text, kind", [
    (401, body("invalid_api_key"), FatalUpstream),
    (403, body("model_not_allowed"), FatalUpstream),
    (404, body("model_not_found"), FatalUpstream),
    (429, body("insufficient_quota", type_="insufficient_quota"), FatalUpstream),
    (429, body("rate_limit_exceeded"), RateLimited),
    (503, "overloaded", RateLimited),
    (500, "oops", ServerError),
    (408, "", ServerError),
    (400, body("context_length_exceeded"), BadRequest),
    (422, body("invalid"), BadRequest),
])
def test_each_answer_is_retried_failed_for_the_item_or_fatal(status, text, kind):
    assert type(refusal(status, {}, text, URL, WHERE)) is kind


def test_a_fatal_message_names_backend_url_key_variable_and_the_fix():
    message = str(refusal(401, {}, body("invalid_api_key", "Incorrect API key"), URL, WHERE))
    for part in ("'hosted'", URL, "401", "invalid_api_key", "Incorrect API key",
                 "$OPENAI_API_KEY", "gristmill resume"):
        assert part in message
    no_key = str(refusal(401, {}, "{}", URL, Where("hosted", "gpt-x", None)))
    assert "no key was sent" in no_key and "api_key_env" in no_key


def test_a_404_names_the_model_or_the_missing_v1():
    assert "model: gpt-x" in str(refusal(404, {}, body("model_not_found"), URL, WHERE))
    bare = str(refusal(404, {}, "Not Found", "http://host:8000", WHERE))
    assert "try http://host:8000/v1" in bare


def test_vllms_flat_error_body_is_read():
    flat = '{"object": "error", "message": "The model `x` does not exist.", "code": 404}'
    assert "does not exist" in str(refusal(404, {}, flat, URL, WHERE))


def models(*ids: str) -> str:
    return orjson.dumps({"object": "list", "data": [{"id": i} for i in ids]}).decode()


def test_preflight_verdicts():
    verdict = preflight_verdict(200, models("a", "b"), URL, {"a", "c"}, "hosted", None)
    assert isinstance(verdict, FatalUpstream) and "does not list model c" in str(verdict)
    assert preflight_verdict(200, models("a", "b"), URL, {"a"}, "hosted", None) is None
    # a server listing nothing (a proxy, the mock serving any name) proves nothing
    assert preflight_verdict(200, models(), URL, {"c"}, "hosted", None) is None
    assert preflight_verdict(200, "<html>", URL, {"c"}, "hosted", None) is None
    assert isinstance(preflight_verdict(401, "{}", URL, {"a"}, "hosted", "K"), FatalUpstream)
    # /v1/models missing on a server that has /v1: left to the run's requests
    assert preflight_verdict(404, "", URL, {"a"}, "hosted", None) is None
    assert "/v1" in str(preflight_verdict(404, "", "http://h:1", {"a"}, "hosted", None))
    assert preflight_verdict(500, "", URL, {"a"}, "hosted", None) is None


def test_the_guard_judges_only_a_full_window_and_forgets_old_errors():
    guard = ErrorRateGuard(rate=0.5, window=10)
    assert not any(guard.record(True) for _ in range(9))  # 9 of 9 failed, window not full
    assert guard.record(True)
    guard = ErrorRateGuard(rate=0.5, window=10)
    for _ in range(5):
        guard.record(True)
    assert not any(guard.record(False) for _ in range(5))  # 5 of 10: not over half
    assert not any(guard.record(True) for _ in range(5))  # the old 5 errors slid out
    assert guard.record(True) and guard.failed == 6


def test_a_request_that_could_not_connect_spends_no_retry_budget():
    policy, rng = RetryPolicy(max_attempts=3, base_s=0.1, max_s=1.0), random.Random(0)
    for attempt in range(1, 50):
        assert retry_delay(policy, Unreachable("refused"), attempt, rng,
                           unreachable=attempt) is not None
    # after 20 unreachable attempts, a reset still has its whole budget of 3
    assert retry_delay(policy, ConnectionReset("cut"), 21, rng, unreachable=20) is not None
    assert retry_delay(policy, ConnectionReset("cut"), 22, rng, unreachable=20) is not None
    assert retry_delay(policy, ConnectionReset("cut"), 23, rng, unreachable=20) is None
