"""Drift in the report, against the real mock server: a judged run whose labels change their
mind at a known time (the early labels fail answers about the budget, the later ones answers
about the timeline). The report's drift panel shows the agreement per bucket of labels in time
order, for the judge and the run's assertion file, and flags that the newest labels would
select other assertions; with labels that keep one rule it does not."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from gristmill.assertions.files import write_assertions
from gristmill.assertions.vocabulary import Regex
from gristmill.config.load import validate_config
from gristmill.flywheel.agreement import wilson
from gristmill.flywheel.drift import buckets, drift
from gristmill.flywheel.labels import LabelStore
from gristmill.flywheel.runrecords import run_records
from gristmill.runs.runner import RunOptions, run
from tests.test_durability import GRISTMILL
from tests.test_judge_stage import judged_config

pytestmark = pytest.mark.integration
BUDGET, TIMELINE = re.compile(r"\bbudget\b", re.I), re.compile(r"\btimeline\b", re.I)
START = 1_700_000_000


def answer(record: dict) -> str:
    return record["messages"][-1]["content"]


@pytest.fixture(scope="module")
def judged_run(mock_server, tmp_path_factory) -> Path:
    import asyncio

    tmp = tmp_path_factory.mktemp("drift")
    asyncio.run(run(validate_config(judged_config(mock_server.base_url, tmp, seeds=40,
                                                  on_fail="flag")),
                    RunOptions(run_dir=tmp / "run", progress=False)))
    return tmp / "run"


def label(run_dir: Path, rule_of: callable, start: int = START) -> list[tuple[dict, bool]]:
    """Label every record, the i-th at `start` + i hours (inserted newest first, so time and not
    insertion order decides the buckets); rule_of(i) says which answers fail."""
    records = sorted(run_records(run_dir).values(), key=lambda r: r["id"])
    labelled = [(r, rule_of(i).search(answer(r)) is None) for i, r in enumerate(records)]
    with LabelStore(run_dir / "run.sqlite") as store:
        for i in reversed(range(len(labelled))):
            record, passed = labelled[i]
            store.add(record["id"], passed, "", at=start + 3600 * i)
    return labelled


def report(run_dir: Path) -> str:
    done = subprocess.run([*GRISTMILL, "report", str(run_dir)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return (run_dir / "report.html").read_text()


def test_buckets_are_consecutive_and_shrink_with_few_labels():
    assert buckets(80) == [range(0, 20), range(20, 40), range(40, 60), range(60, 80)]
    assert buckets(12) == [range(0, 6), range(6, 12)]
    assert buckets(3) == [range(0, 3)] and buckets(0) == []


def test_the_panel_shows_agreement_over_time_and_flags_changed_labels(judged_run):
    labelled = label(judged_run, lambda i: BUDGET if i < 40 else TIMELINE)
    budget = Regex(pattern=r"\bbudget\b")
    write_assertions(judged_run, [budget], {"alpha": 0.6, "tau": 0.25}, {})
    found = drift(judged_run)
    assert found["labels"] == 80 and found["file"] == "assertions-v1.yaml"
    assert [(b["first"], b["last"]) for b in found["buckets"]] == \
        [(1, 20), (21, 40), (41, 60), (61, 80)]
    for bucket in found["buckets"]:
        chunk = labelled[bucket["first"] - 1:bucket["last"]]
        assert bucket["from"] == START + 3600 * (bucket["first"] - 1)
        judge = [(r["judge"]["passed"], human) for r, human in chunk]
        right = sum(j == h for j, h in judge)
        assert bucket["judge"]["n"] == 20 and bucket["judge"]["accuracy"] == right / 20
        assert bucket["judge"]["accuracy_ci"] == list(wilson(right, 20))
        right = sum((BUDGET.search(answer(r)) is None) == h for r, h in chunk)
        assert bucket["assertions"]["accuracy"] == right / 20
    early, late = found["buckets"][0]["assertions"], found["buckets"][-1]["assertions"]
    assert early["accuracy"] == 1.0 and late["accuracy"] < 1.0  # the file no longer fits
    half = found["newest_half"]
    assert half["labels"] == 40 and half["held"] == [budget.id] and half["differs"]
    assert budget.id in half["dropped"] and half["would_keep"]
    page = report(judged_run)
    assert 'id="drift"' in page and "labels 61–80 · assertions" in page
    assert 'class="flag" id="drift-flag"' in page and budget.id in page


def test_labels_that_keep_one_rule_raise_no_flag(judged_run):
    label(judged_run, lambda i: BUDGET, START + 10**6)  # relabels: the newest label counts
    write_assertions(judged_run, [Regex(pattern=r"\bbudget\b")], {}, {})
    found = drift(judged_run)
    assert all(b["assertions"]["accuracy"] == 1.0 for b in found["buckets"])
    half = found["newest_half"]
    assert not half["differs"] and half["would_keep"] == half["held"]
    page = report(judged_run)
    assert 'class="note" id="drift-flag"' in page and 'class="flag"' not in page
