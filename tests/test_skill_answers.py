"""A skill's answer modes in the AgentInstruct flow, on the mock server: JSON under a format
rendered per item with the skill's own checks and record fields, a dialogue with tools, and
passages retrieved first. The skill is written here (a copy of open_domain_qa's other parts),
so the engine is tested apart from the shipped skills' content."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from gristmill.config.load import validate_config
from gristmill.errors import ConfigError
from gristmill.flows.skills import load_skill
from gristmill.runs.runner import RunOptions, run
from tests.openai_format import format_errors

pytestmark = pytest.mark.integration
SKILLS = Path(__file__).resolve().parents[1] / "configs" / "skills"
WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]


def skill_with(tmp_path: Path, answer: dict[str, Any], record: dict[str, Any] | None = None) -> Path:
    """open_domain_qa with `answer` (and `record`) replaced, as a skill named `probe`."""
    folder = tmp_path / "skills" / "probe"
    shutil.copytree(SKILLS / "open_domain_qa", folder)
    data = yaml.safe_load((folder / "skill.yaml").read_text())
    data.update(name="probe", answer={"system": "Answer well.", **answer})
    if record is not None:
        data["record"] = record
    (folder / "skill.yaml").write_text(yaml.safe_dump(data))
    return folder.parent


def config(tmp_path: Path, url: str, skills_dir: Path, **extra: Any) -> Any:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for i, town in enumerate(["Oslo", "Lisbon", "Quito"]):
        (seeds / f"{i}.txt").write_text(f"{town} is a city with a long history of trade. " * 12)
    return validate_config({
        "name": "probe", "seeds": {"path": str(seeds), "min_chars": 100},
        "backends": {"default": {"base_url": url, "model": "mock"}},
        "agentinstruct": {"skills": ["probe"], "skills_dir": str(skills_dir),
                          "agents_per_seed": 1, "refine_rounds": 0,
                          "agents": ["identity"]}, **extra})


async def records_of(cfg: Any, run_dir: Path) -> list[dict[str, Any]]:
    await run(cfg, RunOptions(run_dir=run_dir, progress=False))
    return [orjson.loads(line) for line in (run_dir / "output.jsonl").read_bytes().splitlines()]


async def test_json_answers_with_a_per_item_format_checks_and_record_fields(mock_server, tmp_path):
    keys = '{{ ["A", "B", "C"] | tojson }}'
    answer = {"prompt": "{{ instruction }}", "validators": [{"name": "choice", "key": "key"}],
              "output": {
        "type": "json", "format": '{"type": "object", "additionalProperties": false, '
        '"required": ["options", "key"], "properties": {"options": {"type": "object", '
        '"additionalProperties": false, "required": ["A", "B", "C"], "properties": '
        '{"A": {"type": "string"}, "B": {"type": "string"}, "C": {"type": "string"}}}, '
        '"key": {"enum": ' + keys + '}}}'}}
    record = {"user": "{{ instruction }}", "fields": {"options": "answer.options",
                                                       "key": "answer.key"}}
    cfg = config(tmp_path, mock_server.base_url, skill_with(tmp_path, answer, record))
    records = await records_of(cfg, tmp_path / "r")
    assert records
    for r in records:
        assert set(r["options"]) == {"A", "B", "C"} and r["key"] in r["options"]
        assert orjson.loads(r["messages"][-1]["content"])["key"] == r["key"]


async def test_the_skills_own_checks_reject_what_the_format_allows(mock_server, tmp_path):
    answer = {"prompt": "{{ instruction }}", "validators": ["choice"], "output": {
        "type": "json", "format": {"type": "object", "required": ["options", "key"],
                                   "properties": {"options": {"type": "object"},
                                                  "key": {"type": "string"}}}}}
    cfg = config(tmp_path, mock_server.base_url, skill_with(tmp_path, answer))
    records = await records_of(cfg, tmp_path / "r")
    rejects = [orjson.loads(line) for line in (tmp_path / "r/rejects.jsonl").read_bytes().splitlines()]
    assert records == [] and rejects
    assert {r["validator"] for r in rejects} == {"choice"}
    assert {r["skill"] for r in rejects} == {"probe"}  # rejects are counted per skill too


async def test_dialogue_answers_keep_the_conversation_and_tools(mock_server, tmp_path):
    answer = {"prompt": "{{ instruction }}", "dialogue": {
        "turns": {"min": 2, "max": 2}, "stop": None,
        "tools": {"offer": WEATHER, "max_rounds": 1, "simulator": {"failure_rate": 0}}}}
    cfg = config(tmp_path, mock_server.base_url, skill_with(tmp_path, answer))
    records = await records_of(cfg, tmp_path / "r")
    assert records
    for r in records:
        assert format_errors({"messages": r["messages"], "tools": r["tools"]}) == []
        roles = [m["role"] for m in r["messages"]]
        assert roles.count("user") == 2 and "tool" in roles
        assert r["messages"][0]["role"] == "user"  # the record's own user message opens it
        assert r["skill"] == "probe" and r["instruction"]


async def test_retrieved_passages_reach_the_answer_and_the_lineage(mock_server, tmp_path):
    answer = {"prompt": "{% for p in passages %}[{{ p.id }}] {{ p.text }}\n{% endfor %}"
                        "{{ instruction }}",
              "retrieve": {"query": "{{ seed }}", "k": 2, "distractors": 0}}
    skills_dir = skill_with(tmp_path, answer)
    with pytest.raises(ConfigError, match="retrieval"):
        await records_of(config(tmp_path, mock_server.base_url, skills_dir), tmp_path / "x")
    (tmp_path / "seeds").rename(tmp_path / "old-seeds")
    cfg = config(tmp_path, mock_server.base_url, skills_dir, retrieval={})
    records = await records_of(cfg, tmp_path / "r")
    assert records
    for r in records:
        assert [e for e in r["lineage"] if e["stage"] == "answer.passage"]


def test_answer_mode_templates_are_checked(tmp_path):
    answer = {"prompt": "{{ passages }}"}  # passages without retrieve
    with pytest.raises(ConfigError, match="passages"):
        load_skill("probe", skill_with(tmp_path, answer))
