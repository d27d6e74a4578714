"""`gristmill labels export RUN`: a run's human labels as JSONL, one label a line, oldest first,
each with its record's skill and type (null when the run no longer has the record)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from gristmill.dataset.files import read_jsonl
from gristmill.flywheel.labels import Label, LabelStore


def read_labels(run_dir: Path, every: bool) -> list[Label]:
    """The labels in force per (record, criterion), or with `every` the whole history."""
    db = run_dir / "run.sqlite"
    if not db.is_file():
        return []
    with LabelStore(db) as store:
        return store.history() if every else store.current()


def kinds(run_dir: Path, ids: set[str]) -> dict[str, tuple[Any, Any]]:
    """(skill, type) of the labelled records: accepted ones and those the judge rejected.
    Streams the files and keeps only the labelled ids (a run may hold millions of records)."""
    found: dict[str, tuple[Any, Any]] = {}
    rejected = (r["record"] for r in read_jsonl(run_dir / "rejects.jsonl")
                if r.get("stage") == "judge" and isinstance(r.get("record"), dict))
    for source in (read_jsonl(run_dir / "output.jsonl"), rejected):
        for record in source:
            record_id = record.get("id")
            if record_id in ids and record_id not in found:
                found[record_id] = (record.get("skill"), record.get("type"))
    return found


def export_lines(run_dir: Path, every: bool = False) -> list[bytes]:
    labels = read_labels(run_dir, every)
    known = kinds(run_dir, {label.record_id for label in labels})
    out = []
    for label in labels:
        skill, type_ = known.get(label.record_id, (None, None))
        out.append(orjson.dumps({
            "record_id": label.record_id, "criterion": label.criterion or None,
            "passed": label.passed, "critique": label.critique, "reviewer": label.reviewer,
            "time": label.labeled_at, "skill": skill, "type": type_}) + b"\n")
    return out
