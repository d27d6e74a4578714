"""Whether a config change blocks a resume is declared on each field (`answers=`), not listed
by name: the streaming validators of a stage change answers, its `stream` flag does not."""

from __future__ import annotations

import subprocess
import typing

import pytest
from pydantic import BaseModel

from gristmill.config.base import changes_answers
from gristmill.config.load import validate_config
from gristmill.config.pipeline import PipelineConfig
from gristmill.config.resume import answer_changes
from tests.conftest import pipeline_config
from tests.test_durability import GRISTMILL, finish, start, write_config


def models_under(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[type[BaseModel]]:
    seen.add(model)
    for field in model.model_fields.values():
        for part in typing.get_args(field.annotation) + (field.annotation,):
            for inner in (*typing.get_args(part), part):
                if isinstance(inner, type) and issubclass(inner, BaseModel) and inner not in seen:
                    models_under(inner, seen)
    return seen


def test_every_config_field_declares_whether_it_changes_answers():
    models = models_under(PipelineConfig, set())
    assert len(models) > 15  # the walk reaches the nested models
    undeclared = [f"{m.__name__}.{name}" for m in models
                  for name, field in m.model_fields.items()
                  if not isinstance((field.json_schema_extra or {}).get("answers"), bool)]
    assert undeclared == []
    assert changes_answers(PipelineConfig.model_fields["stages"])
    assert not changes_answers(PipelineConfig.model_fields["name"])


def dumped(tmp_path, **stage_changes) -> dict:
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path, stages=2)
    data["stages"][1].update(stage_changes)
    return validate_config(data).model_dump(mode="json")


def test_answer_changes_follow_the_declarations(tmp_path):
    old = dumped(tmp_path)
    assert answer_changes(old, dumped(tmp_path, stream=True, workers=9)) == []
    assert answer_changes(old, dumped(tmp_path, validators={"stream": ["refusal"]})) == \
        ["stages[1].validators.stream"]
    assert answer_changes(old, dumped(tmp_path, validators={"final": ["truncated"]})) == \
        ["stages[1].validators.final"]
    faster = {**old, "backends": {"default": {**old["backends"]["default"], "max_in_flight": 3,
                                              "micro_batch": {"max_prompts": 8}}}}
    assert answer_changes(old, faster) == []
    other_model = {**old, "backends": {"default": {**old["backends"]["default"], "model": "x"}}}
    assert answer_changes(old, other_model) == ["backends.default.model"]


@pytest.mark.timeout(180)
def test_changing_streaming_validators_blocks_a_resume(mock_server, tmp_path):
    config = write_config(tmp_path, mock_server.base_url, seeds=3, cap=4)
    assert finish(start(config, tmp_path / "r")) == 0

    def resume(*sets: str) -> subprocess.CompletedProcess[str]:
        args = [a for s in sets for a in ("--set", s)]
        return subprocess.run([*GRISTMILL, "run", str(config), "--run-dir", str(tmp_path / "r"),
                               *args, "--no-progress"], capture_output=True, text=True,
                              timeout=60)

    refused = resume("stages.1.validators.stream=[refusal]")
    assert refused.returncode == 2
    assert "stages[1].validators.stream" in refused.stderr
    allowed = resume("stages.1.stream=true")
    assert allowed.returncode == 0, allowed.stderr
