"""The flywheel end to end against the real mock server: a judged run, human labels that follow
the mock judge's hidden rule, `gristmill judge align` (kappa must rise), `gristmill flywheel`
(a new versioned dataset; only judge calls are made; output.jsonl untouched)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from gristmill.config.pipeline import JudgeConfig
from gristmill.config.load import validate_config
from gristmill.flywheel.align import split_ids
from gristmill.flywheel.labels import LabelStore
from gristmill.flywheel.runrecords import run_records
from gristmill.flywheel.session import load_judge
from gristmill.runs.runner import RunOptions, run
from tests.test_durability import GRISTMILL
from tests.test_judge_stage import breaks_rule, judged_config, lines

AGREEMENT_KEYS = {"n", "accuracy", "accuracy_ci", "kappa", "kappa_ci", "tpr_fail",
                  "tpr_fail_ci", "tnr_fail", "tnr_fail_ci"}


async def labelled_run(base_url: str, tmp_path: Path, on_fail: str, seeds: int = 40,
                       labelled: int = 60, max_in_flight: int = 64) -> Path:
    """A judged run (80 records) whose first `labelled` records a 'human' labelled by the
    hidden rule: an answer about the budget fails."""
    run_dir = tmp_path / "run"
    data = judged_config(base_url, tmp_path, seeds=seeds, on_fail=on_fail)
    data["backends"]["default"]["max_in_flight"] = max_in_flight
    await run(validate_config(data), RunOptions(run_dir=run_dir, progress=False))
    records = sorted(run_records(run_dir).values(), key=lambda r: r["id"])
    with LabelStore(run_dir / "run.sqlite") as store:
        for t, record in enumerate(records[:labelled]):
            bad = breaks_rule(record)
            store.add(record["id"], not bad, "talks about the budget" if bad else "good",
                      at=1_700_000_000 + t, reviewer="tester")
    return run_dir


def gristmill(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([*GRISTMILL, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def label_criteria(run_dir: Path) -> set[str]:
    """Per-criterion labels of the 60 labelled records: `follows_instruction` by the hidden
    rule (the mock judge decides it by the rule, and passes every other criterion), and
    `faithful` failed on every other record. Returns those of the test split."""
    with LabelStore(run_dir / "run.sqlite") as store:
        overall = sorted(store.latest().values(), key=lambda label: label.record_id)
        for n, label in enumerate(overall):
            store.add(label.record_id, label.passed, criterion="follows_instruction",
                      at=label.labeled_at + 0.5)
            store.add(label.record_id, n % 2 != 0, criterion="faithful", at=label.labeled_at)
    test = set(split_ids([label.record_id for label in overall]).test)
    return {label.record_id for n, label in enumerate(overall) if n % 2 == 0} & test


def check_criteria(result: dict, printed: str, faithless: set[str]) -> None:
    """`faithless`: the test records the human failed on `faithful`."""
    criteria = result["criteria"]
    assert set(criteria) == {"faithful", "follows_instruction"}
    # labels like the overall ones on the criterion the judge decides: the same agreement
    follows = criteria["follows_instruction"]
    assert follows["after"] == result["overall"]
    assert follows["before"] == {k: v for k, v in result["before"].items() if k != "judge_version"}
    # the judge passes `faithful` always: it misses every human failure, no agreement
    # beyond chance
    faithful = criteria["faithful"]["after"]
    assert faithful["n"] == result["overall"]["n"] == 15
    assert faithful["confusion"] == {"tp": 0, "fp": 0, "fn": len(faithless),
                                     "tn": 15 - len(faithless)} and faithless
    lo, hi = faithful["kappa_ci"]
    assert faithful["kappa"] == 0.0 and lo < 0.0 < hi and faithful["tpr_fail"] == 0.0
    assert "per criterion on test" in printed
    line = next(x for x in printed.splitlines() if x.strip().startswith("faithful"))
    assert line.split()[1] == "15"


@pytest.mark.timeout(180)
async def test_align_raises_kappa_and_flywheel_writes_a_new_dataset(mock_server, tmp_path):
    run_dir = await labelled_run(mock_server.base_url, tmp_path, on_fail="flag")
    output_digest = hashlib.sha256((run_dir / "output.jsonl").read_bytes()).hexdigest()
    faithless = label_criteria(run_dir)

    aligned = gristmill("judge", "align", str(run_dir))
    assert "before (judge-v0)" in aligned.stdout and "after (judge-v1)" in aligned.stdout
    assert "kappa gain" in aligned.stdout and "uncertain" in aligned.stdout  # 15 test labels
    result = json.loads((run_dir / "judge" / "agreement.json").read_text())
    assert result["judge_version"] == "judge-v1" and result["computed_at"] > 0
    assert AGREEMENT_KEYS <= set(result["overall"]) and AGREEMENT_KEYS <= set(result["before"])
    assert result["overall"]["n"] == result["before"]["n"] == result["split"]["test"] == 15
    # with examples of the rule, the mock judge applies it: agreement rises
    assert result["overall"]["kappa"] > result["before"]["kappa"] + 0.3
    assert result["overall"]["kappa"] >= 0.6 and result["overall"]["tpr_fail"] >= 0.8
    lo, hi = result["overall"]["kappa_ci"]
    assert lo <= result["overall"]["kappa"] <= hi
    assert sum(p["n"] for p in result["trend"]) == 60
    check_criteria(result, aligned.stdout, faithless)
    assert [p["until"] for p in result["trend"]] == sorted(p["until"] for p in result["trend"])

    judge = load_judge(run_dir / "judge" / "judge-v1.yaml")
    assert isinstance(judge, JudgeConfig) and judge.version == "judge-v1"
    assert judge.examples and not judge.few_shot.from_labels
    # examples come from the train split only (never the test labels agreement is reported on)
    assert len(judge.examples) <= result["split"]["train"]
    assert any(not e.passed and breaks_rule({"messages": [{"content": e.answer}]})
               for e in judge.examples)

    mock_server.reset()
    wheel = gristmill("flywheel", str(run_dir))
    stats = mock_server.stats()
    assert stats["requests"] == stats["judge_requests"] > 0  # only judge calls were made
    summary = json.loads((run_dir / "judge" / "flywheel-judge-v1.json").read_text())
    # the labelled records were judged by judge-v1 during alignment: replayed from the cache
    assert summary["calls"]["cache_hits"] >= 60 and summary["calls"]["requests"] <= 20
    assert stats["judge_requests"] == summary["calls"]["requests"]
    assert "verdicts flipped" in wheel.stdout and "added" in wheel.stdout
    dataset = lines(run_dir / "dataset.judge-v1.jsonl")
    assert [r["id"] for r in dataset] == sorted(r["id"] for r in dataset)
    assert all(r["judge"]["version"] == "judge-v1" for r in dataset)
    # on_fail: flag keeps every record but the same near-duplicates as dataset.jsonl
    assert {r["id"] for r in dataset} == {r["id"] for r in lines(run_dir / "dataset.jsonl")}
    assert len(dataset) == summary["written"] and summary["added"] == summary["removed"] == 0
    flips = summary["flipped"]["pass_to_fail"] + summary["flipped"]["fail_to_pass"]
    assert flips > 0
    assert hashlib.sha256((run_dir / "output.jsonl").read_bytes()).hexdigest() == output_digest
    # the new judge follows the rule on most records, labelled or not
    agree = sum(r["judge"]["passed"] != breaks_rule(r) for r in dataset)
    assert agree >= 0.85 * len(dataset)

    mock_server.reset()
    gristmill("flywheel", str(run_dir))  # again: everything from the cache
    assert mock_server.stats()["requests"] == 0


@pytest.mark.timeout(180)
async def test_flywheel_brings_back_records_the_old_judge_rejected(mock_server, tmp_path):
    from gristmill.flywheel.align import align_run
    from gristmill.flywheel.rejudge import flywheel_run

    run_dir = await labelled_run(mock_server.base_url, tmp_path, on_fail="reject")
    rejected = {r["item_id"] for r in lines(run_dir / "rejects.jsonl") if r["stage"] == "judge"}
    assert rejected
    said: list[str] = []
    await align_run(run_dir, say=said.append)
    summary = await flywheel_run(run_dir, say=said.append)
    dataset = {r["id"]: r for r in lines(run_dir / "dataset.judge-v1.jsonl")}
    assert all(r["judge"]["passed"] for r in dataset.values())
    old = {r["id"] for r in lines(run_dir / "dataset.jsonl")}
    assert summary["added"] == len(dataset.keys() - old) > 0
    assert dataset.keys() - old <= rejected  # what came back had been rejected by judge-v0
    assert summary["removed"] == len(old - dataset.keys()) > 0
    assert any("verdicts flipped" in line for line in said)
    assert (await mock_server.idle())["in_flight"] == 0
    assert asyncio.all_tasks() == {asyncio.current_task()}  # nothing left running


@pytest.mark.timeout(180)
async def test_a_cancelled_flywheel_leaks_nothing_and_resumes_from_the_cache(
        mock_server_factory, tmp_path):
    from gristmill.flywheel.align import align_run
    from gristmill.flywheel.rejudge import flywheel_run

    server = mock_server_factory("--latency-ms", "30")
    run_dir = await labelled_run(server.base_url, tmp_path, on_fail="flag", seeds=60,
                                 max_in_flight=4)
    await align_run(run_dir, say=lambda line: None)
    server.reset()
    task = asyncio.create_task(flywheel_run(run_dir, say=lambda line: None))
    while server.stats()["judge_requests"] < 20:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert (await server.idle())["in_flight"] == 0
    assert not (run_dir / "dataset.judge-v1.jsonl").exists()  # written only when complete
    answered = server.stats()["completed"]
    summary = await flywheel_run(run_dir, say=lambda line: None)
    # 60 unlabelled records are new to judge-v1; what was answered before the cancel is
    # replayed (only answers sent while the client was cancelled, at most 4, are asked again)
    assert answered >= 16
    assert summary["calls"]["requests"] <= 60 - answered + 4
    assert summary["records_judged"] == 120


async def test_align_needs_enough_labels(mock_server, tmp_path):
    run_dir = await labelled_run(mock_server.base_url, tmp_path, on_fail="flag", seeds=4,
                                 labelled=3)
    result = subprocess.run([*GRISTMILL, "judge", "align", str(run_dir)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "3 labelled record(s)" in result.stderr
    result = subprocess.run([*GRISTMILL, "flywheel", str(run_dir)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "judge align" in result.stderr


@pytest.mark.timeout(180)
async def test_align_picks_the_question_that_agrees_with_the_reviewers(mock_server, tmp_path):
    from gristmill.flywheel.align import align_run

    # one example per prompt: the mock applies its rule at 0.3, or 0.6 when the criterion's
    # question names what the reviewers fail (see backends/mock/judge.py)
    naming = "Does the answer stay off the budget?"
    run_dir = tmp_path / "run"
    data = judged_config(mock_server.base_url, tmp_path, seeds=40, on_fail="flag",
                         few_shot={"k": 1},
                         criteria=[{"name": "quality", "question": "Is the answer good?",
                                    "alternatives": ["Is the answer helpful?", naming]}])
    await run(validate_config(data), RunOptions(run_dir=run_dir, progress=False))
    with LabelStore(run_dir / "run.sqlite") as store:
        for t, record in enumerate(sorted(run_records(run_dir).values(), key=lambda r: r["id"])):
            store.add(record["id"], not breaks_rule(record), at=float(t))
    said: list[str] = []
    await align_run(run_dir, say=said.append)
    judge = load_judge(run_dir / "judge" / "judge-v1.yaml")
    assert judge.criteria[0].question == naming
    assert sorted(judge.criteria[0].alternatives) == ["Is the answer good?",
                                                      "Is the answer helpful?"]
    assert any(line.startswith("criterion quality") for line in said)
