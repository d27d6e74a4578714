"""`gristmill assertions suggest RUN --llm`: the judge's backend proposes assertions in the
vocabulary under a JSON-schema response_format; malformed proposals are counted and skipped;
`llm` proposals are judged on the labelled records and can be kept. End to end on the mock
(its proposer and judge: docs/mock-server.md) over a run with planted failures."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from benchmarks.reviewer import review
from gristmill.assertions.files import read_assertions
from gristmill.assertions.propose import parse_proposals, proposal_format
from gristmill.assertions.vocabulary import LlmCriterion, Regex
from tests.test_durability import GRISTMILL
from tests.test_simulated_reviewer import PLANTED, planted_run  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_proposals_are_parsed_into_the_vocabulary_and_malformed_ones_skipped():
    got = parse_proposals('{"assertions": [{"kind": "regex", "pattern": "\\\\bmaybe\\\\b"}, '
                          '{"kind": "regex", "pattern": "(x"}, {"kind": "length", "min": 9, '
                          '"max": 2}, {"kind": "python", "code": "1"}, {"kind": "llm", "name": '
                          '"faithful", "question": "Does it agree with the input?"}, '
                          '{"kind": "regex", "pattern": "\\\\bmaybe\\\\b"}]}')
    assert got.assertions == [Regex(pattern=r"\bmaybe\b"),
                              LlmCriterion(name="faithful", question="Does it agree with the input?")]
    assert len(got.invalid) == 3 and "not a valid regex" in got.invalid[0]
    assert parse_proposals("not json").invalid == ["the answer is not a JSON object"]
    assert proposal_format()["json_schema"]["name"] == "assertion_proposals"


def test_suggest_llm_keeps_a_criterion_the_judge_uses_to_catch_contradictions(
        planted_run, mock_server, tmp_path):  # noqa: F811
    run_dir = shutil.copytree(planted_run, tmp_path / "run")
    review(run_dir, PLANTED, 120, 0.0)
    args = ["assertions", "suggest", str(run_dir), "--alpha", "0.9", "--tau", "0.1"]
    done = subprocess.run([*GRISTMILL, *args, "--llm", "--backend-url", mock_server.base_url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "1 malformed (skipped)" in done.stdout and "(unclosed" in done.stdout
    kept = read_assertions(run_dir / "assertions" / "assertions-v1.yaml").assertions
    (criterion,) = [a for a in kept if isinstance(a, LlmCriterion)]
    assert "input" in criterion.question
    assert mock_server.stats()["judge_requests"] >= 80  # proposals, then training verdicts
