"""The skill folders under configs/skills/ are complete and well formed: skill.yaml fields,
taxonomies, and Jinja2 templates that parse, use only the variables their kind may see, and
render with sample values. Only PyYAML, Jinja2 and the engine's template compiler are used."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import jinja2
import pytest
import yaml
from jinja2 import meta

from gristmill.flows.skills import VARIABLES  # the loader's own rules, not a copy
from gristmill.flows.templates import compile_template

SKILLS_DIR = Path(__file__).resolve().parent.parent / "configs" / "skills"
SKILLS = ["reading_comprehension", "text_modification", "tool_use", "coding", "open_domain_qa",
          "brain_teaser", "data_to_text", "text_extraction", "text_classification",
          "analytical_reasoning", "fermi", "creative_content", "few_shot_reasoning",
          "multiple_choice", "rag", "conversation", "web_agent"]
FOLDERS = sorted(p.name for p in SKILLS_DIR.iterdir() if (p / "skill.yaml").is_file()) \
    if SKILLS_DIR.is_dir() else []

SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
ENV = jinja2.Environment()

RC_AGENTS = {"argument_passage", "debate", "conversation", "meeting_transcript", "poem",
             "satirical_passage", "instructional_passage", "long_text", "identity"}
RC_TYPES = {"literal_comprehension", "numerical_discrete_reasoning", "critical_comprehension",
            "evaluative_comprehension", "vocabulary_and_language_use",
            "relationship_comprehension", "sequencing_events", "strengthen", "weaken", "flaw",
            "inference", "principle", "method_of_reasoning"}  # + assumption, see below
TM_TYPES = {"paraphrasing", "simplification", "expansion", "translation", "formatting",
            "sentiment_modification", "annotation", "keyword_replacement", "redaction",
            "capitalization", "styling", "content_rewriting", "data_normalization",
            "plagiarism_rewording", "code_switching", "obfuscation", "textual_entailment",
            "vocabulary_limited_rewriting"}
TOOL_TYPES = {"single_api_all_parameters", "single_api_extra_parameters",
              "single_api_missing_parameters", "multiple_apis", "needed_api_absent",
              "some_apis_missing"}


def load(skill: str) -> dict[str, Any]:
    return yaml.safe_load((SKILLS_DIR / skill / "skill.yaml").read_text(encoding="utf-8"))


def taxonomy(skill: str) -> list[dict[str, Any]]:
    return yaml.safe_load((SKILLS_DIR / skill / "taxonomy.yaml").read_text(encoding="utf-8"))


def is_path(value: str) -> bool:
    """The loader's rule: a one-line value ending in .j2 is a file; anything else is inline."""
    return value.strip().endswith(".j2") and "\n" not in value.strip()


def template_fields(data: dict[str, Any]) -> Iterator[tuple[str, str, str | None]]:
    """(where, kind, value) for every template field of a skill.yaml."""
    transform = data.get("transform") or {}
    yield "transform.system", "transform", transform.get("system")
    for i, agent in enumerate(transform.get("agents") or []):
        for key in ("prompt", "system"):
            yield f"transform.agents[{i}].{key}", "transform", agent.get(key)
    retrieves = bool((data.get("answer") or {}).get("retrieve"))
    for section in ("generate", "answer"):
        kind = "retrieved" if section == "answer" and retrieves else section
        for key in ("system", "prompt"):
            yield f"{section}.{key}", kind, (data.get(section) or {}).get(key)
    for kind in ("suggest", "edit"):
        for key in ("system", "prompt"):
            yield f"refine.{kind}.{key}", kind, ((data.get("refine") or {}).get(kind) or {}).get(key)
    for key in ("system", "user"):
        yield (f"record.{key}", "retrieved_record" if retrieves else "record",
               (data.get("record") or {}).get(key))


def source(skill: str, value: str | None) -> str | None:
    if value is None:
        return None
    if is_path(value):
        return (SKILLS_DIR / skill / value.strip()).read_text(encoding="utf-8")
    return value


def test_every_shipped_skill_exists():
    assert set(SKILLS) <= set(FOLDERS), f"missing skills: {sorted(set(SKILLS) - set(FOLDERS))}"


@pytest.mark.parametrize("skill", FOLDERS)
def test_skill_yaml_has_the_required_fields(skill):
    data = load(skill)
    assert data["name"] == skill
    assert isinstance(data.get("description"), str) and data["description"].strip()
    assert data["accepts"] and set(data["accepts"]) <= {"prose", "code", "html", "table"}
    agents = data["transform"]["agents"]
    assert agents, "a skill needs at least one transformation agent"
    names = [a["name"] for a in agents]
    assert len(names) == len(set(names)), "agent names must be unique"
    for agent in agents:
        assert SNAKE.match(agent["name"]), agent["name"]
        assert set(agent) <= {"name", "description", "prompt", "system", "identity"}
        assert agent.get("description", "").strip(), f"agent {agent['name']} needs a description"
        if agent.get("identity"):
            assert not agent.get("prompt"), f"identity agent {agent['name']} takes no prompt"
        else:
            assert agent.get("prompt"), f"agent {agent['name']} needs a prompt"
            assert agent.get("system") or data["transform"].get("system"), \
                f"agent {agent['name']} has no system prompt and there is no default"
    generate = data["generate"]
    assert generate["system"] and generate["prompt"]
    assert isinstance(generate["types_per_request"], int) and 1 <= generate["types_per_request"] <= 20
    refine = data["refine"]
    assert refine["goals"] and all(isinstance(g, str) and g.strip() for g in refine["goals"])
    for kind in ("suggest", "edit"):
        assert refine[kind]["system"] and refine[kind]["prompt"]
    assert data["answer"]["system"] and data["answer"]["prompt"]
    assert "system" in data["record"] and data["record"]["user"]
    assert set(data) <= {"name", "description", "accepts", "transform", "generate", "refine",
                         "answer", "record"}


@pytest.mark.parametrize("skill", FOLDERS)
def test_templates_parse_and_use_only_their_variables(skill):
    data = load(skill)
    for where, kind, value in template_fields(data):
        text = source(skill, value)
        if text is None:
            continue
        try:
            used = meta.find_undeclared_variables(ENV.parse(text))
        except jinja2.TemplateSyntaxError as exc:
            pytest.fail(f"{skill}: {where}: syntax error on line {exc.lineno}: {exc.message}")
        unknown = used - VARIABLES[kind]
        assert not unknown, f"{skill}: {where} uses {sorted(unknown)}; a {kind} template may " \
                            f"use {sorted(VARIABLES[kind])}"


@pytest.mark.parametrize("skill", FOLDERS)
def test_template_files_exist_and_all_are_referenced(skill):
    data = load(skill)
    referenced = set()
    for where, _, value in template_fields(data):
        if value is not None and is_path(value):
            path = (SKILLS_DIR / skill / value.strip()).resolve()
            assert path.is_file(), f"{skill}: {where} names a missing file {value}"
            referenced.add(path)
    on_disk = {p.resolve() for p in (SKILLS_DIR / skill).rglob("*.j2")}
    unreferenced = sorted(str(p.relative_to(SKILLS_DIR)) for p in on_disk - referenced)
    assert not unreferenced, f"template files no skill.yaml field uses: {unreferenced}"


@pytest.mark.parametrize("skill", FOLDERS)
def test_taxonomy_entries_are_complete_and_unique(skill):
    types = taxonomy(skill)
    assert isinstance(types, list) and types
    for entry in types:
        assert set(entry) == {"name", "definition", "example"}, entry
        for key in ("name", "definition", "example"):
            assert isinstance(entry[key], str) and entry[key].strip(), (entry.get("name"), key)
        assert SNAKE.match(entry["name"]), entry["name"]
    for key in ("name", "definition", "example"):  # distinct types, not one type twice
        values = [" ".join(e[key].lower().split()) for e in types]
        duplicates = sorted({v[:60] for v in values if values.count(v) > 1})
        assert not duplicates, f"{skill}: types share a {key}: {duplicates}"


MINIMUM_TYPES = {"analytical_reasoning": 10, "multiple_choice": 10, "data_to_text": 8,
                 "fermi": 8, "text_extraction": 10, "text_classification": 10, "rag": 8,
                 "creative_content": 10, "few_shot_reasoning": 8, "conversation": 8,
                 "web_agent": 8}


@pytest.mark.parametrize("skill", sorted(MINIMUM_TYPES))
def test_the_new_skills_have_their_breadth_of_types(skill):
    assert len(taxonomy(skill)) >= MINIMUM_TYPES[skill]


def test_reading_comprehension_agents_and_types():
    data = load("reading_comprehension")
    assert {a["name"] for a in data["transform"]["agents"]} == RC_AGENTS
    assert len(data["transform"]["agents"]) == len(RC_AGENTS)
    assert data["accepts"] == ["prose"]
    names = {e["name"] for e in taxonomy("reading_comprehension")}
    assert len(names) >= 43
    assert RC_TYPES <= names, f"missing: {sorted(RC_TYPES - names)}"
    assert "assumption" in names or {"necessary_assumption", "sufficient_assumption"} <= names


def test_text_modification_types():
    names = {e["name"] for e in taxonomy("text_modification")}
    assert TM_TYPES <= names, f"missing: {sorted(TM_TYPES - names)}"


def test_tool_use_types_and_seeds():
    names = {e["name"] for e in taxonomy("tool_use")}
    assert TOOL_TYPES <= names, f"missing: {sorted(TOOL_TYPES - names)}"
    assert set(load("tool_use")["accepts"]) == {"prose", "code"}


def sample_values(skill: str, data: dict[str, Any], kind: str, agent: str) -> dict[str, Any]:
    types = taxonomy(skill)[:2]
    return {
        "seed": "The mill's wheel turned six times a minute.\nIt ground 40 sacks a day.",
        "kind": kind, "language": "python" if kind == "code" else None, "skill": skill,
        "agent": agent, "text": "Transformed text about the mill.", "types": types,
        "n": len(types), "instruction": "What did the mill grind?", "type": types[0],
        "goals": data["refine"]["goals"][:2], "round": 2,
        "suggestions": ["Add a distractor.", "Ask for two steps."], "answer": "Grain.",
        # a page's and a table's structured forms (docs/seeds.md), empty for other kinds
        "page_title": "The mill" if kind == "html" else "",
        "elements": '[e1] button "Grind"' if kind == "html" else "",
        "element_ids": ["e1"] if kind == "html" else [],
        "table": {"columns": ["day", "sacks"], "rows": [["Mon", 40]], "omitted_columns": [],
                  "first_line": 2, "rows_total": 1} if kind == "table" else None,
        # a conversation's answer (a dialogue answer mode), passages of a skill that retrieves
        "dialogue": len(agent) % 2 == 0,
        "passages": [{"id": "a1", "text": "The mill ground grain."}],
        "distractors": [{"id": "b2", "text": "Tides rise twice a day."}],
    }


@pytest.mark.parametrize("skill", FOLDERS)
def test_every_template_renders_for_every_agent_and_seed_kind(skill):
    data = load(skill)
    for kind in data["accepts"]:
        for agent in data["transform"]["agents"]:
            values = sample_values(skill, data, kind, agent["name"])
            for where, tkind, value in template_fields(data):
                text = source(skill, value)
                if text is None:
                    continue
                allowed = {k: v for k, v in values.items() if k in VARIABLES[tkind]}
                rendered = compile_template(text).render(allowed)  # StrictUndefined
                assert rendered.strip(), f"{skill}: {where} renders empty"
                assert "{{" not in rendered and "{%" not in rendered, f"{skill}: {where}"
                if values["language"] is None:  # no "None" beyond what the template says itself
                    assert rendered.count("None") <= text.count("None"), \
                        f"{skill}: {where} prints language None"


@pytest.mark.parametrize("skill", FOLDERS)
def test_generate_and_suggest_prompts_ask_for_items(skill):
    data = load(skill)
    kind = data["accepts"][0]
    values = sample_values(skill, data, kind, data["transform"]["agents"][0]["name"])
    generate = compile_template(source(skill, data["generate"]["prompt"])).render(values)
    assert '"items"' in generate
    for entry in values["types"]:  # each requested type is listed with its definition and example
        assert entry["name"] in generate
        assert entry["definition"] in generate and entry["example"] in generate
    assert str(values["n"]) in generate
    suggest = compile_template(source(skill, data["refine"]["suggest"]["prompt"])).render(values)
    assert '"items"' in suggest
    for goal in values["goals"]:
        assert goal in suggest
    edit = compile_template(source(skill, data["refine"]["edit"]["prompt"])).render(values)
    for suggestion in values["suggestions"]:
        assert suggestion in edit


def test_record_shows_what_the_skill_needs():
    """Reading comprehension shows the passage before the question; tool use shows the APIs."""
    for skill, needs_text in [("reading_comprehension", True), ("text_modification", True),
                              ("tool_use", True), ("coding", False), ("open_domain_qa", False),
                              ("brain_teaser", False)]:
        data = load(skill)
        values = {**sample_values(skill, data, data["accepts"][0], "identity"),
                  "dialogue": False}  # a single answer (tool use's dialogues carry `tools`)
        user = compile_template(source(skill, data["record"]["user"])).render(values)
        assert values["instruction"] in user
        assert (values["text"] in user) == needs_text, skill
    data = load("reading_comprehension")
    values = sample_values("reading_comprehension", data, "prose", "identity")
    user = compile_template(source("reading_comprehension", data["record"]["user"])).render(values)
    assert user.index(values["text"]) < user.index(values["instruction"])
