"""Choosing the assertions to keep, SPADE's way: drop the candidates another one subsumes,
then the fewest assertions such that

    coverage = (human-failed records at least one kept assertion fails) / (human fails) >= alpha
    false-failure rate = (human-passed records any kept assertion fails) / (human passes) <= tau

as an integer program solved exactly (scipy's `milp`, HiGHS). Variables: x_a (keep a), y_f
(fail f is covered), z_p (pass p is failed). y_f <= sum of x_a over the a that fail f;
z_p >= x_a for every a that fails p; sum y >= ceil(alpha * fails); sum z <= floor(tau * passes).
The objective is lexicographic through its weights: fewest assertions, then most coverage,
then fewest false failures."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from gristmill.assertions.evaluate import Evaluation
from gristmill.errors import ConfigError

ALPHA, TAU = 0.6, 0.25  # SPADE's defaults


@dataclass(frozen=True)
class Selection:
    kept: list[Evaluation]
    candidates: list[Evaluation]  # after subsumption (what the program chose from)
    subsumed: dict[str, str]  # dropped id -> the id that subsumes it
    covered: int  # human fails the kept set fails
    false_failures: int  # human passes the kept set fails
    fails: int
    passes: int


def subsumes(a: Evaluation, b: Evaluation) -> bool:
    """`a` catches every failure `b` catches, and its false failures are among b's."""
    return a.caught >= b.caught and a.false_failures <= b.false_failures


def drop_subsumed(evaluations: Sequence[Evaluation]) -> tuple[list[Evaluation], dict[str, str]]:
    """Candidates that catch something and that no other subsumes; of equal ones, the first."""
    useful = [e for e in evaluations if e.caught]
    kept, dropped = [], {}
    for i, e in enumerate(useful):
        by = next((o for j, o in enumerate(useful) if j != i and subsumes(o, e)
                   and not (subsumes(e, o) and j > i)), None)
        if by is None:
            kept.append(e)
        else:
            dropped[e.assertion.id] = by.assertion.id
    return kept, dropped


def select(evaluations: Sequence[Evaluation], alpha: float = ALPHA,
           tau: float = TAU) -> Selection:
    """The minimum set meeting alpha and tau; ConfigError when no set does, naming the best
    coverage reachable with false failures within tau."""
    if not evaluations:
        raise ConfigError("no candidate assertions to choose from")
    fails, passes = evaluations[0].fails, evaluations[0].passes
    candidates, subsumed = drop_subsumed(evaluations)
    need, allow = math.ceil(alpha * fails - 1e-9), math.floor(tau * passes + 1e-9)
    chosen = solve(candidates, need, allow, fewest=True)
    if chosen is None:
        best = solve(candidates, 0, allow, fewest=False) or []
        covered = len(frozenset().union(*(e.caught for e in best)))
        raise ConfigError(
            f"no set of assertions covers {alpha:.0%} of the {fails} human-failed records with "
            f"at most {tau:.0%} false failures on the {passes} passed ones; the best coverage "
            f"within that false-failure rate is {covered / max(1, fails):.0%} ({covered} of "
            f"{fails}, with {len(best)} assertion(s)): lower --alpha to "
            f"{math.floor(100 * covered / max(1, fails)) / 100:.2f}, raise --tau, or label more")
    return Selection(chosen, candidates, subsumed,
                     len(frozenset().union(*(e.caught for e in chosen))),
                     len(frozenset().union(*(e.false_failures for e in chosen))), fails, passes)


def solve(candidates: Sequence[Evaluation], need: int, allow: int,
          fewest: bool) -> list[Evaluation] | None:
    """The program above (`fewest`: size first; else coverage first); None if infeasible."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    fail_ids = sorted(frozenset().union(*(e.caught for e in candidates)))
    pass_ids = sorted(frozenset().union(*(e.false_failures for e in candidates)))
    if need == 0 and fewest:
        return []
    if need > len(fail_ids):
        return None
    n_a, n_f, n_p = len(candidates), len(fail_ids), len(pass_ids)
    f_index = {f: n_a + i for i, f in enumerate(fail_ids)}
    p_index = {p: n_a + n_f + i for i, p in enumerate(pass_ids)}
    n = n_a + n_f + n_p
    rows, lower, upper = [], [], []

    def row(coefficients: dict[int, float], low: float, high: float) -> None:
        line = np.zeros(n)
        for index, value in coefficients.items():
            line[index] = value
        rows.append(line)
        lower.append(low)
        upper.append(high)

    for f in fail_ids:  # y_f <= sum of the x_a that catch f
        row({f_index[f]: 1, **{a: -1 for a, e in enumerate(candidates) if f in e.caught}},
            -np.inf, 0)
    for a, e in enumerate(candidates):  # z_p >= x_a for each pass a fails
        for p in e.false_failures:
            row({p_index[p]: 1, a: -1}, 0, np.inf)
    row({i: 1 for i in f_index.values()}, need, np.inf)
    row({i: 1 for i in p_index.values()}, -np.inf, allow)
    size_weight, fail_weight, pass_weight = (n_f + 1, 1, 1 / (n_p + 1)) if fewest else \
        (1 / (n_a + 1) / (n_p + 1), (n_p + 1), 1)
    cost = np.array([size_weight] * n_a + [-fail_weight] * n_f + [pass_weight] * n_p)
    result = milp(cost, integrality=np.ones(n), bounds=Bounds(0, 1),
                  constraints=LinearConstraint(np.array(rows), lower, upper))
    if result.status == 2 or result.x is None:  # 2: infeasible
        return None
    return [e for a, e in enumerate(candidates) if result.x[a] > 0.5]
