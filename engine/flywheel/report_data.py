"""The numbers the run report shows, read from a run directory in one pass over each file.

Counters only, never the texts: the report's memory does not grow with the number of records
(beyond the judge verdicts of labelled records)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from gristmill.dataset.files import read_json, read_jsonl
from gristmill.flywheel.drift import drift
from gristmill.flywheel.labels import LabelStore
from gristmill.flywheel.review_index import JsonlTail, judge_fields

RATE_WINDOW_S = 10.0  # throughput is averaged over this much time
MAX_POINTS = 600  # a long run's timeline is thinned to this many points
FLYWHEEL_DATASET = re.compile(r"dataset\.judge-v(\d+)\.jsonl$")


@dataclass
class JudgeTally:
    judged: int = 0
    passed: int = 0
    versions: Counter[str] = field(default_factory=Counter)
    by_skill: dict[str, list[int]] = field(default_factory=dict)  # skill -> [passed, n]
    by_type: dict[str, list[int]] = field(default_factory=dict)  # "skill/type" -> [passed, n]
    by_criterion: dict[str, list[int]] = field(default_factory=dict)

    def count(self, record: dict[str, Any]) -> None:
        verdict, _ = judge_fields(record)
        if verdict is None:
            return
        self.judged += 1
        self.passed += verdict
        self.versions[str(record["judge"].get("version", "?"))] += 1
        skill, kind = str(record.get("skill") or ""), str(record.get("type") or "")
        _tally(self.by_skill, skill or "(all records)", verdict)
        if kind:
            _tally(self.by_type, f"{skill}/{kind}", verdict)
        for name, criterion in (record["judge"].get("criteria") or {}).items():
            if isinstance(criterion, dict):
                _tally(self.by_criterion, str(name), bool(criterion.get("passed")))


def _tally(table: dict[str, list[int]], key: str, passed: bool) -> None:
    row = table.setdefault(key, [0, 0])
    row[0] += passed
    row[1] += 1


def count_lines(path: Path) -> int | None:
    if not path.is_file():
        return None
    with path.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def throughput(points: list[dict[str, Any]]) -> dict[str, list[list[tuple[float, float]]]]:
    """Records and rejects per second over time (seconds since the run began), one segment per
    session so a resumed run's pause shows as a gap."""
    series: dict[str, list[list[tuple[float, float]]]] = {"records": [], "rejects": []}
    if not points:
        return series
    start = points[0]["t"]
    step = max(1, len(points) // MAX_POINTS)
    sessions: dict[float, list[dict[str, Any]]] = {}
    for point in points:
        sessions.setdefault(point.get("session", 0.0), []).append(point)
    for run in sessions.values():
        for name in series:
            segment = []
            back = 0
            for i, point in enumerate(run):
                while back < i and point["t"] - run[back + 1]["t"] >= RATE_WINDOW_S:
                    back += 1
                dt = point["t"] - run[back]["t"]
                if i and dt > 0 and (i % step == 0 or i == len(run) - 1):
                    rate = (point[name] - run[back][name]) / dt
                    segment.append((point["t"] - start, max(rate, 0.0)))
            if segment:
                series[name].append(segment)
    return series


def gather(run_dir: Path) -> dict[str, Any]:
    """Everything the report shows, as plain data."""
    summary = read_json(run_dir / "summary.json")
    state = read_json(run_dir / "state.json") or {}
    labels = _labels(run_dir)
    judge, label_verdicts = JudgeTally(), {}
    by_skill: Counter[str] = Counter()
    by_type: Counter[str] = Counter()
    records = JsonlTail(run_dir / "output.jsonl")
    n_records = 0
    for _, record in records.read_new():
        n_records += 1
        judge.count(record)
        if (skill := record.get("skill")) is not None:
            by_skill[str(skill)] += 1
            by_type[f"{skill}/{record.get('type')}"] += 1
        if record["id"] in labels:
            label_verdicts[record["id"]] = judge_fields(record)[0]
    timeline = read_timeline(run_dir / "timeline.jsonl")
    rejects = (summary or {}).get("rejects_by_reason") or _reject_reasons(run_dir)
    flywheel = sorted((int(m.group(1)), p.name) for p in run_dir.glob("dataset.judge-v*.jsonl")
                      if (m := FLYWHEEL_DATASET.search(p.name)))
    return {
        "name": run_dir.resolve().name, "summary": summary, "state": state,
        "records": n_records, "dataset": count_lines(run_dir / "dataset.jsonl"),
        "flywheel": [(name, count_lines(run_dir / name)) for _, name in flywheel],
        "rejects_by_reason": dict(rejects), "throughput": throughput(timeline),
        "timeline_points": len(timeline), "judge": judge,
        "coverage": {"by_skill": dict(by_skill), "by_type": dict(by_type)},
        "labels": _label_counts(labels, label_verdicts),
        "agreement": read_json(run_dir / "judge" / "agreement.json"), "drift": drift(run_dir),
    }


def read_timeline(path: Path) -> list[dict[str, Any]]:
    """timeline.jsonl's points; a line torn by a crash is skipped."""
    return [p for p in read_jsonl(path) if isinstance(p.get("t"), (int, float))]


def _labels(run_dir: Path) -> dict[str, Any]:
    if not (run_dir / "run.sqlite").is_file():
        return {}
    with LabelStore(run_dir / "run.sqlite") as store:
        return store.latest()


def _label_counts(labels: dict[str, Any], verdicts: dict[str, bool | None]) -> dict[str, int]:
    judged = [(labels[i].passed, v) for i, v in verdicts.items() if v is not None]
    return {"labelled": len(labels), "passed": sum(lab.passed for lab in labels.values()),
            "both": len(judged), "agree": sum(h == j for h, j in judged)}


def _reject_reasons(run_dir: Path) -> Counter[str]:
    """Rejections by stage and reason, for a run that has no summary yet."""
    reasons: Counter[str] = Counter()
    for _, reject in JsonlTail(run_dir / "rejects.jsonl").read_new():
        reason = reject.get("validator") or reject.get("error") or "unknown"
        reasons[f"{reject.get('stage')}: {reason}"] += 1
    return Counter(dict(reasons.most_common()))
