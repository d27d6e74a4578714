"""Fleets of vLLM servers on a Ray cluster's GPUs (the mock behind `vllm serve`'s command line
stands in for vLLM): a server on each GPU node serves every shard and none is left after the
run; a server's host restarts a killed server and its stop leaves nothing; a fleet that cannot
be placed is a config error."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import psutil
import pytest

from gristmill.cluster.driver import ClusterRun
from gristmill.config.load import validate_config
from gristmill.runs.options import RunOptions
from tests.cluster_support import MB, canonical, config_data
from tests.conftest import processes_running

pytestmark = pytest.mark.timeout(300)


def mock_servers() -> list[psutil.Process]:
    return processes_running("gristmill.backends.mock.vllm_serve")


async def test_a_fleet_is_placed_on_the_clusters_gpus_and_serves_every_shard(
        cluster, one_process, tmp_path, monkeypatch):
    """Two nodes with a GPU each (Ray's resource; the mock stands in for `vllm serve` through
    the fleet's test hook): a server on each, every shard sends to both, and none is left."""
    gpu_nodes = [cluster.add_node(num_cpus=1, num_gpus=1, object_store_memory=80 * MB)
                 for _ in range(2)]
    cluster.wait_for_nodes()
    monkeypatch.setenv("GRISTMILL_VLLM_COMMAND",
                       f"{sys.executable} -m gristmill.backends.mock.vllm_serve")
    data = config_data("http://127.0.0.1:9/v1", tmp_path)
    data["backends"]["default"] = {"kind": "vllm", "model": "mock",
                                   "fleet": {"gpus_per_server": 1}}
    driver = ClusterRun(validate_config(data), RunOptions(run_dir=tmp_path / "run",
                                                          progress=False),
                        address=cluster.address, shards=3, workers=2, say=lambda _: None)
    try:
        summary = await driver.execute()
    finally:
        for node in gpu_nodes:
            cluster.remove_node(node)
    urls = summary["cluster"]["fleets"]["default"]
    assert len(urls) == 2 and len(set(urls)) == 2
    assert canonical(tmp_path / "run") == canonical(one_process)
    assert sorted(p.name for p in (tmp_path / "run" / "logs").glob("vllm-*.log")) == [
        "vllm-default-0-0.log", "vllm-default-1-0.log"]
    deadline = time.monotonic() + 10
    while mock_servers() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert mock_servers() == []


async def test_a_servers_host_restarts_it_and_its_stop_leaves_nothing(cluster, tmp_path,
                                                                      monkeypatch):
    """The actor that hosts one server of a cluster fleet: a server killed with kill -9 is
    started again on the same address; stopping the host stops the server for good (its
    supervision does not start it once more)."""
    import aiohttp
    import ray

    from gristmill.backends.vllm.server import ServerSpec
    from gristmill.cluster.fleets import ServerHost

    if not ray.is_initialized():  # alone, no earlier test has joined the mini-cluster
        ray.init(address=cluster.address, log_to_driver=False)
    monkeypatch.setenv("GRISTMILL_VLLM_COMMAND",
                       f"{sys.executable} -m gristmill.backends.mock.vllm_serve")
    host = ray.remote(num_cpus=0)(ServerHost).options(runtime_env={"env_vars": {
        "GRISTMILL_VLLM_COMMAND": os.environ["GRISTMILL_VLLM_COMMAND"]}}).remote()
    url = await host.start.remote("default-0", ServerSpec(model="mock"), str(tmp_path), 60.0, 3)
    supervising = host.supervise.remote()
    first, = mock_servers()
    first.kill()
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + 60
        while True:
            again = [p for p in mock_servers() if p.pid != first.pid]
            if again:
                try:
                    async with session.get(url.removesuffix("/v1") + "/health") as answer:
                        if answer.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
            assert time.monotonic() < deadline, "the server was not started again"
            await asyncio.sleep(0.2)
    await host.stop.remote()
    await supervising  # ends without an error once stopped on purpose
    await asyncio.sleep(1.0)  # what a supervision that restarted it would take to start it
    assert mock_servers() == []
    ray.kill(host)


def test_a_fleet_without_gpus_or_servers_is_a_config_error(tmp_path):
    from gristmill.cluster.fleets import servers_wanted
    from gristmill.errors import ConfigError

    data = config_data("http://127.0.0.1:9/v1", tmp_path)
    data["backends"]["default"] = {"kind": "vllm", "model": "m", "fleet": {"gpus_per_server": 2}}
    config = validate_config(data)
    with pytest.raises(ConfigError, match="fewer than gpus_per_server=2; set fleet.servers"):
        servers_wanted(config, "default", 1)
    assert servers_wanted(config, "default", 8) == 4
    data["backends"]["default"]["fleet"]["gpus"] = [0, 1]
    with pytest.raises(ConfigError, match="fleet.gpus names one machine's GPUs"):
        servers_wanted(validate_config(data), "default", 8)

