"""The benchmarks' simulated reviewer: labels a run's records by the mock's planted truth,
through the LabelStore, wrong on exactly the drawn noisy share, the same for the same seed."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from benchmarks.assertions import KINDS, config, write_seeds
from benchmarks.reviewer import CRITIQUES, Planted, review
from gristmill.backends.mock.process import MockServerProcess
from gristmill.config.load import validate_config
from gristmill.flywheel.labels import LabelStore
from gristmill.flywheel.runrecords import run_records
from gristmill.runs.runner import RunOptions, run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
PLANTED = Planted(0.5, KINDS)


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("planted")
    write_seeds(tmp / "seeds.jsonl", 120)
    with MockServerProcess("--plant", ",".join(KINDS), "--plant-rate", "0.5") as server:
        asyncio.run(run(validate_config(config(server.base_url, tmp / "seeds.jsonl")),
                        RunOptions(run_dir=tmp / "run", progress=False)))
        assert sum(server.stats()["planted"].values()) == sum(
            PLANTED.truth(r) is not None for r in run_records(tmp / "run").values())
    return tmp / "run"


def copy(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


def test_labels_follow_the_planted_truth_without_noise(planted_run, tmp_path):
    run_dir = copy(planted_run, tmp_path)
    records = run_records(run_dir)
    given = review(run_dir, PLANTED, 30, 0.0, seed=1)
    assert len(given) == 30
    with LabelStore(run_dir / "run.sqlite") as store:
        stored = store.latest("")
    assert {i: label.passed for i, label in stored.items()} == given
    truth = {i: PLANTED.truth(records[i]) for i in given}
    assert given == {i: kind is None for i, kind in truth.items()}
    assert 5 <= sum(not p for p in given.values()) <= 25
    assert all(stored[i].critique == CRITIQUES[k] for i, k in truth.items() if k)


def test_noise_flips_labels_deterministically(planted_run, tmp_path):
    first = review(copy(planted_run, tmp_path / "a"), PLANTED, 40, 0.3, seed=5)
    again = review(copy(planted_run, tmp_path / "b"), PLANTED, 40, 0.3, seed=5)
    records = run_records(planted_run)
    wrong = [i for i, p in first.items() if p != (PLANTED.truth(records[i]) is None)]
    assert first == again and 3 <= len(wrong) <= 21
    flipped = review(copy(planted_run, tmp_path / "c"), PLANTED, 40, 1.0, seed=5)
    assert all(p != (PLANTED.truth(records[i]) is None) for i, p in flipped.items())
