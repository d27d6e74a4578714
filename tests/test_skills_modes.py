"""The skills whose answers are more than text - multiple_choice (JSON with a checked key), rag
(passages retrieved first), conversation (a dialogue), web_agent (actions over a page's
element ids) and tool_use (a share of its answers a dialogue with tool calls): their types,
their templates, and end to end on the mock server, the shape of every record they make."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from gristmill.errors import ConfigError
from gristmill.flows.agentinstruct import AnswerStage
from gristmill.flows.items import Item
from gristmill.flows.skills import load_skill
from gristmill.flows.templates import compile_template
from tests.openai_format import format_errors

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "agentinstruct.yaml"
TYPES = {
    "multiple_choice": {"factual_recall", "inference", "quantitative_reasoning",
                        "application_to_new_case", "exception_identification",
                        "code_behaviour"},
    "rag": {"single_passage_fact", "multi_passage_synthesis", "conflicting_sources",
            "unanswerable_from_passages", "partially_answerable"},
    "conversation": {"advice_seeking", "tutoring", "negotiation", "troubleshooting", "planning"},
    "web_agent": {"single_click_navigation", "form_fill_and_submit", "search_query",
                  "filter_and_sort", "multi_step_transaction", "information_lookup"},
}
LEAST_TYPES = {"multiple_choice": 10, "rag": 8, "conversation": 8, "web_agent": 8}


@pytest.mark.parametrize("name", sorted(TYPES))
def test_types_goals_and_kinds(name):
    skill = load_skill(name)
    names = [t.name for t in skill.taxonomy]
    assert len(names) >= LEAST_TYPES[name] and len(set(names)) == len(names)
    assert TYPES[name] <= set(names), sorted(TYPES[name] - set(names))
    assert len(skill.refine.goals) >= 5
    assert skill.accepts == {"multiple_choice": ["prose", "code"], "rag": ["prose"],
                             "conversation": ["prose"], "web_agent": ["html"]}[name]


PAGE = {"elements": '[e1] searchbox "Search"\n[e2] button "Go"', "element_ids": ["e1", "e2"],
        "page_title": "Shop"}


def values(name: str, **extra: Any) -> dict[str, Any]:
    skill = load_skill(name)
    type_ = skill.types()[0]
    return {"seed": "A mill ground 40 sacks a day.", "kind": "prose", "language": None,
            "skill": name, "agent": skill.transform.agents[0].name,
            "text": "ASSISTANT ROLE: a miller.\nSITUATION: a visit.\nUSER NOTES: secret plan.",
            "instruction": "What did the mill grind?", "type": type_, "types": [type_],
            "n": 1, "goals": skill.refine.goals[:2], "round": 1, "suggestions": ["Harder."],
            "answer": "Grain.", "dialogue": False, "table": None, **PAGE,
            "passages": [{"id": "p2", "text": "Mills ground grain."}],
            "distractors": [{"id": "p1", "text": "Tides rise twice a day."}], **extra}


def render(source: str | None, variables: dict[str, Any]) -> str:
    return compile_template(source).render(variables) if source else ""


@pytest.mark.parametrize("name", [*sorted(TYPES), "tool_use"])
def test_every_template_renders(name):
    skill = load_skill(name)
    v = values(name)
    sources = [skill.generate.system, skill.generate.prompt, skill.refine.suggest.prompt,
               skill.refine.edit.prompt, skill.answer.system, skill.answer.prompt,
               skill.record.system, skill.record.user, skill.transform.system,
               *(a.prompt for a in skill.transform.agents)]
    for source in filter(None, sources):
        text = render(source, v)
        assert text.strip() and "{{" not in text and "{%" not in text
    assert v["type"]["definition"] in render(skill.generate.prompt, v)
    if skill.answer.output is not None and isinstance(skill.answer.output.format, str):
        schema = orjson.loads(render(skill.answer.output.format, v))  # JSON for this page
        assert schema["properties"]["actions"]["items"]["properties"]["element"] == \
            {"enum": ["e1", "e2"]}


def test_rag_record_mixes_passages_and_distractors_by_id():
    skill = load_skill("rag")
    user = render(skill.record.user, values("rag"))
    assert user.index("[p1] Tides") < user.index("[p2] Mills") < user.index("What did")


def test_conversation_keeps_the_user_notes_out_of_the_assistant_side():
    skill = load_skill("conversation")
    v = values("conversation")
    for source in (skill.answer.system, skill.record.system):
        assert "a miller" in render(source, v) and "secret plan" not in render(source, v)
    assert "secret plan" in render(skill.answer.dialogue.user.system, {**v, "stop": "DONE"})


def test_tool_use_templates_follow_the_answer_mode():
    skill = load_skill("tool_use")
    single, talk = values("tool_use"), values("tool_use", dialogue=True)
    assert "```json" in render(skill.record.system, single)
    assert "```json" not in render(skill.record.system, talk)
    assert single["text"] in render(skill.record.user, single)  # the API list in the message
    assert render(skill.record.user, talk) == talk["instruction"]  # ... or in `tools`
    assert render(skill.answer.prompt, talk) == talk["instruction"]


def test_a_dialogue_share_needs_a_dialogue(tmp_path):
    folder = tmp_path / "tool_use"
    (folder / "templates").mkdir(parents=True)
    source = ROOT / "configs" / "skills" / "tool_use"
    for path in source.rglob("*"):
        if path.is_file():
            (folder / path.relative_to(source)).write_text(path.read_text())
    text = (folder / "skill.yaml").read_text()
    start, end = text.index("  dialogue:\n"), text.index("\nrecord:")
    (folder / "skill.yaml").write_text(text[:start] + text[end:])
    with pytest.raises(ConfigError, match="dialogue_share: .* needs a `dialogue:`"):
        load_skill("tool_use", tmp_path)


def test_the_dialogue_share_is_drawn_per_item():
    skill = load_skill("tool_use")
    stage = AnswerStage.__new__(AnswerStage)  # only its plans and the draw are used here
    stage.plans = {"tool_use": object()}
    items = [Item(f"i{n}", "s", {}, []) for n in range(400)]
    talks = [stage.talks(item, skill) for item in items]
    assert talks == [stage.talks(item, skill) for item in items]  # the same item, the same draw
    assert 160 < sum(talks) < 240  # dialogue_share 0.5
    stage.plans = {}
    assert not any(stage.talks(item, skill) for item in items)  # no dialogue, no draw


# -- end to end on the mock server ----------------------------------------------------------

def run(mock_server, tmp_path: Path, skills: str, *extra: str) -> list[dict[str, Any]]:
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "gristmill", "run", str(CONFIG), "--run-dir", str(run_dir),
         "--backend-url", mock_server.base_url, "--no-progress", "--set", "judge=null",
         "--set", "agentinstruct.refine_rounds=1", "--set", f"agentinstruct.skills=[{skills}]",
         *extra], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    records = [orjson.loads(line) for line in (run_dir / "output.jsonl").read_bytes().splitlines()]
    assert records and {r["skill"] for r in records} == set(skills.split(","))
    for record in records:
        line = {k: record[k] for k in ("messages", "tools") if k in record}
        assert format_errors(line) == [], (record["skill"], format_errors(line))
    return records


def test_multiple_choice_records_have_options_and_a_key_among_them(mock_server, tmp_path):
    records = run(mock_server, tmp_path, "multiple_choice")
    for record in records:
        answer = orjson.loads(record["messages"][-1]["content"])
        assert record["options"] == answer["options"] and record["key"] == answer["key"]
        assert {"A", "B", "C", "D"} <= set(record["options"]) and record["key"] in record["options"]
        assert answer["question"] and answer["explanation"]
    assert {r["agent"] for r in records} > {"identity"}


def test_rag_records_name_their_passages(mock_server, tmp_path):
    records = run(mock_server, tmp_path, "rag", "--set", "retrieval={}")
    for record in records:
        stages = Counter(entry["stage"] for entry in record["lineage"])
        assert stages["answer.passage"] >= 1 and stages["answer.distractor"] >= 1
        shown = set(re.findall(r"^\[([0-9a-f]{16})\]", record["messages"][1]["content"], re.M))
        named = {e["id"] for e in record["lineage"] if e["stage"].startswith("answer.")}
        assert shown == named  # the record shows exactly the passages its lineage names


def test_conversation_records_have_several_user_turns(mock_server, tmp_path):
    records = run(mock_server, tmp_path, "conversation")
    for record in records:
        roles = [m["role"] for m in record["messages"]]
        assert roles[0] == "system" and roles.count("user") >= 2
        assert record["messages"][1]["content"] == record["instruction"]


def test_web_agent_actions_name_elements_of_their_page(mock_server, tmp_path):
    records = run(mock_server, tmp_path, "web_agent", "--set", "seeds.kinds=[prose,code,html]")
    for record in records:
        page = record["messages"][1]["content"]
        ids = set(re.findall(r"^\[(e\d+)\]", page, re.M))
        actions = orjson.loads(record["messages"][-1]["content"])["actions"]
        assert actions and all(a["element"] in ids for a in actions if "element" in a)
        assert {a["action"] for a in actions} <= {"click", "type", "select", "scroll", "answer"}


def test_tool_use_makes_single_turn_and_tool_calling_records(mock_server, tmp_path):
    records = run(mock_server, tmp_path, "tool_use")
    talks = [r for r in records if "tools" in r]
    single = [r for r in records if "tools" not in r]
    assert talks and single  # a share of each
    for record in single:
        assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant"]
    for record in talks:
        roles = [m["role"] for m in record["messages"]]
        assert roles.count("user") >= 2 and "tool" in roles
        calls = [c["function"]["name"] for m in record["messages"] for c in m.get("tool_calls") or []]
        assert calls and set(calls) <= {t["function"]["name"] for t in record["tools"]}
        assert record["messages"][1]["content"] == record["instruction"]
