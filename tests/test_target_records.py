"""Stop at N good records (`--target-records N`, `target_records:`): the run stops admitting
once N records are kept, lets started work finish, ends finished with stop reason `target`
and writes exactly N records to dataset.jsonl: the first N in seed order, the same N whatever
order answers arrived in, dedup on or off, across a resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from gristmill.config.load import load_config
from gristmill.dataset.dedup import Deduper, OnlineDeduper, instruction_text
from gristmill.runs.options import RunOptions, kept_settings, with_kept_settings
from gristmill.runs.target import Target
from gristmill.runs.target_plan import estimate
from gristmill.seeds import SeedSource
from tests.conftest import pipeline_config

SEEDS = 200  # two records a seed: 100 records take about 50 seeds; the rest stay unread


# -- the counting, as plain functions ------------------------------------------------------
def _record(rid: str, text: str = "") -> dict[str, Any]:
    return {"id": rid, "messages": [{"role": "user", "content": text or rid}]}


def test_the_count_moves_over_done_seeds_in_seed_order_only():
    target = Target(3)
    for seed, place in (("a", 0), ("b", 1), ("c", 2)):
        target.admitted(seed, place)
    target.record("c", _record("c1"))
    target.record("c", _record("c2"))
    assert not target.seed_done("c")  # seeds before it may still add records
    target.record("b", _record("b2"))
    target.record("b", _record("b1"))
    assert not target.seed_done("b") and target.chosen == []
    target.record("a", _record("a1"))
    assert target.seed_done("a")  # a, b, c pass at once: 5 records, the first 3 count
    assert target.chosen == ["a1", "b1", "b2"]  # seed order, then id within a seed
    assert target.summary() == {"records": 3, "reached": True, "dataset": 3}


def test_with_dedup_an_earlier_seed_keeps_the_text_and_a_duplicate_does_not_count():
    target = Target(2, OnlineDeduper(), instruction_text)
    for seed, place in (("a", 0), ("b", 1), ("c", 2)):
        target.admitted(seed, place)
    same = "What did the miller grind in the spring before the river rose again?"
    target.record("b", _record("b-dup", same))  # a smaller id than a's, but a later seed
    target.record("a", _record("z-first", same))
    assert not target.seed_done("b")
    assert not target.seed_done("a")  # one counts: b's is an exact duplicate of a's
    target.record("c", _record("c1", "A different question about weirs and sluice gates."))
    assert target.seed_done("c")
    assert target.chosen == ["z-first", "c1"]
    assert target.dedup.stats()["exact_duplicates"] == 1


def test_online_dedup_decides_like_the_batch_dedup_in_the_same_order():
    texts = [f"question {i % 7} about the mill wheel and its {'old ' * (i % 3)}stones"
             for i in range(40)]
    texts += [t + " today" for t in texts[:10]]  # near duplicates
    online = OnlineDeduper()
    kept_online = [i for i, t in enumerate(texts) if online.check(t)]
    batch = Deduper()
    for i, text in enumerate(texts):
        batch.add(f"{i:04d}", text)  # ids in arrival order: the batch decides in that order
    assert kept_online == [int(rid) for rid in batch.decide().kept]
    assert online.stats()["kept"] == len(kept_online) < len(texts)


def test_the_target_is_kept_by_a_resume_and_0_lifts_it():
    assert kept_settings(RunOptions(limit=3, target_records=10)) == {"limit": 3,
                                                                     "target_records": 10}
    assert with_kept_settings(RunOptions(), {"target_records": 10}).target_records == 10
    assert with_kept_settings(RunOptions(target_records=0),
                              {"target_records": 10}).target_records == 0


def test_the_estimate_divides_by_the_keep_rate():
    plan = {"seeds": 10, "records": 20, "requests": 30, "prompt_tokens": 100,
            "completion_tokens": 1000}
    est = estimate(plan, 100, 0.8, None)
    assert est["seeds"] == 125 and est["requests"] == 375 and est["completion_tokens"] == 12500
    assert estimate(plan, 100, None, None)["seeds"] == 50  # at most 2 records a seed


# -- the real command against the mock server -------------------------------------------------
def _config(tmp_path: Path, base_url: str, **extra: Any) -> Path:
    # 8 in flight: stage queues hold a few dozen seeds, so the run stops well before the last
    config = {**pipeline_config(base_url, tmp_path, seeds=SEEDS, max_in_flight=8), **extra}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _gristmill(*args: str, code: int = 0) -> str:
    done = subprocess.run([sys.executable, "-m", "gristmill", *args, "--no-progress"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == code, done.stdout + done.stderr
    return done.stdout


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())


def _first_in_seed_order(config: Path, run_dir: Path, n: int, dedup: bool) -> list[str]:
    """The first n records of a run without a target, by seed order (then id), after dedup
    in that order when it is on: what a target run's dataset must be."""
    place = {seed.id: i for i, seed in enumerate(SeedSource(load_config(config).seeds))}
    records = sorted(_lines(run_dir / "output.jsonl"),
                     key=lambda r: (place[r["seed_id"]], r["id"]))
    if dedup:
        online = OnlineDeduper()
        records = [r for r in records if online.check(instruction_text(r))]
    return [r["id"] for r in records[:n]]


@pytest.mark.parametrize("dedup", [True, False])
def test_target_100_gives_exactly_the_first_100_in_seed_order(mock_server, tmp_path, dedup):
    config = _config(tmp_path, mock_server.base_url)
    switch = ["--set", f"dedup.enabled={str(dedup).lower()}"]
    whole, target = tmp_path / "whole", tmp_path / "target"
    _gristmill("run", str(config), "--run-dir", str(whole), *switch)
    out = _gristmill("run", str(config), "--run-dir", str(target), "--target-records", "100",
                     *switch)
    dataset = _lines(target / "dataset.jsonl")
    assert len(dataset) == 100
    summary = _summary(target)
    assert (summary["status"], summary["stop_reason"], summary["exit_code"]) == (
        "finished", "target", 0)
    assert summary["target"] == {"records": 100, "reached": True, "dataset": 100}
    assert "target 100 records: reached" in out
    assert summary["seeds"] < SEEDS  # it stopped admitting
    assert len(_lines(target / "output.jsonl")) >= 100  # overshoot stays in the log
    assert [r["id"] for r in dataset] == _first_in_seed_order(config, whole, 100, dedup)


def test_rejected_answers_do_not_count(mock_server_factory, tmp_path):
    server = mock_server_factory("--bad-rate", "0.3", "--bad-kinds", "refusal", "--seed", "5")
    config = _config(tmp_path, server.base_url)
    run_dir = tmp_path / "run"
    _gristmill("run", str(config), "--run-dir", str(run_dir), "--target-records", "60",
               "--set", "stages.question.validators.max_regenerations=0",
               "--set", "stages.answer1.validators.max_regenerations=0")
    summary = _summary(run_dir)
    assert summary["rejects"] > 0 and summary["stop_reason"] == "target"
    dataset = _lines(run_dir / "dataset.jsonl")
    assert len(dataset) == 60
    rejected = {r["item_id"] for r in _lines(run_dir / "rejects.jsonl")}
    assert not rejected & {step["id"] for r in dataset for step in r["lineage"]}


def test_a_resume_continues_to_the_same_n_and_the_same_dataset(mock_server, tmp_path):
    config = _config(tmp_path, mock_server.base_url, target_records=100)  # from the config
    once, twice = tmp_path / "once", tmp_path / "twice"
    _gristmill("run", str(config), "--run-dir", str(once))
    _gristmill("run", str(config), "--run-dir", str(twice), "--target-records", "100",
               "--limit", "20")  # 20 seeds make at most 40 records: the limit stops it first
    assert _summary(twice)["stop_reason"] == "limit"
    assert _summary(twice)["target"]["reached"] is False
    assert json.loads((twice / "settings.json").read_text()) == {"limit": 20,
                                                                 "target_records": 100}
    _gristmill("resume", str(twice), "--limit", "0")
    summary = _summary(twice)
    assert summary["stop_reason"] == "target" and summary["resumed_records"] > 0
    assert (twice / "dataset.jsonl").read_bytes() == (once / "dataset.jsonl").read_bytes()
    _gristmill("resume", str(twice))  # reached already: replays, stops at the same N
    assert _summary(twice)["stop_reason"] == "target"
    assert (twice / "dataset.jsonl").read_bytes() == (once / "dataset.jsonl").read_bytes()
    _gristmill("resume", str(twice), "--target-records", "0")  # lifted: every seed
    assert _summary(twice)["stop_reason"] == "complete" and "target" not in _summary(twice)


def test_when_the_seeds_run_out_the_run_is_complete_with_fewer(mock_server, tmp_path):
    config = _config(tmp_path, mock_server.base_url)
    run_dir = tmp_path / "run"
    out = _gristmill("run", str(config), "--run-dir", str(run_dir), "--target-records", "1000",
                     "--set", "dedup.enabled=false")
    summary = _summary(run_dir)
    assert summary["stop_reason"] == "complete" and summary["target"]["reached"] is False
    assert len(_lines(run_dir / "dataset.jsonl")) == summary["records_total"] == 2 * SEEDS
    assert "not reached" in out


def test_dry_run_estimates_the_seeds_for_a_target(mock_server, tmp_path):
    config = _config(tmp_path, mock_server.base_url)
    out = _gristmill("run", str(config), "--dry-run", "--target-records", "100",
                     "--keep-rate", "0.25")
    assert "target 100 records: about 400 seeds" in out and "--keep-rate 0.25" in out
    assert f"the source has {SEEDS} seeds" in out
    out = _gristmill("run", str(config), "--dry-run", "--target-records", "100")
    assert "about 50 seeds" in out and "no keep rate given" in out
    earlier = tmp_path / "earlier"
    _gristmill("run", str(config), "--run-dir", str(earlier), "--limit", "10",
               "--set", "dedup.enabled=false")
    out = _gristmill("run", str(config), "--dry-run", "--target-records", "100",
                     "--like", str(earlier))
    assert f"2 records kept per seed, measured on {earlier}" in out and "about 50 seeds" in out
    _gristmill("run", str(config), "--keep-rate", "0.5", code=2)  # only with a dry run


async def test_records_the_judge_fails_do_not_count(mock_server, tmp_path):
    from gristmill.config.load import validate_config
    from gristmill.runs.runner import run

    data = {**pipeline_config(mock_server.base_url, tmp_path, seeds=60), "judge": {}}
    config_path = tmp_path / "judged.yaml"
    config_path.write_text(yaml.safe_dump(data))
    whole, target = tmp_path / "whole", tmp_path / "target"
    await run(validate_config(data), RunOptions(run_dir=whole, progress=False))
    summary = await run(validate_config(data), RunOptions(run_dir=target, target_records=30,
                                                          progress=False))
    assert summary["stop_reason"] == "target" and summary["judge"]["failed"] > 0
    dataset = _lines(target / "dataset.jsonl")
    assert len(dataset) == 30 and all(r["judge"]["passed"] for r in dataset)
    assert [r["id"] for r in dataset] == _first_in_seed_order(config_path, whole, 30, True)
