"""Fatal upstream errors stop a run at once with exit 3 and one line; the error-rate guard stops
it with exit 4; a resume after the fix gives the records of a clean run, none twice.

Against the real mock server as a separate process, driven through the `gristmill` command."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from gristmill.backends.mock.process import MockServerProcess
from gristmill.backends.vllm.server import free_port
from gristmill.config.load import validate_config
from gristmill.errors import FatalUpstream
from gristmill.runs.runner import Run, RunOptions
from tests.conftest import pipeline_config

GRISTMILL = [sys.executable, "-m", "gristmill"]
SEEDS = 30  # two questions a seed, each answered: 90 requests, 60 records in a whole run
CANARY = "sk-canary-fatal-7f3a9e"


def write_config(tmp_path: Path, base_url: str, **backend: Any) -> Path:
    data = pipeline_config(base_url, tmp_path, seeds=SEEDS, **backend)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def gristmill(*args: str, key: str | None = CANARY) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("API_KEY")}
    if key is not None:
        env["GRISTMILL_API_KEY"] = key
    return subprocess.run([*GRISTMILL, *args, "--no-progress"], capture_output=True,
                          text=True, timeout=120, env=env)


def records(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "output.jsonl"
    lines = path.read_bytes().splitlines() if path.exists() else []
    rows = [orjson.loads(line) for line in lines]
    by_id = {row["id"]: row["messages"] for row in rows}
    assert len(by_id) == len(rows), "a record was written twice"
    return by_id


def summary(run_dir: Path) -> dict[str, Any]:
    return orjson.loads((run_dir / "summary.json").read_bytes())


@pytest.fixture(scope="module")
def clean_records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What the pipeline gives when nothing goes wrong."""
    tmp = tmp_path_factory.mktemp("clean")
    with MockServerProcess() as server:
        done = gristmill("run", str(write_config(tmp, server.base_url)), "--run-dir",
                         str(tmp / "run"))
    assert done.returncode == 0, done.stderr
    assert len(records(tmp / "run")) == 2 * SEEDS
    return records(tmp / "run")


def assert_one_line_cause(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 3; the cause is one line naming what is given; the key is nowhere."""
    assert result.returncode == 3, result.stderr
    cause = next(line for line in result.stderr.splitlines() if line.startswith("gristmill: "))
    for needle in needles:
        assert needle in cause, cause
    assert CANARY not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return cause


@pytest.mark.parametrize("fault, cause", [
    (("--unauthorized-after", "45"), ("401", "invalid_api_key", "$GRISTMILL_API_KEY")),
    (("--quota-after", "45"), ("429", "insufficient_quota", "add credit")),
])
def test_a_fatal_answer_mid_run_stops_it_and_a_resume_after_the_fix_loses_nothing(
        tmp_path, clean_records, fault, cause):
    port = free_port()
    run_dir = tmp_path / "run"
    with MockServerProcess(*fault, port=port) as server:
        config = write_config(tmp_path, server.base_url)
        stopped = gristmill("run", str(config), "--run-dir", str(run_dir))
        asked = server.stats()["requests"]
    assert_one_line_cause(stopped, "backend 'default'", server.base_url, *cause)
    # no retry of a fatal answer: after the 45 good ones, at most what was in flight
    assert asked <= 45 + 64
    ended = summary(run_dir)
    assert (ended["status"], ended["stop_reason"], ended["exit_code"]) == \
        ("failed", "fatal_upstream", 3)
    assert cause[0] in ended["detail"] and ended["rejects"] == 0  # nothing became a reject
    assert 0 < len(records(run_dir)) < 2 * SEEDS
    with MockServerProcess(port=port):  # the fix: a good key, a refilled quota
        resumed = gristmill("resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert records(run_dir) == clean_records
    assert summary(run_dir)["stop_reason"] == "complete"


def test_a_bad_key_is_caught_before_any_seed_is_read(tmp_path):
    with MockServerProcess("--unauthorized-after", "0") as server:
        config = write_config(tmp_path, server.base_url)
        stopped = gristmill("run", str(config), "--run-dir", str(tmp_path / "run"))
        asked = server.stats()["requests"]
    assert_one_line_cause(stopped, "401", "$GRISTMILL_API_KEY", "before the run, GET",
                          f"{server.base_url}/models")
    assert asked == 0  # the preflight asked /v1/models only
    ended = summary(tmp_path / "run")
    assert ended["seeds"] == 0 and ended["stop_reason"] == "fatal_upstream"


def test_without_a_key_the_cause_says_how_to_give_one(tmp_path):
    with MockServerProcess("--unauthorized-after", "0") as server:
        stopped = gristmill("run", str(write_config(tmp_path, server.base_url)), "--run-dir",
                            str(tmp_path / "run"), key=None)
    assert_one_line_cause(stopped, "no key was sent", "api_key_env")


def test_an_unknown_model_is_caught_by_the_preflight(tmp_path):
    with MockServerProcess("--model", "served-a", "--model", "served-b") as server:
        stopped = gristmill("run", str(write_config(tmp_path, server.base_url)), "--run-dir",
                            str(tmp_path / "run"))
        asked = server.stats()["requests"]
    assert_one_line_cause(stopped, "does not list model mock", "served-a, served-b")
    assert asked == 0


def test_an_unknown_model_mid_run_stops_it_and_a_resume_after_the_fix_loses_nothing(
        tmp_path, clean_records):
    """With the preflight off (a server whose /models lists other names), the first 404 of
    a completion stops the run; the server then learns the model and the resume completes."""
    port = free_port()
    run_dir = tmp_path / "run"
    with MockServerProcess("--model", "other", port=port) as server:
        config = write_config(tmp_path, server.base_url, preflight=False)
        stopped = gristmill("run", str(config), "--run-dir", str(run_dir))
    assert_one_line_cause(stopped, "404", "model_not_found", "model: mock")
    assert records(run_dir) == {}
    with MockServerProcess("--model", "mock", port=port):
        resumed = gristmill("resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert records(run_dir) == clean_records


def test_a_base_url_without_v1_is_named(tmp_path):
    with MockServerProcess() as server:
        stopped = gristmill("run", str(write_config(tmp_path, server.url)), "--run-dir",
                            str(tmp_path / "run"))
    assert_one_line_cause(stopped, "404", f"try {server.url}/v1")


def test_a_backend_unreachable_for_too_long_stops_the_run(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    config = write_config(tmp_path, dead, unreachable_after_s=1.0,
                          retry={"base_s": 0.05, "max_s": 0.2, "max_attempts": 2})
    stopped = gristmill("run", str(config), "--run-dir", str(tmp_path / "run"))
    assert_one_line_cause(stopped, "no endpoint could be connected to", dead)
    # retried past max_attempts without a reject: not connecting is not the item's fault
    assert summary(tmp_path / "run")["rejects"] == 0


def test_the_error_rate_guard_stops_a_run_of_failing_requests(tmp_path):
    with MockServerProcess("--rate-500", "1") as server:
        config = write_config(tmp_path, server.base_url, retry={"max_attempts": 1},
                              max_in_flight=4)
        data = yaml.safe_load(config.read_text())
        data["stop_on_error_rate"] = {"rate": 0.5, "window": 10}
        config.write_text(yaml.safe_dump(data))
        stopped = gristmill("run", str(config), "--run-dir", str(tmp_path / "run"))
    assert stopped.returncode == 4, stopped.stderr
    assert "ServerError" in stopped.stderr and "stop_on_error_rate" in stopped.stderr
    ended = summary(tmp_path / "run")
    assert (ended["status"], ended["stop_reason"]) == ("failed", "error_rate")
    assert ended["seeds"] < SEEDS  # it stopped admitting


def test_validator_rejects_never_count_toward_the_error_rate(tmp_path):
    """Every answer is bad (the validators reject them all), yet no request failed."""
    with MockServerProcess("--bad-rate", "1") as server:
        config = write_config(tmp_path, server.base_url)
        data = yaml.safe_load(config.read_text())
        data["stop_on_error_rate"] = {"rate": 0.1, "window": 10}
        config.write_text(yaml.safe_dump(data))
        done = gristmill("run", str(config), "--run-dir", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr
    ended = summary(tmp_path / "run")
    assert ended["rejects"] > 10 and ended["stop_reason"] == "complete"


async def test_a_fatal_stop_leaves_nothing_in_flight(tmp_path):
    with MockServerProcess("--unauthorized-after", "20", "--latency-ms", "20") as server:
        config = validate_config(pipeline_config(server.base_url, tmp_path, seeds=SEEDS))
        the_run = Run(config, RunOptions(run_dir=tmp_path / "run", progress=False))
        with pytest.raises(FatalUpstream, match="401"):
            await the_run.execute()
    client = the_run.clients["default"]
    assert client.in_flight == 0 and client.pool.waiting == 0
    assert all(e.outstanding == 0 for e in client.backend.endpoints.endpoints)
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert the_run.outcome is not None and the_run.outcome.exit_code == 3


def test_a_fleet_that_cannot_start_stops_the_run(tmp_path):
    """`vllm serve` exits at once (the GRISTMILL_VLLM_COMMAND hook runs `false`): exit 3."""
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path, seeds=SEEDS)
    data["backends"]["default"] = {"kind": "vllm", "model": "mock",
                                   "fleet": {"servers": 1, "startup_timeout_s": 30}}
    config = tmp_path / "fleet.yaml"
    config.write_text(yaml.safe_dump(data))
    env = {**os.environ, "GRISTMILL_VLLM_COMMAND": "false"}
    stopped = subprocess.run([*GRISTMILL, "run", str(config), "--run-dir", str(tmp_path / "run"),
                              "--no-progress"], capture_output=True, text=True, timeout=120,
                             env=env)
    assert stopped.returncode == 3, stopped.stderr
    assert "did not start" in stopped.stderr and "Traceback" not in stopped.stderr
    assert summary(tmp_path / "run")["stop_reason"] == "fatal_upstream"
