"""A fleet on a cluster with a real vLLM: one node without GPUs (Ray's mini-cluster), one
`vllm serve` of the tiny model on vLLM's CPU build, started by a server actor in its
placement-group bundle; two shards send to it and write the records of a run through the
mock (ids depend on lineage, not on the text); the server is gone afterwards."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from gristmill.backends.mock.process import MockServerProcess
from gristmill.cluster.driver import ClusterRun
from gristmill.config.load import validate_config
from gristmill.runs.options import RunOptions
from gristmill.runs.runner import run
from tests.conftest import pipeline_config, processes_running

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]
SEEDS = 12
MB = 1024 * 1024


def pipeline(tmp_path: Path, backend: dict[str, Any]) -> dict[str, Any]:
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path, seeds=SEEDS)
    data["backends"]["default"] = backend
    for stage in data["stages"]:  # the tiny model writes random text: no validators, no JSON
        stage.update(output={"type": "text"}, validators={"defaults": False},
                     sampling={"max_tokens": 24, "min_tokens": 4, "temperature": 0.8})
    return data


def ids(run_dir: Path) -> set[str]:
    return {orjson.loads(line)["id"] for line in (run_dir / "output.jsonl").read_bytes().splitlines()}


def vllm_servers() -> list[psutil.Process]:
    """The api server and its engine core (vLLM names its engine process VLLM::EngineCore)."""
    return processes_running("vllm", " serve ") + processes_running("EngineCore")


async def test_a_cpu_fleet_on_a_one_node_cluster_serves_every_shard(tiny_model, tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    with MockServerProcess() as mock:
        expected = tmp_path / "expected"
        expected.mkdir()
        await run(validate_config(pipeline(expected, {"base_url": mock.base_url,
                                                      "model": "tiny"})),
                  RunOptions(run_dir=expected / "run", progress=False))
    backend = {"kind": "vllm", "model": "tiny", "retry": {"max_attempts": 8},
               "fleet": {"model": str(tiny_model), "servers": 1, "dtype": "bfloat16",
                         "max_model_len": 512, "max_num_seqs": 16, "enforce_eager": True,
                         "env": {"VLLM_CPU_KVCACHE_SPACE": "1"}, "startup_timeout_s": 600}}
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "object_store_memory": 80 * MB, "include_dashboard": False})
    try:
        driver = ClusterRun(validate_config(pipeline(tmp_path, backend)),
                            RunOptions(run_dir=tmp_path / "run", progress=False),
                            address=cluster.address, shards=2, workers=1, say=lambda _: None)
        summary = await driver.execute()
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert summary["rejects"] == 0, summary
    assert ids(tmp_path / "run") == ids(expected / "run")
    assert len(summary["cluster"]["fleets"]["default"]) == 1
    assert (tmp_path / "run" / "logs" / "vllm-default-0-0.log").stat().st_size > 0
    deadline = asyncio.get_running_loop().time() + 30
    while vllm_servers() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
    assert vllm_servers() == []
