"""Drift: does the judge (and the run's newest assertion file) still agree with the humans as
labels come in? The labels in force are put in time order and cut into buckets of consecutive
labels; each bucket gets the judge's and the assertions' accuracy against the humans, with 95%
Wilson intervals. And a flag: the newest half of the labels, run through the same selection
as `gristmill assertions suggest`, would choose a different set than the file holds."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from gristmill.errors import ConfigError
from gristmill.flywheel.agreement import Pair, agreement

BUCKETS = 4
MIN_BUCKET = 5  # fewer labels than this per bucket say nothing
FIELDS = ("n", "accuracy", "accuracy_ci")


def _block(pairs: Sequence[Pair]) -> dict[str, Any] | None:
    return {k: v for k, v in agreement(pairs).items() if k in FIELDS} if pairs else None


def buckets(n: int, wanted: int = BUCKETS) -> list[range]:
    """`wanted` runs of consecutive indices of about equal size, fewer when too few labels."""
    count = max(1, min(wanted, n // MIN_BUCKET))
    size = math.ceil(n / count) if n else 0
    return [range(start, min(start + size, n)) for start in range(0, n, size)] if n else []


def labelled_records(run_dir: Path, ids: Any) -> dict[str, dict[str, Any]]:
    """The records with these ids (accepted, or rejected by the judge): only the labelled ones
    are held, so the report's memory does not grow with the run."""
    from gristmill.dataset.files import read_jsonl
    from gristmill.flywheel.runrecords import judge_rejects

    wanted = set(ids)
    found = {r["id"]: r for r in read_jsonl(run_dir / "output.jsonl") if r.get("id") in wanted}
    for record_id, record in judge_rejects(run_dir).items():
        if record_id in wanted:
            found.setdefault(record_id, record)
    return found


def drift(run_dir: Path, wanted: int = BUCKETS) -> dict[str, Any] | None:
    """The drift panel's data; None when the run has no labels."""
    from gristmill.assertions.evaluate import set_pairs
    from gristmill.assertions.files import newest, read_assertions
    from gristmill.assertions.miner import Labelled
    from gristmill.assertions.vocabulary import record_texts
    from gristmill.flywheel.labels import LabelStore
    from gristmill.flywheel.review_index import judge_fields

    if not (run_dir / "run.sqlite").is_file():
        return None
    with LabelStore(run_dir / "run.sqlite") as store:
        labels = store.latest("")
    records = labelled_records(run_dir, labels.keys())
    timed = sorted((label.labeled_at, i) for i, label in labels.items() if i in records)
    if not timed:
        return None
    labelled = [Labelled(i, record_texts(records[i]), labels[i].passed) for _, i in timed]
    verdicts = [judge_fields(records[i])[0] for _, i in timed]
    path = newest(run_dir)
    file = read_assertions(path) if path is not None else None
    rows = []
    for span in buckets(len(timed), wanted):
        chunk = [labelled[k] for k in span]
        judged = [(verdicts[k], labelled[k].passed) for k in span if verdicts[k] is not None]
        rows.append({"first": span.start + 1, "last": span.stop, "from": timed[span.start][0],
                     "until": timed[span.stop - 1][0], "judge": _block(judged),
                     "assertions": _block(set_pairs(file.assertions, chunk)) if file else None})
    return {"labels": len(timed), "buckets": rows, "file": path.name if path else None,
            "newest_half": _newest_half(labelled, file) if file else None}


def _newest_half(labelled: Sequence[Any], file: Any) -> dict[str, Any]:
    """What the selection would keep from the newest half of the labels, against the file."""
    from gristmill.assertions.evaluate import evaluate_all
    from gristmill.assertions.miner import mine
    from gristmill.assertions.select import ALPHA, TAU, select

    half = list(labelled[len(labelled) // 2:])
    held = sorted(a.id for a in file.deterministic)
    out: dict[str, Any] = {"labels": len(half), "held": held, "would_keep": None}
    if all(x.passed for x in half):
        out["note"] = "no failure among the newest labels: nothing to select from"
        return out
    alpha = float(file.provenance.get("alpha", ALPHA))
    tau = float(file.provenance.get("tau", TAU))
    try:
        chosen = select(evaluate_all(mine(half), half), alpha, tau)
    except ConfigError as exc:
        out.update(differs=True, note=f"the newest labels meet no set: {exc}")
        return out
    keep = sorted(e.assertion.id for e in chosen.kept)
    out.update(would_keep=keep, differs=keep != held,
               added=[i for i in keep if i not in held], dropped=[i for i in held if i not in keep])
    return out
