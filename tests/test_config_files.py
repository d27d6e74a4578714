"""A damaged config-like file (binary, not UTF-8, the wrong shape, bad YAML, empty) is a config
error that names the file and the damage: exit 2, one message, no traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from gristmill.config.load import load_config
from gristmill.config.yaml_file import read_yaml
from gristmill.errors import ConfigError
from gristmill.flows.skills import default_skills_dir, load_skill
from tests.conftest import pipeline_config
from tests.test_cli import gristmill, write_config

# name -> (file bytes, what the message must say); "shape" is a list where a mapping belongs
DAMAGE = {
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00",
               "not UTF-8 text (byte 0x89 at offset 0)"),
    "latin1": ("name: caf\xe9 cr\xe8me\n".encode("latin-1"),
               "not UTF-8 text (byte 0xe9 at offset 9)"),
    "shape": (b"- a\n- b\n", "expected a mapping at the top, found a list"),
    "bad_yaml": (b"name: x\nstages: [unclosed\n", "bad YAML: did not find expected ',' or ']'"),
    "empty": (b"", "empty (no YAML in it)"),
}
# a taxonomy is a list of types, so its wrong shape is a mapping
TAXONOMY_DAMAGE = {**DAMAGE, "shape": (b"name: x\n", "expected a list at the top, found a mapping")}
SKILL = "reading_comprehension"


def assert_config_error(result, path: Path, expected: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if expected in line]
    assert lines and str(path) in lines[0], result.stderr  # the damage, with the file's path


def damaged_pipeline(tmp_path: Path, damage: str) -> Path:
    path = tmp_path / "damaged.yaml"
    path.write_bytes(DAMAGE[damage][0])
    return path


@pytest.mark.parametrize("damage", DAMAGE)
def test_validate_reports_a_damaged_pipeline_file(tmp_path, damage):
    path = damaged_pipeline(tmp_path, damage)
    result = gristmill("validate", str(path), cwd=tmp_path)
    assert_config_error(result, path, DAMAGE[damage][1])


@pytest.mark.parametrize("damage", DAMAGE)
def test_run_reports_a_damaged_pipeline_file(tmp_path, damage):
    path = damaged_pipeline(tmp_path, damage)
    result = gristmill("run", str(path), "--run-dir", "out", cwd=tmp_path)
    assert_config_error(result, path, DAMAGE[damage][1])
    assert not (tmp_path / "out").exists()


def skills_config(tmp_path: Path, base_url: str) -> Path:
    """A one-skill AgentInstruct config whose skills folder is a copy in tmp_path."""
    shutil.copytree(default_skills_dir() / SKILL, tmp_path / "skills" / SKILL)
    (tmp_path / "seed.txt").write_text("A passage about rivers and mills. " * 20)
    config = {"name": "skills", "seeds": {"path": "seed.txt", "min_chars": 1},
              "backends": {"default": {"base_url": base_url, "model": "mock"}},
              "agentinstruct": {"skills": [SKILL], "skills_dir": "skills"}}
    return write_config(tmp_path, config)


@pytest.mark.parametrize("damage", DAMAGE)
def test_run_reports_a_damaged_skill_file(mock_server, tmp_path, damage):
    config = skills_config(tmp_path, mock_server.base_url)
    path = tmp_path / "skills" / SKILL / "skill.yaml"
    path.write_bytes(DAMAGE[damage][0])
    result = gristmill("run", str(config), "--run-dir", "out", cwd=tmp_path)
    assert_config_error(result, path, DAMAGE[damage][1])


@pytest.mark.parametrize("damage", TAXONOMY_DAMAGE)
def test_run_reports_a_damaged_taxonomy_file(mock_server, tmp_path, damage):
    config = skills_config(tmp_path, mock_server.base_url)
    path = tmp_path / "skills" / SKILL / "taxonomy.yaml"
    path.write_bytes(TAXONOMY_DAMAGE[damage][0])
    result = gristmill("run", str(config), "--run-dir", "out", cwd=tmp_path)
    assert_config_error(result, path, TAXONOMY_DAMAGE[damage][1])


def damaged_run_dir(tmp_path: Path, damage: str) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_bytes(DAMAGE[damage][0])
    return run_dir


@pytest.mark.parametrize("damage", DAMAGE)
def test_resume_reports_a_damaged_run_config(tmp_path, damage):
    run_dir = damaged_run_dir(tmp_path, damage)
    result = gristmill("resume", str(run_dir), cwd=tmp_path)
    assert_config_error(result, run_dir / "config.yaml", DAMAGE[damage][1])


@pytest.mark.parametrize("damage", ["binary", "bad_yaml"])
def test_run_into_a_run_dir_with_a_damaged_config(mock_server, tmp_path, damage):
    config = write_config(tmp_path, pipeline_config(mock_server.base_url, tmp_path, seeds=1))
    run_dir = damaged_run_dir(tmp_path, damage)
    result = gristmill("run", str(config), "--run-dir", str(run_dir), cwd=tmp_path)
    assert_config_error(result, run_dir / "config.yaml", DAMAGE[damage][1])


@pytest.mark.parametrize("damage", ["binary", "shape"])
def test_flywheel_reports_a_damaged_judge_file(tmp_path, damage):
    judge = tmp_path / "judge-v1.yaml"
    judge.write_bytes(DAMAGE[damage][0])
    result = gristmill("flywheel", str(tmp_path / "run"), "--judge", str(judge), cwd=tmp_path)
    assert_config_error(result, judge, DAMAGE[damage][1])


def test_a_damaged_judge_file_named_by_the_pipeline_is_a_field_error(tmp_path):
    (tmp_path / "judge.yaml").write_bytes(DAMAGE["binary"][0])
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path)
    config = write_config(tmp_path, {**data, "judge": "judge.yaml"})
    with pytest.raises(ConfigError, match=r"judge: cannot read the judge file .*judge\.yaml: "
                                          r"not UTF-8 text \(byte 0x89 at offset 0\)"):
        load_config(config)


def test_a_non_utf8_skill_template_names_the_template(tmp_path):
    shutil.copytree(default_skills_dir() / SKILL, tmp_path / SKILL)
    skill = yaml.safe_load((tmp_path / SKILL / "skill.yaml").read_text(encoding="utf-8"))
    template = tmp_path / SKILL / skill["answer"]["prompt"].strip()
    assert template.suffix == ".j2"
    template.write_bytes(b"Answer \xff{{ instruction }}")
    with pytest.raises(ConfigError, match=rf"{template.name}: not UTF-8 text \(byte 0xff at "
                                          r"offset 7\)"):
        load_skill(SKILL, tmp_path)


@pytest.mark.parametrize(("text", "message"), [
    (b"a: \x00b\n", "binary content, not text (a NUL byte at offset 3)"),
    (b"a: 1\n  b: 2\n", "line 2, column 4: bad YAML: mapping values are not allowed"),
    (b"a: 1\n---\nb: 2\n", "line 2, column 1: bad YAML: but found another document"),
    (b"# only a comment\n", "empty (no YAML in it); expected a mapping at the top"),
    (b"just text\n", "expected a mapping at the top, found the text 'just text'"),
    (b"a: \x01\n", "bad YAML: character U+0001 at offset 3"),
])
def test_read_yaml_says_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "x.yaml"
    path.write_bytes(text)
    with pytest.raises(ConfigError) as caught:
        read_yaml(path)
    assert str(caught.value).startswith(f"{path}: {message}")


def test_read_yaml_reads_a_missing_file_as_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml: No such file or directory"):
        read_yaml(tmp_path / "missing.yaml")
    (tmp_path / "ok.yaml").write_bytes(b"\xef\xbb\xbfa: [1, 2]\n")  # a BOM is still UTF-8
    assert read_yaml(tmp_path / "ok.yaml") == {"a": [1, 2]}
