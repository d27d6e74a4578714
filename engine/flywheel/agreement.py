"""Judge-human agreement: accuracy, Cohen's kappa, and the rates on failures, with 95%
confidence intervals. Plain functions over pairs (judge passed, human passed).

The fail class is the positive class (the judge's job is to find failures):
    tp: judge fails, human fails        fp: judge fails, human passes
    fn: judge passes, human fails       tn: judge passes, human passes
    tpr_fail = tp / (tp + fn)   the share of human-failed records the judge fails (coverage)
    tnr_fail = tn / (tn + fp)   the share of human-passed records the judge passes
                                (1 - tnr_fail is the false-failure rate)
Proportions get Wilson score intervals. Kappa = (p_o - p_e) / (1 - p_e) gets Cohen's (1960)
large-sample interval, kappa +- z * sqrt(p_o (1 - p_o) / (n (1 - p_e)^2)), clipped to [-1, 1].
Conventions where a value is undefined (JSON has no NaN): a rate over no cases is 0 with the
interval [0, 1]; kappa is 0 with [-1, 1] when chance agreement is 1 (one class only: agreement
beyond chance cannot be measured)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Sequence

Z95 = NormalDist().inv_cdf(0.975)  # 1.959963984540054
Pair = tuple[bool, bool]  # (judge passed, human passed)


@dataclass(frozen=True)
class Confusion:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @classmethod
    def of(cls, pairs: Sequence[Pair]) -> "Confusion":
        tp = sum(1 for j, h in pairs if not j and not h)
        fp = sum(1 for j, h in pairs if not j and h)
        fn = sum(1 for j, h in pairs if j and not h)
        return cls(tp, fp, fn, len(pairs) - tp - fp - fn)

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # at 0 and n the bound is exactly 0 or 1 (the arithmetic leaves a rounding error)
    return (0.0 if successes == 0 else max(0.0, centre - half),
            1.0 if successes == n else min(1.0, centre + half))


def kappa(c: Confusion) -> tuple[float, float, float]:
    """(p_o, p_e, kappa)."""
    if c.n == 0:
        return 0.0, 1.0, 0.0
    p_o = (c.tp + c.tn) / c.n
    judge_fail, human_fail = (c.tp + c.fp) / c.n, (c.tp + c.fn) / c.n
    p_e = judge_fail * human_fail + (1 - judge_fail) * (1 - human_fail)
    if p_e >= 1.0:
        return p_o, p_e, 0.0
    return p_o, p_e, (p_o - p_e) / (1 - p_e)


def kappa_ci(c: Confusion, z: float = Z95) -> tuple[float, float]:
    p_o, p_e, k = kappa(c)
    if c.n == 0 or p_e >= 1.0:
        return -1.0, 1.0
    se = math.sqrt(p_o * (1 - p_o) / (c.n * (1 - p_e) ** 2))
    return max(-1.0, k - z * se), min(1.0, k + z * se)


def _rate(hits: int, n: int) -> float:
    return hits / n if n else 0.0


def agreement(pairs: Sequence[Pair]) -> dict[str, Any]:
    """The agreement block of agreement.json (and the confusion counts)."""
    c = Confusion.of(pairs)
    _, _, k = kappa(c)
    return {"n": c.n, "accuracy": _rate(c.tp + c.tn, c.n),
            "accuracy_ci": list(wilson(c.tp + c.tn, c.n)),
            "kappa": k, "kappa_ci": list(kappa_ci(c)),
            "tpr_fail": _rate(c.tp, c.tp + c.fn), "tpr_fail_ci": list(wilson(c.tp, c.tp + c.fn)),
            "tnr_fail": _rate(c.tn, c.tn + c.fp), "tnr_fail_ci": list(wilson(c.tn, c.tn + c.fp)),
            "confusion": {"tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn}}


def kappa_gain_ci(before: Sequence[Pair], after: Sequence[Pair], resamples: int = 2000,
                  seed: int = 0) -> tuple[float, float]:
    """Percentile interval of kappa(after) - kappa(before) under a paired bootstrap over the
    same records (pairs line up by index): how sure the gain is, with few labels."""
    if not before:
        return 0.0, 0.0
    rng, n, gains = random.Random(seed), len(before), []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        gains.append(kappa(Confusion.of([after[i] for i in idx]))[2]
                     - kappa(Confusion.of([before[i] for i in idx]))[2])
    gains.sort()
    return gains[int(0.025 * resamples)], gains[int(0.975 * resamples) - 1]


def trend(timed: Sequence[tuple[float, Pair]], windows: int = 6,
          min_window: int = 5) -> list[dict[str, Any]]:
    """Agreement per window of consecutive labels (by label time): drift shows as a fall."""
    ordered = sorted(timed, key=lambda t: t[0])
    if not ordered:
        return []
    size = max(min_window, math.ceil(len(ordered) / windows))
    out = []
    for start in range(0, len(ordered), size):
        chunk = ordered[start:start + size]
        c = Confusion.of([pair for _, pair in chunk])
        out.append({"until": chunk[-1][0], "n": c.n, "accuracy": _rate(c.tp + c.tn, c.n),
                    "kappa": kappa(c)[2]})
    return out


def coverage_and_ffr(pairs: Sequence[Pair]) -> tuple[float, float]:
    """EvalGen's objective: (coverage of human-failed records, false-failure rate)."""
    c = Confusion.of(pairs)
    return _rate(c.tp, c.tp + c.fn), _rate(c.fp, c.fp + c.tn)
