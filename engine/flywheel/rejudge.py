"""`gristmill flywheel RUN`: re-judge a finished run with its newest aligned judge and write
the dataset that judge accepts, beside the old ones.

Only judge calls are made: the records (the generation answers) are read from the run, never
asked again. The candidates are the records of `output.jsonl` and those an earlier judge
rejected. The new dataset RUN/dataset.<judge version>.jsonl holds, in id order, the records
the judge passes (all of them, flagged by their verdict, when its `on_fail` is 'flag'), each
with its new verdict, deduplicated like dataset.jsonl when the run deduplicates. What changed
against the previous dataset (the newest dataset.judge-v*.jsonl of an older version, else
dataset.jsonl, else output.jsonl) is printed and written to RUN/judge/flywheel-<version>.json."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable

import orjson

from gristmill.errors import ConfigError
from gristmill.dataset.files import read_jsonl
from gristmill.flywheel.runrecords import config_examples, run_records
from gristmill.flywheel.session import JudgeSession, judge_versions, load_judge


def previous_dataset(run_dir: Path, version: int) -> Path:
    older = [n for n in judge_versions(run_dir) if n < version
             and (run_dir / f"dataset.judge-v{n}.jsonl").is_file()]
    if older:
        return run_dir / f"dataset.judge-v{max(older)}.jsonl"
    dataset = run_dir / "dataset.jsonl"
    return dataset if dataset.is_file() else run_dir / "output.jsonl"


def changes(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]],
            old_verdicts: dict[str, bool | None], new_verdicts: dict[str, bool]) -> dict[str, Any]:
    """What the new dataset changes: verdicts flipped (over every record judged both times),
    records added and removed (against the old dataset)."""
    flips: Counter[str] = Counter()
    for record_id, passed in new_verdicts.items():
        before = old_verdicts.get(record_id)
        if before is not None and before != passed:
            flips["fail_to_pass" if passed else "pass_to_fail"] += 1
    added, removed = sorted(new.keys() - old.keys()), sorted(old.keys() - new.keys())
    return {"flipped": {"pass_to_fail": flips["pass_to_fail"],
                        "fail_to_pass": flips["fail_to_pass"]},
            "added": len(added), "removed": len(removed), "kept": len(new.keys() & old.keys()),
            "added_ids": added, "removed_ids": removed}


async def flywheel_run(run_dir: Path, *, backend_url: str | None = None,
                       judge_path: Path | None = None,
                       say: Callable[[str], None] = print) -> dict[str, Any]:
    from gristmill.dataset.files import write_atomic

    run_dir = Path(run_dir)
    versions = judge_versions(run_dir)
    if judge_path is None:
        if not versions:
            raise ConfigError(f"{run_dir}: no aligned judge in {run_dir / 'judge'}; run "
                              f"`gristmill judge align {run_dir}` first")
        judge_path = versions[max(versions)]
    judge = load_judge(judge_path)
    number = next((n for n, p in versions.items() if p.name == Path(judge_path).name), 0)
    records = run_records(run_dir)
    async with JudgeSession(run_dir, backend_url) as session:
        judged = await session.judge(judge, records.values(), config_examples(judge))
        dedup = session.config.dedup
        calls = session.stats()
    keep = {i: {**records[i], "judge": v} for i, v in judged.verdicts.items()
            if v["passed"] or judge.on_fail == "flag"}
    if dedup.enabled and keep:
        from gristmill.dataset.dedup import dedup_records

        kept_ids = dedup_records(keep.values(), threshold=dedup.threshold).kept
        keep = {i: keep[i] for i in kept_ids}
    out = run_dir / f"dataset.{judge.version}.jsonl"
    write_atomic(out, b"".join(orjson.dumps(keep[i], option=orjson.OPT_APPEND_NEWLINE)
                               for i in sorted(keep)))
    previous = previous_dataset(run_dir, number or max(versions, default=0) + 1)
    old = {r["id"]: r for r in read_jsonl(previous) if "id" in r}
    old_verdicts = {i: ((old.get(i) or r).get("judge") or {}).get("passed")
                    for i, r in records.items()}
    summary = {"judge_version": judge.version, "dataset": str(out), "previous": str(previous),
               "records_judged": len(judged.verdicts), "no_verdict": len(judged.failures),
               "passed": sum(v["passed"] for v in judged.verdicts.values()),
               "written": len(keep), "calls": calls,
               **changes(old, keep, old_verdicts,
                         {i: v["passed"] for i, v in judged.verdicts.items()})}
    (run_dir / "judge").mkdir(exist_ok=True)
    write_atomic(run_dir / "judge" / f"flywheel-{judge.version}.json",
                 orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    say(f"{judge.version}: judged {summary['records_judged']:,} records "
        f"({calls['requests']:,} judge requests, {calls['cache_hits']:,} from the cache), "
        f"{summary['passed']:,} passed; wrote {summary['written']:,} to {out.name}")
    say(f"against {previous.name}: {summary['flipped']['pass_to_fail']:,} verdicts flipped to "
        f"fail, {summary['flipped']['fail_to_pass']:,} to pass; {summary['added']:,} records "
        f"added, {summary['removed']:,} removed, {summary['kept']:,} kept")
    if judged.failures:
        say(f"{len(judged.failures):,} record(s) got no usable verdict and were left out")
    return summary
