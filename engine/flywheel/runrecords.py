"""A run's records as the flywheel sees them, and its human labels as judge examples.

The records are `output.jsonl` plus those the judge rejected (`rejects.jsonl` keeps the whole
record of a judge reject): a human may disagree with the judge either way, and a re-judged
record may come back."""

from __future__ import annotations

from pathlib import Path
from typing import Any


from gristmill.config.pipeline import JudgeConfig
from gristmill.dataset.files import read_jsonl
from gristmill.flywheel.fewshot import Example, cut
from gristmill.flywheel.labels import Label, LabelStore


def judge_rejects(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Records the judge rejected, by id."""
    return {r["record"]["id"]: r["record"] for r in read_jsonl(run_dir / "rejects.jsonl")
            if r.get("stage") == "judge" and isinstance(r.get("record"), dict)}


def run_records(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Every judgeable record of the run by id: accepted ones, then the judge's rejects."""
    records = {r["id"]: r for r in read_jsonl(run_dir / "output.jsonl") if "id" in r}
    for record_id, record in judge_rejects(run_dir).items():
        records.setdefault(record_id, record)
    return records


def label_examples(labels: dict[str, Label], records: dict[str, dict[str, Any]],
                   max_chars: int) -> list[Example]:
    """Judge examples from labels of records the run has (labels of unknown ids are
    skipped). `disagreed`: the verdict stored on the record differs from the human's."""
    from gristmill.flywheel.prompt import record_texts

    out = []
    for record_id, label in labels.items():
        record = records.get(record_id)
        if record is None:
            continue
        instruction, answer = record_texts(record)
        stored = (record.get("judge") or {})
        judged = stored.get("passed") if not label.criterion else \
            (stored.get("criteria", {}).get(label.criterion) or {}).get("passed")
        out.append(Example.make(
            record_id=record_id, instruction=cut(instruction, max_chars),
            answer=cut(answer, max_chars), passed=label.passed, critique=label.critique,
            criterion=label.criterion, labeled_at=label.labeled_at,
            disagreed=judged is not None and judged != label.passed))
    return out


def config_examples(config: JudgeConfig) -> list[Example]:
    return [Example.make(**e.model_dump()) for e in config.examples]


def judge_pool(config: JudgeConfig, run_dir: Path) -> list[Example]:
    """The examples a judge retrieves from: its own, plus the run's overall labels when
    `few_shot.from_labels` (read once, when the judge starts)."""
    pool = config_examples(config)
    db = run_dir / "run.sqlite"
    if config.few_shot.from_labels and db.is_file():
        with LabelStore(db) as store:
            labels = store.latest("")
        if labels:
            known = {e.record_id for e in pool}
            extra = label_examples(labels, run_records(run_dir), config.few_shot.max_chars)
            pool += [e for e in extra if e.record_id not in known]
    return pool
