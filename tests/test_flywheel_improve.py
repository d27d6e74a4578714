"""`gristmill flywheel improve` against the real mock server: a judged run labelled by a 'human'
(an answer about the budget fails) is improved in one command (the judge aligned, assertions
mined and selected, the next config written with both), and the next config runs and keeps no
answer about the budget. Without a judge, alignment is skipped; the AgentInstruct flow gets
the file in its own validators."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import orjson
import pytest
import yaml

from gristmill.assertions.files import read_assertions
from gristmill.assertions.vocabulary import Regex
from gristmill.config.load import load_config, read_run_config, validate_config
from gristmill.flywheel.improve import next_config
from gristmill.flywheel.labels import LabelStore
from gristmill.flywheel.runrecords import run_records
from gristmill.runs.runner import RunOptions, run
from tests.test_durability import GRISTMILL
from tests.test_judge_stage import judged_config

pytestmark = pytest.mark.integration
BUDGET = re.compile(r"\bbudget\b", re.IGNORECASE)


def answer(record: dict) -> str:
    return record["messages"][-1]["content"]


def gristmill(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*GRISTMILL, *args], capture_output=True, text=True, timeout=300)


async def labelled_run(base_url: str, tmp_path: Path, judged: bool, labelled: int = 40) -> Path:
    data = judged_config(base_url, tmp_path, seeds=20, on_fail="flag")
    if not judged:
        del data["judge"]
    await run(validate_config(data), RunOptions(run_dir=tmp_path / "run", progress=False))
    records = sorted(run_records(tmp_path / "run").values(), key=lambda r: r["id"])
    with LabelStore(tmp_path / "run" / "run.sqlite") as store:
        for t, record in enumerate(records[:labelled]):
            bad = BUDGET.search(answer(record)) is not None
            store.add(record["id"], not bad, "mentions the budget" if bad else "",
                      at=1_700_000_000 + t)
    return tmp_path / "run"


async def test_improve_aligns_suggests_and_writes_a_config_that_runs(mock_server, tmp_path):
    run_dir = await labelled_run(mock_server.base_url, tmp_path, judged=True)
    out = tmp_path / "next.yaml"
    done = gristmill("flywheel", "improve", str(run_dir), "--out", str(out))
    assert done.returncode == 0, done.stderr
    file = (run_dir / "assertions" / "assertions-v1.yaml").resolve()
    assert (run_dir / "judge" / "judge-v1.yaml").is_file()
    said = done.stdout
    assert said.index("1. judge align") < said.index("2. assertions suggest") < \
        said.index("3. next config")
    assert "wrote" in said and "judge-v1.yaml" in said
    assert f"stages[1].validators.assertions: {file.name}" in said and "judge: judge-v1" in said
    assert f"next: gristmill run {out.resolve()}" in said and "gristmill review" in said
    data = yaml.safe_load(out.read_text())
    assert data["stages"][1]["validators"]["assertions"] == str(file)
    assert data["judge"]["version"] == "judge-v1" and data["judge"]["examples"]
    before = read_run_config(run_dir)
    assert {k: v for k, v in data.items() if k not in ("stages", "judge")} == \
        {k: v for k, v in before.items() if k not in ("stages", "judge")}
    assert read_assertions(file).assertions == [Regex(pattern=r"\bbudget\b")]

    new = tmp_path / "new"
    ran = gristmill("run", str(out), "--run-dir", str(new), "--no-progress")
    assert ran.returncode == 0, ran.stderr
    kept = [orjson.loads(x) for x in (new / "output.jsonl").read_bytes().splitlines()]
    assert kept and not any(BUDGET.search(answer(r)) for r in kept)
    assert all(r["judge"]["version"] == "judge-v1" for r in kept)
    summary = orjson.loads((new / "summary.json").read_bytes())
    assert summary["validation"]["rejected_by_validator"].get("assertions", 0) > 0


async def test_without_a_judge_alignment_is_skipped(mock_server, tmp_path):
    run_dir = await labelled_run(mock_server.base_url, tmp_path, judged=False)
    done = gristmill("flywheel", "improve", str(run_dir))
    assert done.returncode == 0, done.stderr
    assert "1. judge align: skipped (the run has no `judge:`)" in done.stdout
    data = yaml.safe_load((run_dir / "next-config.yaml").read_text())
    assert "judge" not in data or data["judge"] is None
    assert data["stages"][1]["validators"]["assertions"].endswith("assertions-v1.yaml")
    assert not (run_dir / "judge").exists()


async def test_too_few_labels_is_a_clear_error(mock_server, tmp_path):
    run_dir = await labelled_run(mock_server.base_url, tmp_path, judged=False, labelled=3)
    done = gristmill("flywheel", "improve", str(run_dir))
    assert done.returncode == 2 and "3 labelled record(s)" in done.stderr
    assert not (run_dir / "next-config.yaml").exists()


def test_the_agentinstruct_flow_takes_the_file_in_its_validators(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text(yaml.safe_dump({"assertions": [
        {"kind": "regex", "pattern": "x"},
        {"kind": "llm", "name": "cites_passage", "question": "Does it cite the passage?"}]}))
    config = load_config("demo_agentinstruct").model_dump(mode="json")
    data, where = next_config(config, path, None)
    assert where == "agentinstruct.validators.assertions"
    assert data["agentinstruct"]["validators"]["assertions"] == str(path)
    assert config["agentinstruct"]["validators"].get("assertions") is None  # not edited
    loaded = validate_config(data)
    assert loaded.agentinstruct.validators.assertions == path
    assert loaded.judge.criteria[-1].name == "cites_passage"  # the LLM criterion: the judge's
    assert data["judge"] == {} and config.get("judge") is None  # the default judge asks it
