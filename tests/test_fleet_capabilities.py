"""A micro-batched backend in front of a fleet keeps every capability of the fleet's HTTP
backend: the run probes its ejected endpoints, supervises its servers and sets caps from their
/metrics. The fleet's servers are mock servers behind `vllm serve`'s command line (the
GRISTMILL_VLLM_COMMAND hook), so this runs where vLLM cannot."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import Callable

import orjson
import pytest

from gristmill.backends.micro_batch import CompletionBatcher
from gristmill.backends.mock.vllm_serve import mock_argv
from gristmill.config.load import validate_config
from gristmill.runs.runner import Run, RunOptions
from tests.conftest import pipeline_config

pytestmark = pytest.mark.timeout(120)


async def until(condition: Callable[[], object], timeout_s: float = 60.0) -> None:
    """Wait for a live run to reach a state it does not announce (it is another process's
    doing: a scrape, a probe, a restart)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_the_vllm_serve_command_line_becomes_mock_arguments():
    argv = ["serve", "/models/x", "--host", "127.0.0.1", "--port", "8001", "--dtype", "auto",
            "--served-model-name", "mock", "--max-num-seqs", "8", "--enforce-eager"]
    assert mock_argv(argv, "--latency-ms 5") == ["--host", "127.0.0.1", "--port", "8001",
                                                 "--model", "mock", "--latency-ms", "5"]


async def test_a_micro_batched_fleet_is_probed_supervised_and_capped(tmp_path, monkeypatch):
    monkeypatch.setenv("GRISTMILL_VLLM_COMMAND",
                       f"{sys.executable} -m gristmill.backends.mock.vllm_serve")
    monkeypatch.setenv("GRISTMILL_MOCK_ARGS", "--latency-ms 100")
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path, seeds=2000)
    data["backends"]["default"] = {
        "kind": "vllm", "model": "mock", "api": "completions", "max_in_flight": 8,
        "fleet": {"servers": 2, "startup_timeout_s": 60}, "metrics_interval_s": 0.2,
        "micro_batch": {"max_prompts": 4, "window_ms": 5}}
    run = Run(validate_config(data), RunOptions(run_dir=tmp_path / "run", progress=False))
    client = run.clients["default"]
    caps = client.backend.capabilities
    assert isinstance(client.backend, CompletionBatcher)
    assert caps.fleet is not None and caps.endpoints is not None and caps.scrape_metrics_s == 0.2
    fleet, endpoints = caps.fleet, caps.endpoints
    running = asyncio.create_task(run.execute())
    try:
        await until(lambda: "metrics" in client.caps and len(client.server_load) == 2)
        await until(lambda: client.backend.batches > 0)

        first = endpoints.endpoints[0]  # ejected by hand: only the prober brings it back
        for _ in range(endpoints.policy.eject_after):
            endpoints.failed(first)
        assert first.state == "ejected"
        await until(lambda: first.in_rotation)

        fleet.servers[1].proc.kill()  # supervision restarts it
        await until(lambda: fleet.restarts[1] == 1)
        await until(lambda: all(e.in_rotation for e in endpoints.endpoints))
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert all(s.proc.returncode is not None for s in fleet.servers)  # stopped with the run
    assert client.in_flight == 0 and client.pool.waiting == 0
    assert client.backend.waiting == 0 and client.backend.sending == 0
    state = orjson.loads((tmp_path / "run" / "state.json").read_bytes())
    summary = orjson.loads((tmp_path / "run" / "summary.json").read_bytes())
    assert (state["status"], state["stop_reason"]) == ("stopped", "cancelled")
    assert summary["backends"]["default"]["servers"]["restarts"] == 1
