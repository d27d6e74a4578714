"""`type: json` outputs with a per-item schema, and the record-shape validators (choice,
element_ids): unit checks, then runs on the mock server where the schema is rendered for
each item and bad shapes become rejects."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml

from gristmill.config.pipeline import OutputConfig
from gristmill.errors import ConfigError
from gristmill.flows.outputs import parse_output, rendered_schema
from gristmill.validation import Context, build
from gristmill.runs.runner import RunOptions, run
from gristmill.config.load import load_config


def check(name: str, text: str, record: dict | None = None, **params) -> str | None:
    validator = build({"name": name, **params})
    rejection = validator.check(text, Context(record=record or {}))
    return None if rejection is None else rejection.reason


def test_choice_wants_exactly_one_known_key():
    good = {"question": "2+2?", "options": {"A": "3", "B": "4"}, "answer": "B"}
    assert check("choice", orjson.dumps(good).decode()) is None
    listed = {"options": [{"key": "a", "text": "x"}, {"key": "b", "text": "y"}], "answer": "a"}
    assert check("choice", orjson.dumps(listed).decode()) is None
    assert "none of the options" in check("choice", orjson.dumps({**good, "answer": "C"}).decode())
    assert "exactly one" in check("choice", orjson.dumps({**good, "answer": ["A", "B"]}).decode())
    assert "at least 2" in check("choice", orjson.dumps({**good, "options": {"A": "3"}}).decode())
    assert "no options" in check("choice", '{"answer": "A"}')
    assert check("choice", "not json") is None  # the schema validator's business


def test_element_ids_must_exist_on_the_page():
    page = {"element_ids": ["e1", "e2"]}
    ok = {"actions": [{"action": "click", "element": "e2"}, {"action": "answer", "text": "done"}]}
    assert check("element_ids", orjson.dumps(ok).decode(), page) is None
    bad = {"actions": [{"action": "type", "element": "e9", "text": "hi"}]}
    assert "e9" in check("element_ids", orjson.dumps(bad).decode(), page)
    assert "no list of actions" in check("element_ids", '{"actions": []}', page)
    assert "has no" in check("element_ids", orjson.dumps(ok).decode(), {})
    nested = {"page": {"ids": ["e1"]}}
    assert check("element_ids", orjson.dumps({"actions": [{"element": "e1"}]}).decode(), nested,
                 ids="page.ids") is None


def test_json_outputs_need_a_format_and_parse_json():
    with pytest.raises(ValueError, match="needs its JSON schema"):
        OutputConfig(type="json")
    with pytest.raises(ValueError, match="only a type: json"):
        OutputConfig(type="text", format={"type": "object"})
    output = OutputConfig(type="json", format={"type": "object"})
    assert parse_output(output, 'Sure: {"a": [1, 2]} as asked') == [{"a": [1, 2]}]
    with pytest.raises(ValueError, match="not JSON"):
        rendered_schema("{broken")
    with pytest.raises(ConfigError):
        build({"name": "choice", "min_options": 1})


def write(tmp_path: Path, url: str, pick: dict) -> Path:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(orjson.dumps({"text": f"Page {i} with a form and buttons."}).decode()
                             + "\n" for i in range(4)))
    config = {"name": "json", "seeds": {"path": str(seeds), "min_chars": 1},
              "backends": {"default": {"base_url": url, "model": "mock"}},
              "stages": [
                  {"name": "page", "prompt": "List element ids of: {{ seed }}",
                   "output": {"type": "json", "format": {
                       "type": "object", "required": ["ids"], "additionalProperties": False,
                       "properties": {"ids": {"type": "array", "minItems": 2, "maxItems": 4,
                                              "items": {"type": "string", "format": "email"}}}}}},
                  {"name": "pick", "prompt": "Which element? {{ page.ids }}", **pick}],
              "record": [{"role": "user", "content": "{{ page.ids }}"},
                         {"role": "assistant", "content": "{{ pick | tojson }}"}]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.integration
async def test_a_schema_rendered_per_item_constrains_each_answer(mock_server, tmp_path):
    per_item = {"output": {"type": "json", "format":
                           '{"type": "object", "required": ["actions"], "properties": '
                           '{"actions": {"type": "array", "minItems": 1, "maxItems": 2, '
                           '"items": {"type": "object", "required": ["element"], '
                           '"properties": {"element": {"enum": {{ page.ids | tojson }}}}}}}}'},
                "validators": {"final": [{"name": "element_ids", "ids": "page.ids"}]}}
    config = load_config(write(tmp_path, mock_server.base_url, per_item))
    summary = await run(config, RunOptions(run_dir=tmp_path / "r", progress=False))
    records = [orjson.loads(line) for line in (tmp_path / "r/output.jsonl").read_bytes().splitlines()]
    assert summary["records"] == 4 and len(records) == 4
    for record in records:
        ids = orjson.loads(record["messages"][0]["content"].replace("'", '"'))
        chosen = orjson.loads(record["messages"][1]["content"])
        assert {a["element"] for a in chosen["actions"]} <= set(ids)


@pytest.mark.integration
async def test_actions_naming_missing_elements_are_rejected(mock_server, tmp_path):
    static = {"output": {"type": "json", "format": {
        "type": "object", "required": ["actions"], "properties": {"actions": {
            "type": "array", "minItems": 1, "maxItems": 2,
            "items": {"type": "object", "required": ["element"],
                      "properties": {"element": {"type": "string"}}}}}}},
              "validators": {"max_regenerations": 0,
                             "final": [{"name": "element_ids", "ids": "page.ids"}]}}
    config = load_config(write(tmp_path, mock_server.base_url, static))
    summary = await run(config, RunOptions(run_dir=tmp_path / "r", progress=False))
    rejects = [orjson.loads(line) for line in (tmp_path / "r/rejects.jsonl").read_bytes().splitlines()]
    assert summary["records"] == 0 and len(rejects) == 4
    assert all(r["validator"] == "element_ids" and "not on the page" in r["reason"]
               for r in rejects)


@pytest.mark.integration
def test_the_web_tasks_config_acts_on_each_pages_own_elements(mock_server, tmp_path):
    import re
    import subprocess
    import sys
    configs = Path(__file__).resolve().parents[1] / "configs"
    done = subprocess.run([sys.executable, "-m", "gristmill", "run", str(configs / "web-tasks.yaml"),
                           "--backend-url", mock_server.base_url, "--run-dir", str(tmp_path / "r"),
                           "--no-progress"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    records = [orjson.loads(line) for line in (tmp_path / "r/output.jsonl").read_bytes().splitlines()]
    assert len(records) == len(list((configs / "seeds/web").glob("*.html")))
    for record in records:
        on_page = set(re.findall(r"^\[(e\d+)\]", record["messages"][0]["content"], re.M))
        actions = orjson.loads(record["messages"][2]["content"])["actions"]
        assert actions and {a["element"] for a in actions} <= on_page
