"""Which record the review page shows next: filters, sampling modes and progress counts.

Plain functions over the index's record pool (a seeded random order) and the labels in force,
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

import heapq
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

from gristmill.flywheel.labels import Label
from gristmill.flywheel.review_pool import RecordMeta, RecordPool

MODES = ("random", "stratified", "judge_failed", "split", "disagreement")
JUDGE_VALUES = {"pass": True, "fail": False, "none": None}


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
        if judge and judge not in JUDGE_VALUES:
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


def _filtered(skill: str, type_: str, judge: bool | None, split: bool, query: Query) -> bool:
    """The filters, and the restriction a mode puts on which records it samples (on plain
    fields, so whole combinations of them can be counted at once)."""
    if query.skill and skill != query.skill or query.type and type_ != query.type:
        return False
    if query.judge and judge is not JUDGE_VALUES[query.judge]:
        return False
    if query.mode == "judge_failed" and judge is not False:
        return False
    return query.mode != "split" or split


def matches(meta: RecordMeta, query: Query, labels: LabelView) -> bool:
    return _filtered(*meta.combo, query) and (not query.confirming or disagrees(meta, labels))


def is_pending(meta: RecordMeta, query: Query, labels: LabelView) -> bool:
    if meta.id in query.skip:
        return False
    if query.confirming:
        return labels.times.get(meta.id, 0) == 1
    return meta.id not in labels.latest


def labelled(pool: RecordPool, labels: LabelView) -> Iterator[RecordMeta]:
    """The records with a label in force (labels of records not in the pool are ignored)."""
    return (m for i in labels.latest if (m := pool.by_id.get(i)) is not None)


def _in_order(pool: RecordPool, query: Query) -> Iterable[RecordMeta]:
    """The records of the strata the skill and type filters keep, in rank order."""
    if not query.skill and not query.type:
        return pool.metas
    lists = [metas for (skill, type_), metas in pool.strata.items()
             if (not query.skill or skill == query.skill) and (not query.type or type_ == query.type)]
    return heapq.merge(*lists, key=lambda m: m.rank)


def next_record(pool: RecordPool, query: Query, labels: LabelView) -> RecordMeta | None:
    """The record to show next, or None when the mode has nothing left."""
    def wanted(meta: RecordMeta) -> bool:
        return is_pending(meta, query, labels) and matches(meta, query, labels)

    if query.confirming:  # only labelled records qualify: look at those alone
        return min(filter(wanted, labelled(pool, labels)), key=lambda m: m.rank, default=None)
    if query.mode != "stratified":
        return next(filter(wanted, _in_order(pool, query)), None)
    counts = Counter((m.skill, m.type) for m in labelled(pool, labels))
    for stratum in sorted(pool.strata, key=lambda s: (counts[s], s)):
        if query.skill and stratum[0] != query.skill or query.type and stratum[1] != query.type:
            continue
        found = next(filter(wanted, pool.strata[stratum]), None)
        if found is not None:
            return found
    return None


def progress(pool: RecordPool, query: Query, labels: LabelView) -> dict[str, int]:
    """Counters for the page: the whole run, the current filter and the current mode."""
    counts = Counter[str](records=len(pool))
    counts["judged"] = sum(n for combo, n in pool.combos.items() if combo[2] is not None)
    for meta in labelled(pool, labels):
        label = labels.latest[meta.id]
        counts["labelled"] += 1
        counts["human_passed" if label.passed else "human_failed"] += 1
        counts["disagreements"] += disagrees(meta, labels)
        if matches(meta, query, labels):
            counts["matching_labelled"] += 1
            counts["pending"] += query.confirming and is_pending(meta, query, labels)
    if query.confirming:
        counts["matching"] = counts["matching_labelled"]
    else:
        counts["matching"] = sum(n for combo, n in pool.combos.items()
                                 if _filtered(*combo, query))
        skipped = sum(1 for i in query.skip if (m := pool.by_id.get(i)) is not None
                      and i not in labels.latest and matches(m, query, labels))
        counts["pending"] = counts["matching"] - counts["matching_labelled"] - skipped
    keys = ("records", "labelled", "human_passed", "human_failed", "disagreements", "judged",
            "matching", "matching_labelled", "pending")
    return {key: counts[key] for key in keys}


def facets(pool: RecordPool) -> dict[str, Any]:
    """The values the filters offer."""
    return {"skills": sorted({s for s, _ in pool.strata} - {""}),
            "types": sorted({t for _, t in pool.strata} - {""}),
            "judged": any(combo[2] is not None for combo in pool.combos),
            "modes": list(MODES)}
