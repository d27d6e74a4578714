"""`gristmill judge align RUN`: measure how well the judge agrees with the human labels, choose
the few-shot set (and, per criterion, the question) that makes it agree best, EvalGen-style,
and write the result as the next versioned judge.

The labelled records are split three ways, in the order of a hash of their id (so the split
does not follow label time or record order): train (half: the examples the judge may be
shown), dev (a quarter: where candidates are compared) and test (the rest: where the
before/after agreement is reported, never used to choose). A candidate
wins by the highest coverage of human-failed records (tpr on failures) among those whose
false-failure rate on human-passed records is within the bound; ties go to the higher
accuracy, then the smaller example set. If none meets the bound, the lowest false-failure rate
wins. The kappa gain on test comes with a paired-bootstrap interval: with few labels it is
wide, and it is printed."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import orjson

from gristmill.errors import ConfigError
from gristmill.config.pipeline import JudgeConfig, JudgeExample
from gristmill.flywheel.agreement import Pair, agreement, coverage_and_ffr, kappa_gain_ci, trend
from gristmill.flywheel.fewshot import Example
from gristmill.flywheel.labels import Label, LabelStore
from gristmill.flywheel.runrecords import config_examples, label_examples, run_records
from gristmill.flywheel.session import JudgeSession, current_judge, judge_versions, write_judge

MIN_LABELS = 8
MIN_CRITERION_LABELS = 6  # per-criterion labels on dev needed to choose that criterion's question
FEW_LABELS = 40  # below this many test labels the gain is called uncertain


@dataclass(frozen=True)
class Split:
    train: list[str]
    dev: list[str]
    test: list[str]


def split_ids(ids: list[str]) -> Split:
    def rank(record_id: str) -> bytes:
        return hashlib.blake2b(f"align/{record_id}".encode(), digest_size=8).digest()

    ordered = sorted(ids, key=rank)
    n = len(ordered)
    a, b = n // 2, n // 2 + (n - n // 2) // 2
    return Split(sorted(ordered[:a]), sorted(ordered[a:b]), sorted(ordered[b:]))


@dataclass(frozen=True)
class Score:
    name: str
    coverage: float
    ffr: float
    accuracy: float
    size: int  # examples in the candidate's pool (smaller wins ties)


def choose(scores: list[Score], ffr_bound: float) -> Score:
    """The EvalGen choice: most coverage within the false-failure bound."""
    feasible = [s for s in scores if s.ffr <= ffr_bound]
    if feasible:
        return max(feasible, key=lambda s: (s.coverage, s.accuracy, -s.size))
    return min(scores, key=lambda s: (s.ffr, -s.coverage, s.size))


def candidate_pools(train: list[Example]) -> dict[str, list[Example]]:
    newest = sorted(train, key=lambda e: e.labeled_at)[len(train) // 2:]
    return {"zero-shot": [], "all": train,
            "human-failed": [e for e in train if not e.passed],
            "disagreements": [e for e in train if e.disagreed],
            "recent": newest}


def pairs_for(verdicts: dict[str, dict[str, Any]], labels: dict[str, Label],
              ids: list[str], criterion: str = "") -> list[Pair]:
    out = []
    for record_id in ids:
        verdict, label = verdicts.get(record_id), labels.get(record_id)
        if verdict is None or label is None:
            continue  # no verdict (counted as a failure of the judge call) or no label
        judged = verdict["passed"] if not criterion else \
            verdict["criteria"].get(criterion, {}).get("passed")
        if judged is not None:
            out.append((judged, label.passed))
    return out


class Aligner:
    def __init__(self, session: JudgeSession, judge: JudgeConfig, labels: dict[str, Label],
                 records: dict[str, dict[str, Any]], ffr_bound: float,
                 say: Callable[[str], None]) -> None:
        self.session, self.judge, self.labels = session, judge, labels
        self.records, self.ffr_bound, self.say = records, ffr_bound, say
        self.unjudged: set[str] = set()

    async def verdicts(self, judge: JudgeConfig, ids: list[str],
                       pool: list[Example]) -> dict[str, dict[str, Any]]:
        judged = await self.session.judge(judge, [self.records[i] for i in ids], pool)
        self.unjudged |= set(judged.failures)
        return judged.verdicts

    async def score(self, name: str, judge: JudgeConfig, pool: list[Example], dev: list[str],
                    labels: dict[str, Label], criterion: str = "") -> Score:
        pairs = pairs_for(await self.verdicts(judge, dev, pool), labels, dev, criterion)
        coverage, ffr = coverage_and_ffr(pairs)
        accuracy = agreement(pairs)["accuracy"]
        self.say(f"  {name:<28} coverage {coverage:.2f} · false failures {ffr:.2f} · "
                 f"accuracy {accuracy:.2f}")
        return Score(name, coverage, ffr, accuracy, len(pool))

    async def choose_pool(self, train: list[Example], dev: list[str]) -> tuple[str, list[Example]]:
        judge = aligned_base(self.judge)
        k = judge.few_shot.k
        pools = candidate_pools(train)
        self.say(f"few-shot sets on dev ({len(dev)} labels, false-failure bound "
                 f"{self.ffr_bound:.2f}, k={k}):")
        scores = [await self.score(name, judge, pool, dev, self.labels)
                  for name, pool in pools.items()]
        best = choose(scores, self.ffr_bound)
        self.say(f"  chosen: {best.name}")
        return best.name, pools[best.name]

    async def choose_questions(self, judge: JudgeConfig, pool: list[Example],
                               dev: list[str], store: LabelStore) -> JudgeConfig:
        for index, criterion in enumerate(judge.criteria):
            if not criterion.alternatives:
                continue
            own = {i: l for i, l in store.latest(criterion.name).items() if i in dev}
            by_own = len(own) >= MIN_CRITERION_LABELS
            labels, name = (own, criterion.name) if by_own else (self.labels, "")
            self.say(f"criterion {criterion.name}: questions on dev "
                     f"({'its own labels' if by_own else 'overall labels'}):")
            options = [criterion.question, *criterion.alternatives]
            scores, configs = [], {}
            for n, question in enumerate(options):
                others = [q for q in options if q != question]
                criteria = list(judge.criteria)
                criteria[index] = criterion.model_copy(update={"question": question,
                                                               "alternatives": others})
                shown = f"{n + 1}. " + (question if len(question) <= 24 else question[:21] + "...")
                configs[shown] = judge.model_copy(update={"criteria": criteria})
                scores.append(await self.score(shown, configs[shown], pool, dev, labels, name))
            best = choose(scores, self.ffr_bound)
            self.say(f"  chosen: {best.name}")
            judge = configs[best.name]
        return judge


async def align_run(run_dir: Path, *, backend_url: str | None = None, ffr_bound: float = 0.2,
                    say: Callable[[str], None] = print) -> dict[str, Any]:
    """Align the run's judge; writes RUN/judge/judge-v<N>.yaml and RUN/judge/agreement.json."""
    run_dir = Path(run_dir)
    records = run_records(run_dir)
    with LabelStore(run_dir / "run.sqlite") as store:
        labels = {i: l for i, l in store.latest("").items() if i in records}
        by_criterion = {name: store.latest(name) for name in store.criteria()}
        if len(labels) < MIN_LABELS:
            raise ConfigError(f"{run_dir}: {len(labels)} labelled record(s); alignment needs "
                              f"at least {MIN_LABELS} (label more with `gristmill review`)")
        async with JudgeSession(run_dir, backend_url) as session:
            before = current_judge(run_dir, session.config)
            split = split_ids(sorted(labels))
            say(f"labels: {len(labels)} (train {len(split.train)} · dev {len(split.dev)} · "
                f"test {len(split.test)}); judge before: {before.version}")
            aligner = Aligner(session, before, labels, records, ffr_bound, say)
            train = label_examples({i: labels[i] for i in split.train}, records,
                                   before.few_shot.max_chars)
            pool_name, pool = await aligner.choose_pool(train, split.dev)
            after = await aligner.choose_questions(aligned_base(before), pool, split.dev, store)
            after = after.model_copy(update={
                "version": f"judge-v{max(judge_versions(run_dir), default=0) + 1}",
                "examples": [JudgeExample(**e.as_config()) for e in pool]})
            before_pool = config_examples(before)  # never the dev or test labels
            if before.few_shot.from_labels:
                before_pool += train
            verdicts = (await aligner.verdicts(before, split.test, before_pool),
                        await aligner.verdicts(after, split.test, pool),
                        await aligner.verdicts(after, sorted(labels), pool))
            result = report(before, after, labels, split, *verdicts, pool_name, ffr_bound,
                            aligner.unjudged, say)
            result["criteria"] = per_criterion(by_criterion, split.test, *verdicts[:2])
            say_criteria(result["criteria"], before.version, after.version, say)
            result["calls"] = session.stats()
    path = write_judge(run_dir, after)
    write_agreement(run_dir, result)
    say(f"wrote {path} and {run_dir / 'judge' / 'agreement.json'}")
    return result


def aligned_base(judge: JudgeConfig) -> JudgeConfig:
    """The judge to align: its examples will be the chosen ones, never all labels."""
    few_shot = judge.few_shot.model_copy(update={"k": judge.few_shot.k or 4,
                                                 "from_labels": False})
    return judge.model_copy(update={"few_shot": few_shot, "enabled": True})


def report(before_judge: JudgeConfig, after: JudgeConfig,
           labels: dict[str, Label], split: Split, v_before: dict, v_after: dict, v_all: dict,
           pool_name: str, ffr_bound: float, unjudged: set[str],
           say: Callable[[str], None]) -> dict[str, Any]:
    p_before, p_after = pairs_for(v_before, labels, split.test), pairs_for(v_after, labels,
                                                                          split.test)
    both = [i for i in split.test if i in v_before and i in v_after]
    gain_pairs = (pairs_for(v_before, labels, both), pairs_for(v_after, labels, both))
    a_before, a_after = agreement(p_before), agreement(p_after)
    gain = a_after["kappa"] - a_before["kappa"]
    gain_ci = kappa_gain_ci(*gain_pairs)
    timed = [(labels[i].labeled_at, pair) for i in sorted(labels) if i in v_all
             for pair in pairs_for(v_all, labels, [i])]
    say(f"test ({a_after['n']} labels)      before ({before_judge.version})     "
        f"after ({after.version})")
    for key, label in (("accuracy", "accuracy"), ("kappa", "Cohen's kappa"),
                       ("tpr_fail", "TPR on failures"), ("tnr_fail", "TNR on failures")):
        lo, hi = a_before[f"{key}_ci"]
        lo2, hi2 = a_after[f"{key}_ci"]
        say(f"  {label:<18} {a_before[key]:5.2f} [{lo:.2f}, {hi:.2f}]    "
            f"{a_after[key]:5.2f} [{lo2:.2f}, {hi2:.2f}]")
    uncertain = " (few test labels: the gain is uncertain; label more)" \
        if a_after["n"] < FEW_LABELS else ""
    say(f"kappa gain {gain:+.2f}, 95% paired-bootstrap interval [{gain_ci[0]:+.2f}, "
        f"{gain_ci[1]:+.2f}]{uncertain}")
    if unjudged:
        say(f"{len(unjudged)} record(s) got no usable verdict (see the judge answers' reasons)")
    return {"judge_version": after.version, "computed_at": time.time(),
            "overall": a_after, "before": {**a_before, "judge_version": before_judge.version},
            "trend": trend(timed),
            "kappa_gain": {"value": gain, "ci": list(gain_ci), "n": len(both)},
            "split": {"train": len(split.train), "dev": len(split.dev), "test": len(split.test)},
            "few_shot": {"pool": pool_name, "examples": len(after.examples),
                         "k": after.few_shot.k},
            "ffr_bound": ffr_bound, "unjudged": len(unjudged)}


def per_criterion(by_criterion: dict[str, dict[str, Label]], test: list[str],
                  v_before: dict, v_after: dict) -> dict[str, dict[str, Any]]:
    """Agreement before and after on each criterion's labels of the test records (a verdict
    without the criterion, e.g. of another skill, is left out)."""
    return {name: {"before": agreement(pairs_for(v_before, labels, test, name)),
                   "after": agreement(pairs_for(v_after, labels, test, name))}
            for name, labels in by_criterion.items()}


def say_criteria(criteria: dict[str, dict[str, Any]], before: str, after: str,
                 say: Callable[[str], None]) -> None:
    if not criteria:
        return
    say(f"{'per criterion on test':<23}{'n':>4}    {f'accuracy {before} -> {after}':<44}"
        f"Cohen's kappa {before} -> {after}")

    def shown(block: dict[str, Any], key: str) -> str:
        lo, hi = block[f"{key}_ci"]
        return f"{block[key]:5.2f} [{lo:.2f}, {hi:.2f}]"

    for name, both in criteria.items():
        b, a = both["before"], both["after"]
        say(f"  {name:<20} {a['n']:4d}    {shown(b, 'accuracy')} -> {shown(a, 'accuracy')}"
            f"    {shown(b, 'kappa')} -> {shown(a, 'kappa')}")


def write_agreement(run_dir: Path, result: dict[str, Any]) -> None:
    from gristmill.dataset.files import write_atomic

    (run_dir / "judge").mkdir(exist_ok=True)
    write_atomic(run_dir / "judge" / "agreement.json",
                 orjson.dumps(result, option=orjson.OPT_INDENT_2))
