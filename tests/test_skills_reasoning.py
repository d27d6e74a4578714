"""The four reasoning and writing skills - analytical_reasoning, fermi, creative_content and
few_shot_reasoning: their agents and taxonomies as designed, every template rendered for every
agent and seed kind, and each skill run end to end on the mock server."""

from __future__ import annotations

from collections import Counter

import pytest

from gristmill.flows.skills import load_skill
from gristmill.flows.templates import compile_template
from gristmill.runs.runner import RunOptions, run
from tests.test_flows import flow_config, records
from tests.test_skills_content import load, sample_values, source, taxonomy

DESIGN = {  # skill: (accepts, agents, taxonomy types)
    "analytical_reasoning": (
        ["prose"],
        {"ordering_scenario", "grouping_scenario", "assignment_scenario"},
        {"acceptable_arrangement", "must_be_true", "could_be_true", "cannot_be_true",
         "could_be_true_except", "conditional_must_be_true", "conditional_could_be_true",
         "complete_and_accurate_list", "maximum_or_minimum", "rule_substitution", "rule_change",
         "fully_determining_condition", "count_arrangements", "full_ordering_deduction",
         "full_grouping_deduction"}),
    "fermi": (
        ["prose"],
        {"quantity_inventory", "estimation_scenarios", "scale_anchors", "identity"},
        {"count_in_population", "rate_or_flow", "mass_or_volume", "energy_or_power",
         "time_to_complete", "distance_or_area", "cost_or_budget", "event_frequency",
         "magnitude_comparison", "plausibility_check", "what_if_scaling",
         "upper_and_lower_bounds"}),
    "creative_content": (
        ["prose"],
        {"themes_and_images", "character_sketches", "creative_brief", "identity"},
        {"fixed_form_poem", "free_verse_poem", "constrained_wordplay", "flash_fiction",
         "story_scene", "fable_or_childrens_story", "script_scene", "dramatic_monologue",
         "advertisement", "persuasive_letter", "letter_in_character", "song_lyrics", "speech",
         "diary_entry", "genre_pastiche"}),
    "few_shot_reasoning": (
        ["prose", "code"],
        {"hidden_rule_examples", "worked_solutions", "relation_pairs"},
        {"rule_inference", "format_transfer", "analogy_completion", "label_by_examples",
         "sequence_continuation", "style_imitation", "worked_solution_pattern",
         "program_behaviour_induction", "correction_by_examples", "mapping_or_cipher",
         "rule_conformance", "conditional_rule_induction"}),
}
SKILLS = list(DESIGN)
FINAL_LINE = {"analytical_reasoning": "Answer:", "fermi": "Estimate:", "few_shot_reasoning": "Answer:"}


@pytest.mark.parametrize("skill", SKILLS)
def test_agents_types_and_seed_kinds_are_the_designed_ones(skill):
    accepts, agents, types = DESIGN[skill]
    loaded = load_skill(skill)  # the engine's own loader and checks
    assert loaded.accepts == accepts
    assert {a.name for a in loaded.transform.agents} == agents
    assert 2 <= len(agents) <= 4
    assert {t.name for t in loaded.taxonomy} == types


@pytest.mark.parametrize("skill", SKILLS)
def test_taxonomy_and_goals_are_distinct(skill):
    types = taxonomy(skill)
    for key in ("definition", "example"):
        texts = [" ".join(t[key].split()) for t in types]
        assert len(set(texts)) == len(texts), f"{skill}: two types share a {key}"
    goals = load(skill)["refine"]["goals"]
    assert len(goals) >= 5 and len(set(goals)) == len(goals)


@pytest.mark.parametrize("skill", SKILLS)
def test_prompts_follow_the_agent_and_seed_kind(skill):
    """Every template renders for every agent and seed kind (test_skills_content.py); here the
    transform prompt carries the seed, and the generate prompt names each agent's material."""
    data = load(skill)
    for kind in data["accepts"]:
        generate = set()
        for agent in data["transform"]["agents"]:
            values = sample_values(skill, data, kind, agent["name"])
            if not agent.get("identity"):
                prompt = compile_template(source(skill, agent["prompt"])).render(values)
                assert values["seed"] in prompt, (agent["name"], kind)
            generate.add(compile_template(source(skill, data["generate"]["prompt"])).render(values))
        assert len(generate) == len(data["transform"]["agents"]), f"{skill}: an agent's material is unnamed"


def test_few_shot_transforms_show_code_as_code_and_prose_as_text():
    data = load("few_shot_reasoning")
    for agent in data["transform"]["agents"]:
        template = compile_template(source("few_shot_reasoning", agent["prompt"]))
        code = template.render(sample_values("few_shot_reasoning", data, "code", agent["name"]))
        prose = template.render(sample_values("few_shot_reasoning", data, "prose", agent["name"]))
        assert "```python\n" in code and "Source text:" not in code, agent["name"]
        assert "Source text:" in prose and "```" not in prose, agent["name"]


@pytest.mark.parametrize("skill", SKILLS)
def test_the_record_is_the_self_contained_instruction(skill):
    """These instructions carry everything they need, so the record shows them alone."""
    data = load(skill)
    values = sample_values(skill, data, data["accepts"][0], data["transform"]["agents"][0]["name"])
    user = compile_template(source(skill, data["record"]["user"])).render(values)
    assert user == values["instruction"]
    assert data["record"]["system"] is None


@pytest.mark.parametrize("skill", sorted(FINAL_LINE))
def test_answers_end_on_a_marked_final_line(skill):
    data = load(skill)
    values = sample_values(skill, data, data["accepts"][0], data["transform"]["agents"][0]["name"])
    prompt = compile_template(source(skill, data["answer"]["prompt"])).render(values)
    assert prompt.startswith(values["instruction"])
    assert f'beginning "{FINAL_LINE[skill]}"' in prompt or f'reads "{FINAL_LINE[skill]}"' in prompt


async def test_the_four_skills_end_to_end(mock_server, tmp_path):
    config = flow_config(mock_server.base_url, SKILLS, agents_per_seed=4, refine_rounds=2)
    summary = await run(config, RunOptions(run_dir=tmp_path, progress=False))
    out = records(tmp_path / "output.jsonl")
    assert out and summary["rejects"] == 0 and summary["records"] == len(out)
    assert set(summary["by_skill"]) == set(SKILLS)
    agents = Counter((r["skill"], r["agent"]) for r in out)
    for skill, (_, designed, types) in DESIGN.items():
        assert {a for s, a in agents if s == skill} == designed, skill  # every agent ran
        assert {r["type"] for r in out if r["skill"] == skill} <= types
    seeds = {skill: {r["seed_id"] for r in out if r["skill"] == skill} for skill in SKILLS}
    assert len(seeds["few_shot_reasoning"]) > len(seeds["fermi"])  # code seeds too
    for record in out:
        user = [m for m in record["messages"] if m["role"] == "user"][-1]["content"]
        assert user == record["refinements"][-1]["instruction"]
