"""Limits hold against a real server: the mock counts what arrives, the engine must never
exceed its in-flight cap or its request/token windows."""

from __future__ import annotations

import pytest

from gristmill.config.load import validate_config
from gristmill.runs.runner import RunOptions, run
from tests.conftest import pipeline_config

pytestmark = pytest.mark.integration


async def run_pipeline(config_dict, tmp_path, **options):
    config = validate_config(config_dict)
    return await run(config, RunOptions(run_dir=tmp_path / "run", progress=False, **options))


async def test_in_flight_cap_is_never_exceeded(mock_server_factory, tmp_path):
    server = mock_server_factory("--latency-ms", "20-60")
    data = pipeline_config(server.base_url, tmp_path, seeds=60, max_in_flight=7)
    for stage in data["stages"]:
        stage["workers"] = 20  # more workers than permits: the permits must hold the line
    summary = await run_pipeline(data, tmp_path)
    stats = server.stats()
    assert summary["records"] == 120 and summary["rejects"] == 0
    assert stats["peak_in_flight"] == 7  # reached, never passed
    # identical requests (two seeds' questions can coincide) are answered from the cache
    assert stats["requests"] + summary["cache"]["hits"] == 60 + 120


async def test_request_window_is_never_exceeded(mock_server_factory, tmp_path):
    server = mock_server_factory("--rate-window-s", "1")
    data = pipeline_config(server.base_url, tmp_path, seeds=15, max_in_flight=32, rpm=20,
                           rate_window_s=1)
    summary = await run_pipeline(data, tmp_path)
    stats = server.stats()
    assert summary["records"] == 30
    assert stats["requests"] == 45
    assert 0 < stats["max_requests_in_window"] <= 20
    assert stats["status_counts"].get("429", 0) == 0


async def test_token_window_is_never_exceeded(mock_server_factory, tmp_path):
    server = mock_server_factory("--rate-window-s", "1", "--output-tokens", "20")
    data = pipeline_config(server.base_url, tmp_path, seeds=12, max_in_flight=32, tpm=1500,
                           rate_window_s=1)
    summary = await run_pipeline(data, tmp_path)
    stats = server.stats()
    assert summary["records"] == 24
    assert 0 < stats["max_tokens_in_window"] <= 1500
    # the budget was actually the constraint: the run needed more than one window
    assert stats["prompt_tokens"] + stats["completion_tokens"] > 1500


async def test_limits_learned_from_ratelimit_headers(mock_server_factory, tmp_path):
    # The server enforces 10 requests/s and says so in x-ratelimit-* headers; the client is
    # told nothing and must learn the limit instead of hammering into 429s.
    server = mock_server_factory("--rpm", "10", "--rate-window-s", "1", "--retry-after", "1")
    data = pipeline_config(server.base_url, tmp_path, seeds=10, max_in_flight=4,
                           rate_window_s=1)
    summary = await run_pipeline(data, tmp_path)
    stats = server.stats()
    assert summary["records"] == 20 and summary["rejects"] == 0
    assert stats["status_counts"].get("429", 0) <= 4  # at most the first in-flight burst
