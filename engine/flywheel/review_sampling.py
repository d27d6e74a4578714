"""Which record the review page shows next: filters, sampling modes and progress counts.

Plain functions over the index's metas (kept in a seeded random order) and the labels in force,
so the choice is deterministic: a reload shows the same next record until it is labelled.

Modes:
  random        unlabelled records in the seeded random order
  stratified    the (skill, type) stratum with the fewest labels so far gives the next record
  judge_failed  unlabelled records the judge failed
  split         unlabelled records whose criteria disagree (some pass, some fail)
  disagreement  records whose human label disagrees with the judge, labelled once: a second
                look confirms or corrects the label (the relabel is a new label row)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

from .labels import Label
from .review_index import RecordMeta

MODES = ("random", "stratified", "judge_failed", "split", "disagreement")
JUDGE_FILTERS = ("", "pass", "fail", "none")


@dataclass(frozen=True, slots=True)
class Query:
    mode: str = "random"
    skill: str = ""  # "" = any
    type: str = ""
    judge: str = ""  # "", "pass", "fail", "none" (not judged)
    disagreement: bool = False  # only records where the human label disagrees with the judge
    skip: frozenset[str] = frozenset()  # ids skipped in this session

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> "Query":
        """From URL parameters; a bad value raises ValueError naming the parameter."""
        mode = params.get("mode", "random") or "random"
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        judge = params.get("judge", "")
        if judge not in JUDGE_FILTERS:
            raise ValueError(f"judge must be one of pass, fail, none or empty, not {judge!r}")
        skip = frozenset(s for s in params.get("skip", "").split(",") if s)
        return cls(mode, params.get("skill", ""), params.get("type", ""), judge,
                   params.get("disagreement", "") in ("1", "true", "yes"), skip)

    @property
    def confirming(self) -> bool:
        """True when the records wanted are labelled ones awaiting a second look."""
        return self.mode == "disagreement" or self.disagreement


@dataclass(frozen=True, slots=True)
class LabelView:
    """The labels in force (overall verdict) and how many times each record was labelled."""
    latest: Mapping[str, Label]
    times: Mapping[str, int]

    @classmethod
    def of(cls, history: Iterable[Label]) -> "LabelView":
        latest: dict[str, Label] = {}
        times: Counter[str] = Counter()
        for label in history:
            if label.criterion == "":
                latest[label.record_id] = label
                times[label.record_id] += 1
        return cls(latest, times)


def disagrees(meta: RecordMeta, labels: LabelView) -> bool:
    label = labels.latest.get(meta.id)
    return label is not None and meta.judge is not None and label.passed != meta.judge


def matches(meta: RecordMeta, query: Query, labels: LabelView) -> bool:
    """The filters, and the restriction a mode puts on which records it samples."""
    if query.skill and meta.skill != query.skill or query.type and meta.type != query.type:
        return False
    if query.judge and meta.judge is not {"pass": True, "fail": False, "none": None}[query.judge]:
        return False
    if query.mode == "judge_failed" and meta.judge is not False:
        return False
    if query.mode == "split" and not meta.split:
        return False
    return not query.confirming or disagrees(meta, labels)


def is_pending(meta: RecordMeta, query: Query, labels: LabelView) -> bool:
    if meta.id in query.skip:
        return False
    if query.confirming:
        return labels.times.get(meta.id, 0) == 1
    return meta.id not in labels.latest


def candidates(metas: Iterable[RecordMeta], query: Query,
               labels: LabelView) -> Iterator[RecordMeta]:
    return (m for m in metas if matches(m, query, labels))


def next_record(metas: Iterable[RecordMeta], query: Query,
                labels: LabelView) -> RecordMeta | None:
    """The record to show next, or None when the mode has nothing left."""
    pool = candidates(metas, query, labels)
    if query.mode != "stratified":
        return next((m for m in pool if is_pending(m, query, labels)), None)
    labelled: Counter[tuple[str, str]] = Counter()
    first: dict[tuple[str, str], RecordMeta] = {}
    for meta in pool:
        stratum = (meta.skill, meta.type)
        if meta.id in labels.latest:
            labelled[stratum] += 1
        if stratum not in first and is_pending(meta, query, labels):
            first[stratum] = meta
    if not first:
        return None
    return first[min(first, key=lambda s: (labelled[s], s))]


def progress(metas: Iterable[RecordMeta], query: Query, labels: LabelView) -> dict[str, int]:
    """Counters for the page: the whole run, the current filter and the current mode."""
    counts = Counter[str]()
    for meta in metas:
        label = labels.latest.get(meta.id)
        counts["records"] += 1
        if label is not None:
            counts["labelled"] += 1
            counts["human_passed" if label.passed else "human_failed"] += 1
            counts["disagreements"] += disagrees(meta, labels)
        if meta.judge is not None:
            counts["judged"] += 1
        if matches(meta, query, labels):
            counts["matching"] += 1
            counts["matching_labelled"] += label is not None
            counts["pending"] += is_pending(meta, query, labels)
    keys = ("records", "labelled", "human_passed", "human_failed", "disagreements", "judged",
            "matching", "matching_labelled", "pending")
    return {key: counts[key] for key in keys}


def facets(metas: Iterable[RecordMeta]) -> dict[str, Any]:
    """The values the filters offer."""
    skills, types = set(), set()
    judged = False
    for meta in metas:
        skills.add(meta.skill)
        types.add(meta.type)
        judged = judged or meta.judge is not None
    return {"skills": sorted(skills - {""}), "types": sorted(types - {""}), "judged": judged,
            "modes": list(MODES)}
