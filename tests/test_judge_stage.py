"""The judge stage against the real mock server process: verdicts on records, rejects or
flags, unparseable verdicts regenerated then rejected, the AgentInstruct flow, and a kill -9
in the middle of judging."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import yaml

from gristmill.config.load import validate_config
from gristmill.runs.runner import RunOptions, run
from tests.conftest import pipeline_config
from tests.test_durability import GRISTMILL, finish
from tests.test_flows import flow_config

TRIGGER = re.compile(r"\bbudget\b", re.IGNORECASE)  # the mock judge's default hidden rule


def judged_config(base_url: str, tmp_path: Path, seeds: int = 10, **judge: Any) -> dict:
    data = pipeline_config(base_url, tmp_path, seeds=seeds, stages=2)
    data["judge"] = judge
    return data


def lines(path: Path) -> list[dict]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()] if path.is_file() else []


def breaks_rule(record: dict) -> bool:
    return TRIGGER.search(record["messages"][-1]["content"]) is not None


def check_verdict(verdict: dict, version: str, names: list[str]) -> None:
    assert verdict["version"] == version and isinstance(verdict["passed"], bool)
    assert list(verdict["criteria"]) == names
    for one in verdict["criteria"].values():
        assert isinstance(one["passed"], bool) and one["critique"]
    assert verdict["passed"] == all(v["passed"] for v in verdict["criteria"].values())


async def test_failed_records_are_rejected_with_their_verdict(mock_server, tmp_path):
    mock_server.reset()
    config = validate_config(judged_config(mock_server.base_url, tmp_path, seeds=15,
                                           version="judge-v7"))
    summary = await run(config, RunOptions(run_dir=tmp_path / "r", progress=False))
    out, rejects = lines(tmp_path / "r" / "output.jsonl"), lines(tmp_path / "r" / "rejects.jsonl")
    names = ["follows_instruction", "faithful", "well_written"]
    assert out and rejects and len(out) + len(rejects) == 30  # 15 seeds x 2 questions
    for record in out:
        check_verdict(record["judge"], "judge-v7", names)
        assert record["judge"]["passed"]
    for reject in rejects:
        assert reject["stage"] == "judge" and reject["validator"] == "judge"
        assert reject["record"]["judge"] == reject["judge"] and not reject["judge"]["passed"]
        check_verdict(reject["judge"], "judge-v7", names)
        assert reject["record"]["id"] == reject["item_id"] and reject["record"]["messages"]
        assert reject["reason"].startswith("failed ")
    assert summary["judge"]["judged"] == 30 and summary["judge"]["failed"] == len(rejects)
    assert summary["rejects_by_reason"] == {"judge: judge": len(rejects)}
    assert mock_server.stats()["judge_requests"] == 30
    # the judge passes the record on unchanged: its id is the answer's, lineage ends there
    assert all(r["lineage"][-1]["stage"] == "answer1" and r["lineage"][-1]["id"] == r["id"]
               for r in out)


async def test_flagged_records_stay_with_a_failing_verdict(mock_server, tmp_path):
    config = validate_config(judged_config(
        mock_server.base_url, tmp_path, seeds=15, on_fail="flag",
        criteria=[{"name": "thrift", "question": "Does the answer avoid budget talk?"}]))
    summary = await run(config, RunOptions(run_dir=tmp_path / "r", progress=False))
    out = lines(tmp_path / "r" / "output.jsonl")
    assert len(out) == 30 and summary["rejects"] == 0
    failed = [r for r in out if not r["judge"]["passed"]]
    assert failed and len(failed) < 30 and summary["judge"]["failed"] == len(failed)
    assert all(list(r["judge"]["criteria"]) == ["thrift"] for r in out)


async def test_unparseable_verdicts_are_regenerated_then_rejected(mock_server_factory, tmp_path):
    # only structured requests (the judge's) get broken JSON, 70% of the time
    server = mock_server_factory("--bad-rate", "0.7", "--bad-kinds", "json")
    data = judged_config(server.base_url, tmp_path, seeds=12, on_fail="flag",
                         max_regenerations=2)
    data["stages"][0]["output"] = {"type": "text"}  # plain questions: one record per seed
    summary = await run(validate_config(data), RunOptions(run_dir=tmp_path / "r",
                                                          progress=False))
    out, rejects = lines(tmp_path / "r" / "output.jsonl"), lines(tmp_path / "r" / "rejects.jsonl")
    assert len(out) + len(rejects) == 12 and rejects and out
    assert all(r["stage"] == "judge" and r["validator"] == "schema" and r["attempt"] == 3
               for r in rejects)
    assert all("judge" in r for r in out)
    regenerated = summary["validation"]["rejected_by_validator"]["schema"]
    assert regenerated >= len(rejects) * 3  # every reject was asked three times
    assert server.stats()["judge_requests"] == 12 + regenerated - len(rejects)


async def test_the_agentinstruct_flow_is_judged_with_skill_criteria(mock_server, tmp_path):
    config = flow_config(mock_server.base_url, ["coding"], agents_per_seed=1, refine_rounds=1)
    data = config.model_dump(mode="json")
    data["judge"] = {"on_fail": "flag", "skills": {"coding": [
        {"name": "runs", "question": "Would the code in the answer run as written?"}]}}
    config = validate_config(data)
    summary = await run(config, RunOptions(run_dir=tmp_path, progress=False, limit=2))
    out = lines(tmp_path / "output.jsonl")
    assert out and summary["judge"]["judged"] == len(out)
    for record in out:
        check_verdict(record["judge"], "judge-v0",
                      ["follows_instruction", "faithful", "well_written", "runs"])


def test_kill_9_while_judging_then_resume_gives_the_same_verdicts(mock_server_factory,
                                                                  tmp_path):
    server = mock_server_factory("--latency-ms", "10-30")
    data = judged_config(server.base_url, tmp_path, seeds=60)
    data["backends"]["default"]["max_in_flight"] = 4
    config = tmp_path / "judged.yaml"
    config.write_text(yaml.safe_dump(data))

    def start(run_dir: Path) -> subprocess.Popen:
        return subprocess.Popen([*GRISTMILL, "run", str(config), "--run-dir", str(run_dir),
                                 "--no-progress"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    finish(start(tmp_path / "reference"))
    server.reset()
    crashed = tmp_path / "crashed"
    for judged_before_kill in (15, 60):  # requests already made by the judge, then the kill
        proc = start(crashed)
        while server.stats()["judge_requests"] < judged_before_kill and proc.poll() is None:
            time.sleep(0.01)
        assert proc.poll() is None, "the run finished before the kill"
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    finish(start(crashed))
    for name in ("output.jsonl", "rejects.jsonl"):
        got = sorted((crashed / name).read_bytes().splitlines())
        assert got == sorted((tmp_path / "reference" / name).read_bytes().splitlines()), name
    # answers received before a kill are replayed: at most a few judge requests are repeated
    assert server.stats()["judge_requests"] <= 120 + 2 * (4 + 64)


async def test_the_shipped_judged_pipeline_runs(mock_server, tmp_path):
    from gristmill.config.load import load_config, with_cli_overrides

    config = with_cli_overrides(load_config("qa-judged"), backend_url=mock_server.base_url)
    summary = await run(config, RunOptions(run_dir=tmp_path, progress=False))
    out = lines(tmp_path / "output.jsonl")
    judged = summary["judge"]
    assert judged["judged"] == len(out) + judged["failed"] and judged["judged"] > 0
    assert all(r["judge"]["passed"] and set(r["judge"]["criteria"]) ==
               {"answers_question", "grounded", "concise"} for r in out)
