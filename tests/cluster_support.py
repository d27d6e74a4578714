"""Ray's own mini-cluster (`ray.cluster_utils.Cluster`: three nodes on this machine), the mock
server and the run of one process that every cluster run must match: shared by the cluster
tests (test_cluster*.py); a plugin (tests/conftest.py) for its fixtures."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from gristmill.backends.mock.process import MockServerProcess
from gristmill.config.load import validate_config
from gristmill.runs.options import RunOptions
from gristmill.runs.runner import run
from tests.conftest import pipeline_config

SEEDS = 60
MB = 1024 * 1024
GRISTMILL = [sys.executable, "-m", "gristmill"]


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    small = {"num_cpus": 1, "object_store_memory": 80 * MB}
    mini = Cluster(initialize_head=True, head_node_args={**small, "include_dashboard": False})
    for _ in range(2):
        mini.add_node(**small)
    mini.wait_for_nodes()
    yield mini
    ray.shutdown()
    mini.shutdown()


@pytest.fixture(scope="module")
def server():
    with MockServerProcess("--latency-ms", "20") as mock:
        yield mock


def config_data(base_url: str, tmp_path: Path, **backend: Any) -> dict[str, Any]:
    return pipeline_config(base_url, tmp_path, seeds=SEEDS, **backend)


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True) if path.exists() else []


def canonical(run_dir: Path, sink: str = "output") -> list[bytes]:
    return sorted(lines(run_dir / f"{sink}.jsonl"), key=lambda line: orjson.loads(line)["id"])


@pytest.fixture(scope="module")
def one_process(server, tmp_path_factory) -> Path:
    """The same config in one process: what every cluster run must write."""
    tmp = tmp_path_factory.mktemp("one")
    asyncio.run(run(validate_config(config_data(server.base_url, tmp)),
                    RunOptions(run_dir=tmp / "run", progress=False)))
    assert len(lines(tmp / "run" / "output.jsonl")) == 2 * SEEDS
    return tmp / "run"

