"""The `gristmill` command as a user runs it: a real process against a real mock server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml

from tests.conftest import pipeline_config

GRISTMILL = [sys.executable, "-m", "gristmill"]


def gristmill(*args: str, cwd: Path, env: dict | None = None, timeout: float = 120):
    return subprocess.run([*GRISTMILL, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def write_config(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_run_writes_the_run_directory(mock_server, tmp_path):
    config = write_config(tmp_path, pipeline_config(mock_server.base_url, tmp_path, seeds=6))
    result = gristmill("run", str(config), "--run-dir", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} >= {"config.yaml", "output.jsonl", "rejects.jsonl",
                                               "summary.json", "run.log"}
    records = read_jsonl(out / "output.jsonl")
    assert len(records) == 12 and len({r["id"] for r in records}) == 12
    record = records[0]
    assert [m["role"] for m in record["messages"]] == ["user", "assistant"]
    assert [step["stage"] for step in record["lineage"]] == ["seed", "question", "answer1"]
    assert record["usage"]["completion_tokens"] > 0 and record["model"] == "mock"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["records"] == 12 and summary["seeds"] == 6
    assert "records 12" in result.stdout


def test_limit_seeds_and_backend_url_options(mock_server, tmp_path):
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path, seeds=10)  # nothing listens
    config = write_config(tmp_path, data)
    other = tmp_path / "other.jsonl"
    other.write_text("".join('{"text": "Other seed %d about tides."}\n' % i for i in range(4)))
    result = gristmill("run", str(config), "--run-dir", "a", "--limit", "3",
                       "--backend-url", mock_server.base_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["seeds"] == 3
    result = gristmill("run", str(config), "--run-dir", "b", "--seeds", str(other),
                       "--backend-url", mock_server.base_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = read_jsonl(tmp_path / "b" / "output.jsonl")
    assert len(records) == 8


def test_default_run_dir_is_under_runs_in_the_current_directory(mock_server, tmp_path):
    config = write_config(tmp_path, pipeline_config(mock_server.base_url, tmp_path, seeds=1))
    result = gristmill("run", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("test-") and (run_dir / "output.jsonl").stat().st_size > 0


def test_set_override_and_bad_config_exit_code(mock_server, tmp_path):
    config = write_config(tmp_path, pipeline_config(mock_server.base_url, tmp_path, seeds=2))
    result = gristmill("validate", str(config), "--set", "stages.question.fan_out=0",
                       cwd=tmp_path)
    assert result.returncode == 2
    assert "stages[0].fan_out" in result.stderr and "got 0" in result.stderr
    result = gristmill("run", str(config), "--run-dir", "x", "--set",
                       "stages.question.fan_out=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(read_jsonl(tmp_path / "x" / "output.jsonl")) == 2 * 2 * 2


def test_failures_are_rejects_and_the_run_still_exits_zero(mock_server_factory, tmp_path):
    server = mock_server_factory("--rate-500", "1.0")
    data = pipeline_config(server.base_url, tmp_path, seeds=3,
                           retry={"max_attempts": 2, "base_s": 0.01, "max_s": 0.01})
    result = gristmill("run", str(write_config(tmp_path, data)), "--run-dir", "r", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rejects = read_jsonl(tmp_path / "r" / "rejects.jsonl")
    assert len(rejects) == 3
    assert {r["error"] for r in rejects} == {"ServerError"}
    for r in rejects:
        assert r["stage"] == "question" and r["attempt"] == 2 and "HTTP 500" in r["reason"]
        assert set(r) >= {"id", "stage", "reason", "attempt", "text"}
    assert "rejected 3 × question: ServerError" in result.stdout


def test_unparseable_model_answer_is_a_counted_reject(mock_server, tmp_path):
    data = pipeline_config(mock_server.base_url, tmp_path, seeds=4)
    data["stages"][0]["output"]["json_schema"] = False  # the mock then answers prose
    data["stages"][0]["output"]["min_items"] = 1
    result = gristmill("run", str(write_config(tmp_path, data)), "--run-dir", "r", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rejects = read_jsonl(tmp_path / "r" / "rejects.jsonl")
    assert len(rejects) == 4 and {r["validator"] for r in rejects} == {"parse"}
    assert all(r["text"] and "unparseable list" in r["reason"] for r in rejects)


def test_api_key_never_reaches_the_run_directory_or_output(mock_server, tmp_path):
    secret = "sk-test-7f3a9c1e5b2d4a6f8e0c"
    data = pipeline_config(mock_server.base_url, tmp_path, seeds=2, api_key_env="MILL_KEY")
    data["stages"][0]["prompt"] = "Ask {{ seed }}"
    result = gristmill("run", str(write_config(tmp_path, data)), "--run-dir", "r",
                       cwd=tmp_path, env={"MILL_KEY": secret})
    bad_url = gristmill("run", str(write_config(tmp_path, data)), "--run-dir", "r2",
                        "--backend-url", "http://127.0.0.1:9/v1", "--set",
                        "backends.default.unreachable_after_s=0.5", cwd=tmp_path,
                        env={"MILL_KEY": secret})
    assert result.returncode == 0 and bad_url.returncode == 3  # unreachable: a fatal stop
    for proc in (result, bad_url):
        assert secret not in proc.stdout + proc.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert "MILL_KEY" in (tmp_path / "r" / "config.yaml").read_text()  # the name, not the key


def test_demo_rehearses_on_the_mock_server(tmp_path):
    result = gristmill("demo", "--mock", "--run-dir", "demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = read_jsonl(tmp_path / "demo" / "output.jsonl")
    assert len(records) >= 5
    assert all(r["messages"][-1]["role"] == "assistant" and r["messages"][-1]["content"]
               for r in records)
    assert {r["skill"] for r in records} == {"reading_comprehension"}


def test_help_is_fast_and_lists_commands(tmp_path):
    result = gristmill("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("run", "demo", "validate", "mock-server"):
        assert command in result.stdout
    probe = subprocess.run([sys.executable, "-X", "importtime", "-m", "gristmill", "--help"],
                           capture_output=True, text=True, cwd=tmp_path)
    heavy = {"aiohttp", "pydantic", "rich", "vllm", "datasets", "pyarrow", "torch"}
    imported = {line.split("|")[-1].strip().split(".")[0] for line in probe.stderr.splitlines()}
    assert not heavy & imported


@pytest.mark.timeout(60)
def test_sigint_drains_and_exits_130(mock_server_factory, tmp_path):
    import signal
    import time

    server = mock_server_factory("--latency-ms", "30")
    data = pipeline_config(server.base_url, tmp_path, seeds=400, max_in_flight=4)
    proc = subprocess.Popen([*GRISTMILL, "run", str(write_config(tmp_path, data)), "--run-dir",
                             "r", "--no-progress"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    output = tmp_path / "r" / "output.jsonl"
    while time.monotonic() < deadline and server.stats()["completed"] < 20:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert 0 < summary["seeds"] < 400
    assert summary["records"] == 2 * summary["seeds"]  # admitted seeds were finished
    assert len(read_jsonl(output)) == summary["records"]  # and flushed
    assert "admitting no more seeds" in err
