"""Assertions end to end against the real mock server: a run, labels written with the label
store that fail every answer about the budget, `gristmill assertions suggest` and `report`,
then a run with `validators: {assertions: FILE}` that rejects what the file says (streamed and
not), and the LLM criteria of a file joining the judge's."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import orjson
import pytest
import yaml

from gristmill.assertions.files import read_assertions
from gristmill.assertions.vocabulary import LlmCriterion, Regex, as_data
from gristmill.config.load import validate_config
from gristmill.errors import ConfigError
from gristmill.flywheel.labels import LabelStore
from gristmill.flywheel.runrecords import run_records
from gristmill.runs.runner import RunOptions, run
from tests.conftest import pipeline_config
from tests.test_durability import GRISTMILL

pytestmark = pytest.mark.integration
BUDGET = re.compile(r"\bbudget\b", re.IGNORECASE)


def answer(record: dict) -> str:
    return record["messages"][-1]["content"]


def lines(path: Path) -> list[dict]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()] if path.is_file() else []


def config(base_url: str, tmp_path: Path, **validators) -> dict:
    data = pipeline_config(base_url, tmp_path, seeds=30, stages=2)
    data["stages"][-1]["validators"] = {"max_regenerations": 0, **validators}
    return data


def gristmill(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*GRISTMILL, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def labelled_run(mock_server, tmp_path_factory) -> Path:
    """A run whose records a 'human' labelled: an answer about the budget fails."""
    tmp = tmp_path_factory.mktemp("labelled")
    import asyncio

    asyncio.run(run(validate_config(config(mock_server.base_url, tmp)),
                    RunOptions(run_dir=tmp / "run", progress=False)))
    records = sorted(run_records(tmp / "run").values(), key=lambda r: r["id"])
    with LabelStore(tmp / "run" / "run.sqlite") as store:
        for t, record in enumerate(records):
            bad = BUDGET.search(answer(record)) is not None
            store.add(record["id"], not bad, "mentions the budget" if bad else "",
                      at=1_700_000_000 + t)
    return tmp / "run"


def test_suggest_keeps_the_budget_regex_and_report_measures_it(labelled_run):
    records = run_records(labelled_run).values()
    fails = sum(BUDGET.search(answer(r)) is not None for r in records)
    assert 5 <= fails <= len(records) - 5  # the mock writes about the budget now and then
    done = gristmill("assertions", "suggest", str(labelled_run))
    assert done.returncode == 0, done.stderr
    path = labelled_run / "assertions" / "assertions-v1.yaml"
    loaded = read_assertions(path)
    budget = Regex(pattern=r"\bbudget\b")
    assert loaded.assertions == [budget]
    assert f"{budget.id}" in done.stdout and "kept 1" in done.stdout
    assert "held out" in done.stdout and f"wrote {path}" in done.stdout
    provenance = loaded.provenance
    assert provenance["labels"] == len(records) and provenance["alpha"] == 0.6
    assert provenance["tau"] == 0.25 and provenance["coverage"] == 1.0
    assert provenance["held_out_agreement"]["accuracy"] == 1.0
    assert loaded.stats[budget.id]["coverage"] == 1.0 and loaded.stats[budget.id]["ffr"] == 0.0
    report = gristmill("assertions", "report", str(labelled_run))
    assert report.returncode == 0, report.stderr
    row = next(line for line in report.stdout.splitlines() if budget.id in line)
    assert row.split()[1] == str(fails)  # it catches every failure over all labels
    assert "held out" in report.stdout and "kappa 1.00" in report.stdout


def test_suggest_reports_infeasible_alpha_and_bad_arguments(labelled_run):
    done = gristmill("assertions", "suggest", str(labelled_run), "--alpha", "1", "--tau", "-1")
    assert done.returncode == 2 and "--tau -1.0: a fraction" in done.stderr
    empty = labelled_run.parent / "empty"
    empty.mkdir()
    (empty / "output.jsonl").write_text("")
    done = gristmill("assertions", "suggest", str(empty))
    assert done.returncode == 2 and "0 labelled record(s)" in done.stderr


@pytest.mark.parametrize("stream", [False, True])
async def test_a_run_with_the_file_rejects_what_it_says(mock_server, labelled_run, tmp_path,
                                                        stream):
    path = tmp_path / "budget.yaml"
    budget = Regex(pattern=r"\bbudget\b")
    path.write_text(yaml.safe_dump({"assertions": [as_data(budget)]}))
    data = config(mock_server.base_url, tmp_path, assertions="budget.yaml")
    data["stages"][-1]["stream"] = stream
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(data))
    from gristmill.config.load import load_config

    loaded = load_config(tmp_path / "pipeline.yaml")
    assert loaded.stages[-1].validators.assertions == path  # relative to the config's folder
    summary = await run(loaded, RunOptions(run_dir=tmp_path / "r", progress=False))
    before = [r for r in run_records(labelled_run).values() if BUDGET.search(answer(r))]
    rejects = [r for r in lines(tmp_path / "r" / "rejects.jsonl") if r["stage"] == "answer1"]
    assert len(rejects) == len(before) > 0
    assert all(r["validator"] == "assertions" and budget.id in r["reason"] for r in rejects)
    kept = lines(tmp_path / "r" / "output.jsonl")
    assert kept and not any(BUDGET.search(answer(r)) for r in kept)
    assert summary["validation"]["rejected_by_validator"] == {"assertions": len(before)}
    assert (summary["validation"]["streams_aborted"] > 0) == stream


def test_llm_criteria_join_the_judge_or_ask_for_one(mock_server, tmp_path):
    path = tmp_path / "a.yaml"
    cites = LlmCriterion(name="cites_passage", question="Does the answer cite the passage?")
    path.write_text(yaml.safe_dump({"assertions": [as_data(Regex(pattern="x")),
                                                   as_data(cites)]}))
    data = config(mock_server.base_url, tmp_path, assertions=str(path))
    with pytest.raises(ConfigError, match=r"stages\[1\].validators.assertions: .* has LLM "
                       r"criteria \(cites_passage\).*add a `judge:` section"):
        validate_config(data)
    data["judge"] = {"on_fail": "flag"}
    judged = validate_config(data)
    names = [c.name for c in judged.judge.criteria]
    assert names == ["follows_instruction", "faithful", "well_written", "cites_passage"]
    assert judged.judge.criteria[-1].question == cites.question
    again = validate_config(judged.model_dump(mode="json"))  # a resume: not added twice
    assert [c.name for c in again.judge.criteria] == names


def test_the_agentinstruct_flow_takes_a_file_and_its_criteria(tmp_path):
    from gristmill.config.load import load_config

    path = tmp_path / "a.yaml"
    cites = LlmCriterion(name="cites_passage", question="Does the answer cite the passage?")
    path.write_text(yaml.safe_dump({"assertions": [as_data(Regex(pattern="x")),
                                                   as_data(cites)]}))
    config = load_config("agentinstruct", [f"agentinstruct.validators.assertions={path}"])
    assert config.agentinstruct.validators.assertions == path
    assert config.judge.criteria[-1].name == "cites_passage"
    path.write_text("assertions:\n  - {kind: llm, name: 'not a name', question: q}\n")
    with pytest.raises(ConfigError, match=r"agentinstruct.validators.assertions: .*"
                       r"assertions\[0\] \(llm\): name"):
        load_config("agentinstruct", [f"agentinstruct.validators.assertions={path}"])


async def test_a_damaged_file_stops_the_run_before_any_request(mock_server, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("assertions:\n  - {kind: length, unit: words}\n")
    config_ = validate_config(config(mock_server.base_url, tmp_path, assertions=str(path)))
    requests = mock_server.stats()["requests"]
    with pytest.raises(ConfigError, match=r"bad.yaml: assertions\[0\].*min, max or both"):
        await run(config_, RunOptions(run_dir=tmp_path / "r", progress=False))
    assert mock_server.stats()["requests"] == requests
