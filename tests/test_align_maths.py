"""Agreement maths against cases worked out by hand, and the EvalGen choice.

The fail class is positive: a pair is (judge passed, human passed)."""

from __future__ import annotations

import math

import pytest

from gristmill.flywheel.agreement import (Confusion, agreement, coverage_and_ffr, kappa, kappa_ci,
                                          kappa_gain_ci, trend, wilson)
from gristmill.flywheel.align import Score, choose, split_ids


def pairs(tp: int, fp: int, fn: int, tn: int) -> list[tuple[bool, bool]]:
    return ([(False, False)] * tp + [(False, True)] * fp + [(True, False)] * fn
            + [(True, True)] * tn)


def test_confusion_counts_fail_as_the_positive_class():
    c = Confusion.of(pairs(4, 1, 2, 3))
    assert (c.tp, c.fp, c.fn, c.tn, c.n) == (4, 1, 2, 3, 10)


def test_ten_labels_by_hand():
    # tp 4, fp 1, fn 2, tn 3 (n = 10)
    # accuracy = (4 + 3) / 10 = 0.7
    # judge fails 5/10 = 0.5, human fails 6/10 = 0.6
    # p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5; kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4
    # se = sqrt(0.7 * 0.3 / (10 * 0.5^2)) = sqrt(0.084) = 0.28983
    # kappa CI = 0.4 -+ 1.95996 * 0.28983 = [-0.16805, 0.96805]
    # tpr_fail = 4 / 6; tnr_fail = 3 / 4
    # Wilson 7/10: centre (0.7 + 3.8415/20) / 1.38415 = 0.64449,
    #   half 1.95996 * sqrt(0.021 + 3.8415/400) / 1.38415 = 0.24772 -> [0.39677, 0.89221]
    # Wilson 4/6 -> [0.29999, 0.90323]; Wilson 3/4 -> [0.30064, 0.95442]
    got = agreement(pairs(4, 1, 2, 3))
    expected = {"n": 10, "accuracy": 0.7, "kappa": 0.4, "tpr_fail": 4 / 6, "tnr_fail": 0.75}
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key
    assert got["kappa_ci"] == pytest.approx([-0.16805, 0.96805], abs=1e-4)
    assert got["accuracy_ci"] == pytest.approx([0.39677, 0.89221], abs=1e-4)
    assert got["tpr_fail_ci"] == pytest.approx([0.29999, 0.90323], abs=1e-4)
    assert got["tnr_fail_ci"] == pytest.approx([0.30064, 0.95442], abs=1e-4)
    assert got["confusion"] == {"tp": 4, "fp": 1, "fn": 2, "tn": 3}


def test_textbook_kappa_example():
    # the classic 2x2 of 50 items: 20 both "yes", 15 both "no", 5 and 10 split -> 0.4
    p_o, p_e, k = kappa(Confusion.of(pairs(20, 5, 10, 15)))
    assert (p_o, p_e, k) == pytest.approx((0.7, 0.5, 0.4))
    # se = sqrt(0.21 / (50 * 0.25)) = 0.12961 -> [0.14597, 0.65403]
    assert kappa_ci(Confusion.of(pairs(20, 5, 10, 15))) == pytest.approx([0.14597, 0.65403],
                                                                          abs=1e-4)


def test_wilson_edges():
    assert wilson(0, 0) == (0.0, 1.0)
    lo, hi = wilson(0, 10)  # centre 0.19208/1.38415, half the same: lower bound exactly 0
    assert lo == 0.0 and hi == pytest.approx(0.27753, abs=1e-4)
    lo, hi = wilson(10, 10)
    assert hi == 1.0 and lo == pytest.approx(1 - 0.27753, abs=1e-4)


def test_kappa_conventions_when_undefined_or_perfect():
    assert kappa(Confusion.of(pairs(0, 0, 0, 7)))[2] == 0.0  # one class only: p_e = 1
    assert kappa_ci(Confusion.of(pairs(0, 0, 0, 7))) == (-1.0, 1.0)
    perfect = agreement(pairs(3, 0, 0, 5))
    assert perfect["kappa"] == 1.0 and perfect["kappa_ci"] == [1.0, 1.0]
    # judge always passes, humans fail 3 of 8: p_o = 5/8 = p_e, kappa 0; tpr 0; tnr 1
    lenient = agreement(pairs(0, 0, 3, 5))
    assert lenient["kappa"] == pytest.approx(0.0) and lenient["tpr_fail"] == 0.0
    assert lenient["tnr_fail"] == 1.0
    empty = agreement([])
    assert empty["n"] == 0 and empty["accuracy_ci"] == [0.0, 1.0]
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in empty.values())


def test_coverage_and_false_failure_rate():
    assert coverage_and_ffr(pairs(4, 1, 2, 3)) == pytest.approx((4 / 6, 1 / 4))


def test_kappa_gain_interval_brackets_the_gain_and_is_deterministic():
    before, after = pairs(1, 1, 5, 13), pairs(5, 1, 1, 13)  # same 20 records, better judge
    gain = kappa(Confusion.of(after))[2] - kappa(Confusion.of(before))[2]
    lo, hi = kappa_gain_ci(before, after)
    assert lo <= gain <= hi and lo > 0
    assert kappa_gain_ci(before, after) == (lo, hi)
    assert kappa_gain_ci(before, before) == (0.0, 0.0)


def test_trend_windows_follow_label_time():
    # 12 labels, 6 windows of at least 5: windows of 5, 5, 2; the judge is right early only
    timed = [(float(t), (True, True) if t < 5 else (True, False)) for t in range(12)]
    points = trend(list(reversed(timed)))
    assert [p["n"] for p in points] == [5, 5, 2]
    assert [p["until"] for p in points] == [4.0, 9.0, 11.0]
    assert [p["accuracy"] for p in points] == [1.0, 0.0, 0.0]


def test_evalgen_choice_maximises_coverage_within_the_bound():
    scores = [Score("zero", 0.1, 0.0, 0.6, 0), Score("wide", 0.95, 0.4, 0.7, 10),
              Score("good", 0.8, 0.1, 0.85, 8), Score("good-small", 0.8, 0.1, 0.85, 4)]
    assert choose(scores, 0.2).name == "good-small"  # tie on coverage and accuracy: fewer
    assert choose(scores, 0.5).name == "wide"
    # nothing within the bound: the fewest false failures
    assert choose([Score("a", 0.9, 0.5, 0.5, 1), Score("b", 0.2, 0.3, 0.5, 1)], 0.1).name == "b"


def test_three_way_split_is_disjoint_complete_and_independent_of_order():
    ids = [f"{i:016x}" for i in range(41)]
    split = split_ids(ids)
    assert (len(split.train), len(split.dev), len(split.test)) == (20, 10, 11)
    assert sorted(split.train + split.dev + split.test) == ids
    assert split_ids(list(reversed(ids))) == split
    assert split.train != ids[:20]  # not by position
