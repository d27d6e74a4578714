"""A simulated reviewer for the mock's planted failure modes (`--plant`): it labels records of a
run by the planted truth, wrong on a given share of them, through the run's LabelStore, as
`gristmill review` would. The truth of a record is recomputed from its last user message
(`planted_kind`), so it needs no server."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gristmill.backends.mock.planted import GOOD, PLANT_KINDS, planted_kind
from gristmill.dataset.conversation import messages_of
from gristmill.flywheel.labels import LabelStore
from gristmill.flywheel.runrecords import run_records

CRITIQUES = {  # what a reviewer writes about each planted failure
    "hedge": "Opens with a hedge ('It may be worth noting that') instead of answering.",
    "short": "Far too short: one sentence where a summary was asked for.",
    "missing_field": "The JSON answer leaves out a field.",
    "off_topic": "Off topic: talks about baking bread, not the text it was given.",
    "contradiction": "Contradicts the input: restates one of its numbers wrongly.",
}


@dataclass(frozen=True)
class Planted:
    """How the run's server planted: what `planted_kind` needs besides the record."""

    rate: float
    kinds: tuple[str, ...] = PLANT_KINDS

    def truth(self, record: dict[str, Any]) -> str | None:
        """The planted kind of a record's answer (None: a good answer)."""
        messages = messages_of(record)
        cut = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
        kind = planted_kind({"messages": messages[:cut + 1]}, self.rate, self.kinds)
        return None if kind == GOOD else kind


def review(run_dir: Path, planted: Planted, n: int, noise: float, seed: int = 0
           ) -> dict[str, bool]:
    """Label n records of the run (drawn by `seed`) pass/fail by the planted truth, flipping a
    `noise` share of the labels; returns the labels given, by record id."""
    records = run_records(Path(run_dir))
    rng = random.Random(seed)
    chosen = sorted(rng.sample(sorted(records), min(n, len(records))))
    given: dict[str, bool] = {}
    with LabelStore(Path(run_dir) / "run.sqlite") as store:
        for t, record_id in enumerate(chosen):
            kind = planted.truth(records[record_id])
            passed = (kind is None) != (rng.random() < noise)  # a noisy reviewer errs
            critique = "" if passed else CRITIQUES.get(kind or "", "Not good enough.")
            store.add(record_id, passed, critique, reviewer="simulated", at=1_700_000_000 + t)
            given[record_id] = passed
    return given
