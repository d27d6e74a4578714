"""Assertions mined from labels, against a known truth: the mock server plants failure modes
(`--plant`) in a run, a simulated reviewer labels some records by the planted truth with label
noise, `gristmill assertions suggest` chooses assertions, and the chosen set is checked on the
records nobody labelled, against the planted truth (catch rate, false-failure rate) and on the
labelled ones against the noisy labels.

    python -m benchmarks.assertions [--records 400] [--labels 200] [--noise 0.1] [--llm]

Prints a table and writes benchmarks/results/assertions.json."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import tempfile
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

from benchmarks.common import machine, print_table, write_json
from benchmarks.reviewer import Planted, review
from gristmill.assertions.files import read_assertions
from gristmill.assertions.suggest import suggest
from gristmill.assertions.vocabulary import LlmCriterion, record_texts
from gristmill.backends.mock.process import MockServerProcess
from gristmill.config.load import validate_config
from gristmill.flywheel.assertion_llm import judge_criteria, llm_candidates
from gristmill.flywheel.runrecords import run_records
from gristmill.runs.runner import RunOptions, run

KINDS = ("hedge", "short", "off_topic", "contradiction")  # the prose kinds: one prose stage
PLACES = ("old mill", "north bridge", "harbour", "weir", "lock gate", "granary", "ferry landing")
PROMPT = "Summarise this report in a few sentences.\n\n{{ seed }}"
FACTS = ("river depth", "water level", "bridge span", "mill wheel diameter", "harbour width")


def write_seeds(path: Path, n: int) -> None:
    """Seed reports, each stating a fact the contradiction plant can restate wrongly."""
    with path.open("w") as fh:
        for i in range(n):
            fact, place = FACTS[i % len(FACTS)], PLACES[(i // 5) % len(PLACES)]
            text = (f"Report {i} from the {place}. The {fact} is {12 + (i * 7) % 80} metres, "
                    f"measured by the survey team in week {1 + i % 50}. Local workers described "
                    "the season, the repairs that were planned and the people who helped.")
            fh.write(json.dumps({"text": text}) + "\n")


def config(base_url: str, seeds: Path) -> dict[str, Any]:
    """One prose stage; the record keeps the user message the server saw (its truth)."""
    return {"name": "planted", "seeds": {"path": str(seeds), "min_chars": 1},
            "backends": {"default": {"base_url": base_url, "model": "mock", "max_in_flight": 32}},
            "stages": [{"name": "summary", "sampling": {"max_tokens": 300}, "prompt": PROMPT}],
            "record": [{"role": "user", "content": PROMPT},
                       {"role": "assistant", "content": "{{ summary }}"}]}


def fails_one(assertion: Any, record: dict, verdicts: dict[str, dict[str, bool]]) -> bool:
    if isinstance(assertion, LlmCriterion):
        return verdicts.get(record["id"], {}).get(assertion.name) is False
    return not assertion.check(record_texts(record))


def measure(assertions: list, records: list[dict], truth: dict[str, bool],
            verdicts: dict[str, dict[str, bool]]) -> dict[str, Any]:
    """Catch rate over the failed records and false-failure rate over the passed ones."""
    caught = {r["id"]: any(fails_one(a, r, verdicts) for a in assertions) for r in records}
    fails = [i for i in caught if not truth[i]]
    passes = [i for i in caught if truth[i]]
    return {"n": len(caught), "fails": len(fails), "passes": len(passes),
            "catch_rate": sum(caught[i] for i in fails) / max(1, len(fails)),
            "false_failure_rate": sum(caught[i] for i in passes) / max(1, len(passes))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=400)
    parser.add_argument("--labels", type=int, default=200)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--plant-rate", type=float, default=0.3)
    parser.add_argument("--alpha", type=float, default=0.6)  # of noisy labels
    parser.add_argument("--tau", type=float, default=0.1)
    parser.add_argument("--llm", action="store_true", help="the mock's model proposes too")
    args = parser.parse_args()
    planted = Planted(args.plant_rate, KINDS)
    with tempfile.TemporaryDirectory() as tmp, MockServerProcess(
            "--plant", ",".join(KINDS), "--plant-rate", str(args.plant_rate)) as server:
        write_seeds(Path(tmp) / "seeds.jsonl", args.records)
        run_dir = Path(tmp) / "run"
        asyncio.run(run(validate_config(config(server.base_url, Path(tmp) / "seeds.jsonl")),
                        RunOptions(run_dir=run_dir, progress=False)))
        records = run_records(run_dir)
        labels = review(run_dir, planted, args.labels, args.noise, seed=7)
        log = io.StringIO()
        with redirect_stdout(log):
            path = suggest(run_dir, alpha=args.alpha, tau=args.tau,
                           proposer=llm_candidates if args.llm else None)
        kept = read_assertions(path).assertions
        criteria = [a for a in kept if isinstance(a, LlmCriterion)]
        verdicts = asyncio.run(judge_criteria(run_dir, criteria, list(records.values())))
        stats = server.stats()["planted"]
    truth = {i: planted.truth(r) is None for i, r in records.items()}
    unlabelled = [r for i, r in records.items() if i not in labels]
    held = measure(kept, unlabelled, truth, verdicts)
    noisy = measure(kept, [records[i] for i in labels], labels, verdicts)
    by_kind = {k: measure(kept, [r for r in unlabelled if planted.truth(r) in (k, None)],
                          truth, verdicts)["catch_rate"] for k in KINDS}
    rows = [{"check": "unlabelled vs planted truth", **held},
            {"check": "labelled vs noisy labels", **noisy}]
    print(log.getvalue())
    print(f"{len(records)} records, planted {stats}; {len(labels)} labels ({args.noise:.0%} "
          f"noise); kept {len(kept)} assertion(s): {[a.describe() for a in kept]}")
    print_table(rows, [("check", "check", str), ("n", "records", str), ("fails", "failures", str),
                       ("catch_rate", "catch rate", lambda v: f"{v:.1%}"),
                       ("false_failure_rate", "false failures", lambda v: f"{v:.1%}")])
    print("catch rate by kind (unlabelled): "
          + ", ".join(f"{k} {v:.0%}" for k, v in by_kind.items()))
    out = write_json("assertions", {
        "machine": machine(), "load_average": os.getloadavg()[0], "args": vars(args),
        "records": len(records), "planted": stats, "labels": len(labels),
        "catch_rate": held["catch_rate"], "false_failure_rate": held["false_failure_rate"],
        "llm": args.llm, "assertions": len(kept), "kept": [a.describe() for a in kept],
        "catch_rate_by_kind": by_kind, "held_out": held, "against_noisy_labels": noisy})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
