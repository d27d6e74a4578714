"""Each candidate assertion over the labelled records: which records it fails, its coverage of
the human failures and its false-failure rate on the human passes, with 95% Wilson intervals
(the judge agreement's maths: an assertion is a judge that fails a record or passes it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from gristmill.assertions.miner import Labelled
from gristmill.assertions.vocabulary import Assertion
from gristmill.flywheel.agreement import agreement, wilson


@dataclass(frozen=True)
class Evaluation:
    assertion: Assertion
    caught: frozenset[str]  # human-failed records it fails
    false_failures: frozenset[str]  # human-passed records it fails
    fails: int  # human-failed records in all
    passes: int  # human-passed records in all

    @property
    def coverage(self) -> float:
        return len(self.caught) / self.fails if self.fails else 0.0

    @property
    def ffr(self) -> float:
        return len(self.false_failures) / self.passes if self.passes else 0.0

    def stats(self) -> dict[str, Any]:
        return {"catches": len(self.caught), "false_failures": len(self.false_failures),
                "coverage": round(self.coverage, 4),
                "coverage_ci": [round(x, 4) for x in wilson(len(self.caught), self.fails)],
                "ffr": round(self.ffr, 4),
                "ffr_ci": [round(x, 4) for x in wilson(len(self.false_failures), self.passes)]}


def evaluate(assertion: Assertion, labelled: Sequence[Labelled]) -> Evaluation:
    failed = {x.record_id for x in labelled if not assertion.check(x.texts)}
    human_fails = {x.record_id for x in labelled if not x.passed}
    return Evaluation(assertion, frozenset(failed & human_fails),
                      frozenset(failed - human_fails), len(human_fails),
                      len(labelled) - len(human_fails))


def evaluate_all(assertions: Sequence[Assertion],
                 labelled: Sequence[Labelled]) -> list[Evaluation]:
    """The deterministic ones (LLM criteria are judged by the judge, not here)."""
    return [evaluate(a, labelled) for a in assertions if a.deterministic]


def set_pairs(assertions: Sequence[Assertion],
              labelled: Sequence[Labelled]) -> list[tuple[bool, bool]]:
    """(the set passes the record, the human passed it): a record passes the set when every
    deterministic assertion passes it."""
    checks = [a for a in assertions if a.deterministic]
    return [(all(a.check(x.texts) for a in checks), x.passed) for x in labelled]


def set_agreement(assertions: Sequence[Assertion], labelled: Sequence[Labelled]) -> dict[str, Any]:
    """The judge-agreement block (accuracy, kappa, coverage as tpr_fail...) of the whole set."""
    return agreement(set_pairs(assertions, labelled))

