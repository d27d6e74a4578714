"""Helpers and the online run shared by the batch mode tests (test_batch_mode*.py); a plugin
(tests/conftest.py) for its `online_records` fixture."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from gristmill.backends.mock.process import MockServerProcess
from tests.conftest import pipeline_config

GRISTMILL = [sys.executable, "-m", "gristmill"]
SEEDS = 20  # 20 questions, then 40 answers: 60 requests, 40 records
# quick seals and polls, small files: the tests' batches end in tenths of a second
FAST = {"idle_seal_s": 0.2, "poll_s": 0.05, "poll_max_s": 0.3, "max_requests": 200}


def batch_config(tmp_path: Path, base_url: str, **backend: Any) -> Path:
    backend = {"mode": "batch", "batch_files": FAST, **backend}
    data = pipeline_config(base_url, tmp_path, seeds=SEEDS, **backend)
    path = tmp_path / "batch.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def gristmill(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GRISTMILL, *args, "--no-progress"], capture_output=True,
                          text=True, timeout=180, env={**os.environ, **env})


def records(run_dir: Path) -> dict[str, Any]:
    rows = [orjson.loads(line) for line in (run_dir / "output.jsonl").read_bytes().splitlines()]
    by_id = {row["id"]: row["messages"] for row in rows}
    assert len(by_id) == len(rows), "a record was written twice"
    return by_id


def submitted_keys(server: MockServerProcess) -> Counter[str]:
    """How many batch input files each custom_id was in (the mock keeps them on disk)."""
    files_dir = Path(server.stats()["batches"]["files_dir"])
    seen: Counter[str] = Counter()
    for path in files_dir.iterdir():
        for line in path.read_bytes().splitlines():
            row = orjson.loads(line)
            if "method" in row:  # an input line, not an output or error line
                seen[row["custom_id"]] += 1
    return seen


@pytest.fixture(scope="module")
def online_records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("online")
    with MockServerProcess() as server:
        data = pipeline_config(server.base_url, tmp, seeds=SEEDS)
        path = tmp / "online.yaml"
        path.write_text(yaml.safe_dump(data))
        done = gristmill("run", str(path), "--run-dir", str(tmp / "run"))
    assert done.returncode == 0, done.stderr
    return records(tmp / "run")



def gristmill_text(*args: str) -> str:
    done = subprocess.run([*GRISTMILL, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout

