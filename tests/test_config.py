"""Bad configs give messages that name the field, the bad value and what is allowed."""

from pathlib import Path

import pytest
import yaml

from gristmill.config.load import apply_override, load_config, validate_config
from gristmill.errors import ConfigError
from tests.conftest import pipeline_config


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def error_of(tmp_path: Path, data: dict, *overrides: str) -> str:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, data), overrides)
    return str(exc.value)


def test_valid_config_loads_and_resolves_relative_paths(tmp_path):
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path)
    data["seeds"]["path"] = "seeds.jsonl"  # relative to the config file, not the cwd
    config = load_config(write(tmp_path, data))
    assert config.seeds.path == (tmp_path / "seeds.jsonl").resolve()
    assert config.backends["default"].base_urls == ["http://127.0.0.1:9/v1"]


def test_out_of_range_value_names_field_value_and_bound(tmp_path):
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path)
    data["stages"][1]["fan_out"] = 0
    msg = error_of(tmp_path, data)
    assert "stages[1].fan_out" in msg and "got 0" in msg and "greater than or equal to 1" in msg


def test_unknown_field_is_named_with_a_hint(tmp_path):
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path)
    data["backends"]["default"]["max_inflight"] = 8
    msg = error_of(tmp_path, data)
    assert "backends.default.max_inflight" in msg and "unknown field" in msg


def test_wrong_choice_lists_allowed_values(tmp_path):
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path)
    data["stages"][0]["output"]["type"] = "table"
    msg = error_of(tmp_path, data)
    assert "stages[0].output.type" in msg and "'text'" in msg and "'list'" in msg
    assert "'table'" in msg


def test_missing_required_field(tmp_path):
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path)
    del data["backends"]["default"]["model"]
    assert "backends.default.model: required field is missing" in error_of(tmp_path, data)


def test_undefined_backend_and_duplicate_stage_names(tmp_path):
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path)
    data["stages"][1]["backend"] = "judge"
    assert "stages[1].backend: 'judge' is not defined" in error_of(tmp_path, data)
    data["stages"][1]["backend"] = "default"
    data["stages"][1]["name"] = "question"
    assert "'question' is used twice" in error_of(tmp_path, data)


def test_template_with_unknown_variable_or_bad_syntax(tmp_path):
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path)
    data["stages"][1]["prompt"] = "Answer {{ questoin }}"
    msg = error_of(tmp_path, data)
    assert "stages[1].prompt" in msg and "questoin" in msg and "question" in msg
    data["stages"][1]["prompt"] = "Answer {{ question "
    assert "stages[1].prompt: template syntax error" in error_of(tmp_path, data)


def test_bad_url_and_inline_secret_header(tmp_path):
    data = pipeline_config("localhost:8000", tmp_path)
    assert "is not an http(s) URL" in error_of(tmp_path, data)
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path, headers={"Authorization": "x"})
    assert "api_key_env" in error_of(tmp_path, data)


def test_not_yaml_and_not_a_mapping(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("stages: [unclosed")
    with pytest.raises(ConfigError, match=r"bad\.yaml: line \d+, column \d+: bad YAML"):
        load_config(path)
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="bad.yaml: expected a mapping at the top, found a list"):
        load_config(path)


def test_set_overrides_by_index_and_by_name_and_parses_yaml(tmp_path):
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path)
    config = load_config(write(tmp_path, data), ["stages.answer1.workers=3",
                                                 "stages.0.sampling.temperature=0.5",
                                                 "backends.default.rpm=100"])
    assert config.stages[1].workers == 3
    assert config.stages[0].sampling.temperature == 0.5
    assert config.backends["default"].rpm == 100


def test_set_errors_are_explained():
    data = {"stages": [{"name": "a"}]}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_override(data, "stages.0.workers")
    with pytest.raises(ConfigError, match="no list item named 'b'"):
        apply_override(data, "stages.b.workers=1")
    with pytest.raises(ConfigError, match="out of range"):
        apply_override(data, "stages.3.workers=1")


def test_shipped_demo_config_is_valid():
    config = load_config("demo")
    assert config.seeds.path.is_dir() and any(config.seeds.path.glob("*.txt"))
    assert [s.name for s in config.stages] == ["question", "answer"]


def test_validate_config_from_dict(tmp_path):
    config = validate_config(pipeline_config("http://127.0.0.1:9/v1", tmp_path, stages=3))
    assert len(config.stages) == 3


@pytest.mark.parametrize("name", ["kind", "language", "seed_id"])
def test_a_stage_named_after_an_item_variable_is_refused(tmp_path, name):
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path)
    data["stages"][0]["name"] = name
    with pytest.raises(ConfigError, match=f"stages\\[0\\].name: '{name}' is reserved"):
        validate_config(data)
