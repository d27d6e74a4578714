"""Validators in a real run against the mock server's bad answers: a streaming rejection
closes the connection (the server stops sending), regeneration respects its limit, and
non-streamed answers are judged whole."""

from __future__ import annotations

import orjson
import pytest

from gristmill.config.load import validate_config
from gristmill.runs.runner import RunOptions, run
from tests.conftest import pipeline_config

pytestmark = pytest.mark.integration


def one_stage(base_url, tmp_path, *, seeds, stream, regenerations, max_tokens=2000):
    data = pipeline_config(base_url, tmp_path, seeds=seeds, stages=1, max_in_flight=4)
    data["stages"][0].update({"output": {"type": "text"}, "stream": stream,
                              "sampling": {"max_tokens": max_tokens},
                              "validators": {"max_regenerations": regenerations}})
    return validate_config(data)


async def test_streaming_rejection_aborts_and_the_server_stops_sending(mock_server_factory,
                                                                       tmp_path):
    server = mock_server_factory("--bad-rate", "1", "--bad-kinds", "refusal",
                                 "--bad-tokens", "1000", "--tokens-per-s", "400")
    config = one_stage(server.base_url, tmp_path, seeds=4, stream=True, regenerations=1)
    summary = await run(config, RunOptions(run_dir=tmp_path / "r", progress=False))
    stats = await server.idle()
    assert summary["records"] == 0 and summary["rejects"] == 4
    assert stats["requests"] == 4 * 2  # the first answer and one regeneration each
    assert summary["validation"]["streams_aborted"] == 8
    assert summary["validation"]["rejected_by_validator"] == {"refusal": 8}
    # 8 streams of 1000 tokens were started; the server sent a small part of them
    assert stats["tokens_sent"] < 8 * 1000 * 0.2, stats["tokens_sent"]
    assert stats["disconnects"] >= 8
    rejects = [orjson.loads(x) for x in (tmp_path / "r" / "rejects.jsonl").read_bytes().splitlines()]
    assert {r["validator"] for r in rejects} == {"refusal"}
    assert all(r["attempt"] == 2 and r["text"] for r in rejects)


async def test_regeneration_recovers_bad_answers_within_its_limit(mock_server_factory, tmp_path):
    server = mock_server_factory("--bad-rate", "0.5", "--seed", "11", "--bad-tokens", "300")
    config = one_stage(server.base_url, tmp_path, seeds=20, stream=True, regenerations=3)
    summary = await run(config, RunOptions(run_dir=tmp_path / "r", progress=False))
    stats = server.stats()
    regenerated = sum(summary["validation"]["rejected_by_validator"].values())
    assert summary["records"] + summary["rejects"] == 20
    assert summary["records"] >= 15 and regenerated > 0
    # every rejection but an item's last one is followed by a regeneration request
    assert stats["requests"] == 20 + regenerated - summary["rejects"]
    assert stats["requests"] <= 20 * 4  # never more than 1 + max_regenerations per item


async def test_non_streamed_answers_are_judged_whole(mock_server_factory, tmp_path):
    server = mock_server_factory("--bad-rate", "1", "--bad-kinds", "loop", "--bad-tokens", "400")
    config = one_stage(server.base_url, tmp_path, seeds=3, stream=False, regenerations=0)
    summary = await run(config, RunOptions(run_dir=tmp_path / "r", progress=False))
    assert summary["rejects"] == 3 and summary["validation"]["streams_aborted"] == 0
    assert summary["validation"]["rejected_by_validator"] == {"repetition": 3}
    assert server.stats()["tokens_sent"] >= 3 * 400  # nothing to abort: it came whole
