"""Per-endpoint caps from each server's /metrics, against two simulated-GPU mock servers of
different sizes: each gets its own cap, and the bigger one gets the bigger share."""

from __future__ import annotations

import asyncio

import pytest

from gristmill.config.load import validate_config
from gristmill.runs.progress import backend_lines
from gristmill.runs.runner import Run, RunOptions
from tests.conftest import pipeline_config

pytestmark = pytest.mark.timeout(60)


async def test_each_endpoint_gets_its_own_cap_and_the_bigger_server_more_work(
        mock_server_factory, tmp_path):
    small = mock_server_factory("--gpu", "--max-running", "4", "--output-tokens", "20")
    big = mock_server_factory("--gpu", "--max-running", "32", "--output-tokens", "20")
    data = pipeline_config(small.base_url, tmp_path, seeds=300, stages=1)
    data["stages"] = [{"name": "answer", "prompt": "Answer: {{ seed }}", "workers": 96,
                       "validators": {"defaults": False}, "sampling": {"max_tokens": 20}}]
    data["record"] = [{"role": "user", "content": "{{ seed }}"},
                      {"role": "assistant", "content": "{{ answer }}"}]
    data["backends"]["default"].update(base_urls=[small.base_url, big.base_url],
                                       max_in_flight=128, scrape_metrics=True,
                                       metrics_interval_s=0.05, adaptive=False)
    data["backends"]["default"].pop("base_url")
    the_run = Run(validate_config(data), RunOptions(run_dir=tmp_path / "run", progress=False))
    seen: dict[str, list[tuple[int, int]]] = {small.base_url: [], big.base_url: []}
    lines: list[str] = []

    async def sample() -> None:
        endpoints = the_run.clients["default"].backend.endpoints
        while the_run.stats.finished is None:
            for e in endpoints.endpoints:
                seen[e.url].append((e.outstanding, e.cap))
            if the_run.stats.records > 100 and not lines:
                lines.extend(backend_lines(the_run))
            await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample())
    summary = await the_run.execute()
    await sampler
    assert summary["records"] == 300
    served_small, served_big = small.stats()["requests"], big.stats()["requests"]
    assert served_small + served_big == 300 and served_big > 2 * served_small
    late_small = [cap for _, cap in seen[small.base_url][len(seen[small.base_url]) // 2:]]
    late_big = [cap for _, cap in seen[big.base_url][len(seen[big.base_url]) // 2:]]
    assert max(late_small) < min(late_big)  # the caps follow each server's batch size
    assert any(small.base_url in line and "running" in line and "KV" in line for line in lines)
