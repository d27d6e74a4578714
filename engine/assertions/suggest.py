"""`gristmill assertions suggest RUN` and `gristmill assertions report RUN`: assertions mined
from a run's human labels, chosen, written, and measured.

The labelled records (the newest overall label of each) are split by a hash of their id: two
thirds train (mined, evaluated and chosen from) and a held-out third, where the chosen set's
agreement with the humans is reported and never used to choose."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

from gristmill.assertions.evaluate import Evaluation, evaluate_all, set_agreement
from gristmill.assertions.files import newest, read_assertions, write_assertions
from gristmill.assertions.miner import Labelled, mine
from gristmill.assertions.select import ALPHA, TAU, Selection, select
from gristmill.assertions.vocabulary import Assertion, record_texts
from gristmill.errors import ConfigError

MIN_LABELS = 8
Say = Callable[[str], None]
# (run, training labels, say) -> deterministic proposals, evaluated `llm` proposals
Proposer = Callable[[Path, list[Labelled], Say], tuple[list[Assertion], list[Evaluation]]]


def labelled_records(run_dir: Path) -> list[Labelled]:
    """The run's records with a label in force, in id order."""
    from gristmill.flywheel.labels import LabelStore
    from gristmill.flywheel.runrecords import run_records

    records = run_records(run_dir)
    with LabelStore(run_dir / "run.sqlite") as store:
        labels = store.latest("")
    return [Labelled(i, record_texts(records[i]), labels[i].passed)
            for i in sorted(labels) if i in records]


def split(labelled: Sequence[Labelled]) -> tuple[list[Labelled], list[Labelled]]:
    """(train, held out): two thirds and one third, in the order of a hash of the id."""
    def rank(x: Labelled) -> bytes:
        return hashlib.blake2b(f"assertions/{x.record_id}".encode(), digest_size=8).digest()

    ordered = sorted(labelled, key=rank)
    cut = -(-2 * len(ordered) // 3)
    by_id = lambda xs: sorted(xs, key=lambda x: x.record_id)  # noqa: E731
    return by_id(ordered[:cut]), by_id(ordered[cut:])


def judge_version(run_dir: Path, records: Sequence[dict[str, Any]] = ()) -> str | None:
    """The newest aligned judge's version, else the verdicts' most common version."""
    aligned = sorted((int(p.stem.removeprefix("judge-v")), p.stem)
                     for p in (run_dir / "judge").glob("judge-v*.yaml")
                     if p.stem.removeprefix("judge-v").isdigit())
    if aligned:
        return aligned[-1][1]
    found = Counter((r.get("judge") or {}).get("version") for r in records)
    found.pop(None, None)
    return found.most_common(1)[0][0] if found else None


def suggest(run_dir: Path, alpha: float = ALPHA, tau: float = TAU,
            say: Say = print, proposer: Proposer | None = None) -> Path:
    """Mine, evaluate and choose assertions from the run's labels; write the next file."""
    from gristmill.flywheel.runrecords import run_records

    run_dir = Path(run_dir)
    labelled = labelled_records(run_dir)
    if len(labelled) < MIN_LABELS:
        raise ConfigError(f"{run_dir}: {len(labelled)} labelled record(s); suggesting "
                          f"assertions needs at least {MIN_LABELS} (label more with "
                          "`gristmill review`)")
    train, held_out = split(labelled)
    if all(x.passed for x in train):
        raise ConfigError(f"{run_dir}: no failed record among the {len(train)} training labels: "
                          "assertions are mined from failures; label some failures")
    candidates = mine(train)
    judged: list[Evaluation] = []
    if proposer is not None:  # --llm: the judge's model proposes too (flywheel.assertion_llm)
        proposed, judged = proposer(run_dir, train, say)
        candidates = list({a.id: a for a in [*candidates, *proposed]}.values())
    evaluations = [*evaluate_all(candidates, train), *judged]
    chosen = select(evaluations, alpha, tau)
    kept = [e.assertion for e in chosen.kept]
    say(f"labels: {len(labelled)} (train {len(train)}: {chosen.fails} failed, {chosen.passes} "
        f"passed · held out {len(held_out)}); candidates {len(candidates) + len(judged)}, catching a "
        f"failure {len(chosen.candidates) + len(chosen.subsumed)}, after subsumption "
        f"{len(chosen.candidates)}")
    print_kept(chosen, alpha, tau, say)
    held = rounded(set_agreement(kept, held_out))
    say(held_out_line(held))
    provenance = {"labels": len(labelled), "train": len(train), "held_out": len(held_out),
                  "train_fails": chosen.fails, "train_passes": chosen.passes,
                  "labels_read_at": round(time.time(), 3),
                  "judge_version": judge_version(run_dir, list(run_records(run_dir).values())),
                  "alpha": alpha, "tau": tau, "candidates": len(candidates) + len(judged),
                  "coverage": round(chosen.covered / max(1, chosen.fails), 4),
                  "ffr": round(chosen.false_failures / max(1, chosen.passes), 4),
                  "held_out_agreement": held}
    path = write_assertions(run_dir, kept, provenance, {e.assertion.id: e.stats()
                                                        for e in chosen.kept})
    say(f"wrote {path}")
    return path


def rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return [rounded(v) for v in value] if isinstance(value, list) else value


def print_kept(chosen: Selection, alpha: float, tau: float, say: Say) -> None:
    say(f"kept {len(chosen.kept)} (the fewest with coverage >= {alpha:.2f} and false failures "
        f"<= {tau:.2f}): together they fail {chosen.covered} of {chosen.fails} human failures "
        f"and {chosen.false_failures} of {chosen.passes} passes")
    table(chosen.kept, say)


def table(evaluations: Sequence[Evaluation], say: Say) -> None:
    say(f"  {'id':<20} {'catches':>7}  {'coverage [95% CI]':<20} {'false fail [95% CI]':<20} "
        "what it checks")
    for e in evaluations:
        s = e.stats()
        say(f"  {e.assertion.id:<20} {s['catches']:>7}  "
            f"{s['coverage']:.2f} [{s['coverage_ci'][0]:.2f}, {s['coverage_ci'][1]:.2f}]     "
            f"{s['ffr']:.2f} [{s['ffr_ci'][0]:.2f}, {s['ffr_ci'][1]:.2f}]     "
            f"{e.assertion.describe()}")


def held_out_line(a: dict[str, Any]) -> str:
    def shown(key: str) -> str:
        lo, hi = a[f"{key}_ci"]
        return f"{a[key]:.2f} [{lo:.2f}, {hi:.2f}]"
    lo, hi = a["tnr_fail_ci"]
    return (f"held out ({a['n']} labels): coverage {shown('tpr_fail')} · false failures "
            f"{1 - a['tnr_fail']:.2f} [{1 - hi:.2f}, {1 - lo:.2f}] · accuracy "
            f"{shown('accuracy')} · kappa {shown('kappa')}")


def report(run_dir: Path, file: Path | None = None, say: Say = print) -> dict[str, Any]:
    """What each assertion of the file catches over all labels, and the set's agreement with
    the held-out labels."""
    run_dir = Path(run_dir)
    path = file or newest(run_dir)
    if path is None:
        raise ConfigError(f"{run_dir}: no assertions/assertions-v<N>.yaml; run `gristmill "
                          "assertions suggest` first or give --file")
    loaded = read_assertions(path)
    labelled = labelled_records(run_dir)
    if not labelled:
        raise ConfigError(f"{run_dir}: no labelled records (label some with `gristmill review`)")
    _, held_out = split(labelled)
    evaluations = evaluate_all(loaded.assertions, labelled)
    fails = sum(not x.passed for x in labelled)
    say(f"{path.name}: {len(loaded.assertions)} assertion(s) over {len(labelled)} labels "
        f"({fails} failed)")
    table(evaluations, say)
    for criterion in loaded.criteria:
        say(f"  {criterion.id:<20} (the judge answers it: {criterion.name})")
    held = set_agreement(loaded.assertions, held_out)
    say(held_out_line(held))
    return {"file": str(path), "assertions": {e.assertion.id: e.stats() for e in evaluations},
            "held_out": held}

