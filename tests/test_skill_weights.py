"""Skill weights: with skills_per_seed, each seed draws its skills in proportion to their
weights, the same seed always the same ones, a weight of 0 never; the config names mistakes."""

from __future__ import annotations

from collections import Counter

import pytest

from gristmill.config.pipeline import AgentInstructConfig
from gristmill.flows.agentinstruct import Flow
from gristmill.flows.sampling import weighted_sample


def test_draws_follow_the_weights():
    items, weights = ["a", "b", "c", "d"], [1.0, 2.0, 1.0, 0.0]
    drawn = Counter(x for i in range(20_000) for x in weighted_sample(items, weights, i, 1))
    assert drawn["d"] == 0
    assert 1.9 < drawn["b"] / drawn["a"] < 2.1 and 0.95 < drawn["c"] / drawn["a"] < 1.05
    pairs = [weighted_sample(items, weights, i, 2) for i in range(1000)]
    assert all(len(set(p)) == 2 and "d" not in p for p in pairs)
    assert pairs == [weighted_sample(items, weights, i, 2) for i in range(1000)]


def test_the_flow_draws_weighted_skills_per_seed():
    config = AgentInstructConfig(skills=["reading_comprehension", "open_domain_qa",
                                         "brain_teaser", "text_modification"],
                                 skills_per_seed=2, agents_per_seed=1,
                                 skill_weights={"brain_teaser": 0, "open_domain_qa": 3})
    flow = Flow(config)
    drawn = Counter(skill.name for i in range(3000)
                    for skill, _, _ in flow.assignments("prose", i))
    assert drawn["brain_teaser"] == 0
    assert drawn["open_domain_qa"] > drawn["reading_comprehension"] > 0
    unweighted = Flow(config.model_copy(update={"skill_weights": {}}))
    assert [s.name for s, _, _ in unweighted.assignments("prose", 7)] == \
        [s.name for s, _, _ in unweighted.assignments("prose", 7)]


def test_weights_of_skills_the_run_does_not_have_are_ignored():
    config = AgentInstructConfig(skills=["open_domain_qa"], skills_per_seed=1,
                                 skill_weights={"coding": 2, "open_domain_qa": 1})
    assert {s.name for s, _, _ in Flow(config).assignments("prose", 3)} == {"open_domain_qa"}


@pytest.mark.parametrize("change, message", [
    ({"skill_weights": {"fermi": -1}}, "0 \\(never\\) or more"),
    ({"skills_per_seed": None}, "set skills_per_seed")])
def test_weights_that_cannot_apply_are_config_errors(change, message):
    data = {"skills": ["fermi", "rag"], "skills_per_seed": 1, "skill_weights": {"fermi": 2},
            **change}
    with pytest.raises(ValueError, match=message):
        AgentInstructConfig(**data)
