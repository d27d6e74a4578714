"""docs/config-reference.md: generated from the config models, never stale, every field
described; config errors point at the section of the failing field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from gristmill.config import reference
from gristmill.config.load import load_config, validate_config
from gristmill.errors import ConfigError
from gristmill.flywheel.session import load_judge

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / reference.PAGE


def test_the_page_is_the_generated_text():
    assert PAGE.is_file(), "run: python -m gristmill.config.reference"
    assert PAGE.read_text(encoding="utf-8") == reference.render(), (
        "docs/config-reference.md is stale; run: python -m gristmill.config.reference")


def test_every_field_has_a_description():
    assert reference.undocumented() == []


def test_every_section_of_a_config_is_on_the_page():
    anchors = {s.anchor for s in reference.sections()}
    assert {"pipeline", "seeds", "backends", "backends.fleet", "stages", "sampling",
            "validators", "agentinstruct", "record", "dedup", "judge"} <= anchors
    text = reference.render()
    for anchor in anchors:
        assert f'<a id="{anchor}"></a>' in text
    assert "`check_every_chars`" in text and '<a id="validators.repetition"></a>' in text


def test_check_exits_non_zero_on_a_stale_page(tmp_path, capsys):
    page = tmp_path / "reference.md"
    assert reference.main(["--check", "--out", str(page)]) == 1  # missing
    assert reference.main(["--out", str(page)]) == 0
    assert reference.main(["--check", "--out", str(page)]) == 0
    page.write_text(page.read_text(encoding="utf-8").replace("Seconds", "Minutes", 1),
                    encoding="utf-8")
    assert reference.main(["--check", "--out", str(page)]) == 1
    assert "stale" in capsys.readouterr().err


@pytest.mark.parametrize("loc, anchor", [
    ((), "pipeline"),
    (("grace_s",), "pipeline"),
    (("seeds",), "seeds"),
    (("seeds", "path", "function-after[_resolve(), lax-or-strict[...]]"), "seeds"),
    (("seeds", "chunk", "overlap_tokens"), "seeds.chunk"),
    (("backends", "default"), "backends"),
    (("backends", "default", "rpm"), "backends"),
    (("backends", "default", "timeouts", "connect"), "backends.timeouts"),
    (("backends", "gpu", "fleet", "gpus", 0), "backends.fleet"),
    (("stages", 2, "sampling", "temperature"), "sampling"),
    (("stages", 0, "validators", "stream", 1), "validators"),
    (("stages", 0, "no_such_field"), "stages"),
    (("agentinstruct", "answer", "workers"), "agentinstruct.kinds"),
    (("judge", "skills", "coding", 0, "question"), "judge.criteria"),
    (("judge", "few_shot", "k"), "judge.few_shot"),
])
def test_an_error_location_maps_to_the_section_of_its_field(loc, anchor):
    assert reference.section_for(loc) == anchor


def _anchors_of(message: str) -> list[str]:
    return re.findall(r"see docs/config-reference\.md#([\w.-]+)", message)


def test_config_errors_point_to_the_reference(tmp_path):
    data = {"name": "x", "seeds": {"path": str(tmp_path)},
            "backends": {"default": {"base_url": "http://127.0.0.1:8000/v1", "model": "m",
                                     "max_in_flight": 0, "timeouts": {"connect": -1}}},
            "stages": [{"name": "a", "prompt": "p", "sampling": {"top_p": 2}}]}
    with pytest.raises(ConfigError) as caught:
        validate_config(data)
    lines = str(caught.value).splitlines()[1:]
    assert [_anchors_of(line) for line in lines] == [
        ["backends"], ["backends.timeouts"], ["sampling"]]
    anchors = {s.anchor for s in reference.sections()}
    assert all(a in anchors for line in lines for a in _anchors_of(line))


def test_unknown_fields_and_cli_overrides_point_there_too(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "seeds": {"path": str(tmp_path)},
        "backends": {"default": {"base_url": "http://127.0.0.1:8000/v1", "model": "m"}},
        "stages": [{"name": "a", "prompt": "p"}]}), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(config, ["judge.few_shot.kk=3", "stages.a.fan_out=0"])
    message = str(caught.value)
    assert "judge.few_shot.kk: unknown field" in message
    assert "see docs/config-reference.md#judge.few_shot" in message
    assert "see docs/config-reference.md#stages" in message


def test_a_judge_file_points_to_the_judge_sections(tmp_path):
    path = tmp_path / "judge-v1.yaml"
    path.write_text(yaml.safe_dump({"criteria": [{"name": "ok"}], "on_fail": "drop"}),
                    encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_judge(path)
    message = str(caught.value)
    assert "see docs/config-reference.md#judge.criteria" in message
    assert "on_fail" in message and "see docs/config-reference.md#judge" in message
