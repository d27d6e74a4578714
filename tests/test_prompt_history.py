"""Prompt history against the real mock server: the first run writes history/v1, a plain resume
adds nothing, a resume with --force and an edited prompt writes v2, and `gristmill history`
lists them and shows the prompt delta (--diff, --compare); the AgentInstruct flow keeps its
skill templates as they were."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from gristmill.assertions.propose import proposal_prompt
from gristmill.flywheel.assertion_llm import latest_delta

from gristmill.config.load import load_config
from gristmill.flows.skills import default_skills_dir
from gristmill.runs.history import prompt_delta, record_version, versions
from tests.conftest import pipeline_config
from tests.test_durability import GRISTMILL

pytestmark = pytest.mark.integration


def gristmill(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*GRISTMILL, *args], capture_output=True, text=True, timeout=120)


def write_config(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_forced_resume_with_a_new_prompt_is_a_new_version(mock_server, tmp_path):
    data = pipeline_config(mock_server.base_url, tmp_path, seeds=3, stages=2)
    run_dir = tmp_path / "run"
    path = write_config(tmp_path, data)
    first = gristmill("run", str(path), "--run-dir", str(run_dir), "--no-progress")
    assert first.returncode == 0, first.stderr
    assert list(versions(run_dir)) == [1]
    v1 = (run_dir / "history" / "v1" / "config.yaml").read_text()
    assert v1 == (run_dir / "config.yaml").read_text()
    assert not (run_dir / "history" / "v1" / "skills.yaml").exists()  # staged: all in config
    again = gristmill("resume", str(run_dir), "--no-progress")
    assert again.returncode == 0, again.stderr
    assert list(versions(run_dir)) == [1]  # a plain resume is no new version

    data["stages"][1]["prompt"] = "Answer briefly and cite the passage: {{ question }}"
    path = write_config(tmp_path, data)
    refused = gristmill("run", str(path), "--run-dir", str(run_dir), "--no-progress")
    assert refused.returncode == 2 and list(versions(run_dir)) == [1]
    forced = gristmill("run", str(path), "--run-dir", str(run_dir), "--no-progress", "--force")
    assert forced.returncode == 0, forced.stderr
    assert list(versions(run_dir)) == [1, 2]
    assert (run_dir / "history" / "v1" / "config.yaml").read_text() == v1  # kept as it was
    # the assertion proposer is shown this change (SPADE proposes from prompt deltas)
    delta = latest_delta(run_dir)
    assert "+" in delta and "cite the passage" in delta
    asked = proposal_prompt([], {}, delta=delta)
    assert "<prompt_changes>" in asked and "cite the passage" in asked

    listed = gristmill("history", str(run_dir))
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()
    assert rows[0].startswith("v1 ") and "first run" in rows[0]
    assert rows[1].startswith("v2 ") and "stages[1].prompt" in rows[1]
    diff = gristmill("history", str(run_dir), "--diff", "1", "v2")
    assert diff.returncode == 0, diff.stderr
    assert "--- v1/config.yaml" in diff.stdout and "+++ v2/config.yaml" in diff.stdout
    assert "-  prompt: 'Answer: {{ question }}'" in diff.stdout
    assert "+  prompt: 'Answer briefly and cite the passage: {{ question }}'" in diff.stdout
    changed = [line for line in diff.stdout.splitlines()
               if line[:1] in ("+", "-") and line[:3] not in ("+++", "---")]
    assert len(changed) == 2  # only the prompt line
    bad = gristmill("history", str(run_dir), "--diff", "1", "7")
    assert bad.returncode == 2 and "no version v7; it has v1, v2" in bad.stderr

    other = tmp_path / "other"
    data["stages"][0]["prompt"] = "Ask two hard questions about: {{ seed }}"
    path = write_config(tmp_path, data)
    assert gristmill("run", str(path), "--run-dir", str(other), "--no-progress").returncode == 0
    compared = gristmill("history", str(other), "--compare", str(run_dir))
    assert compared.returncode == 0, compared.stderr
    assert "--- run/v2/config.yaml" in compared.stdout and "+++ other/v1/config.yaml" in \
        compared.stdout
    assert "+  prompt: 'Ask two hard questions about: {{ seed }}'" in compared.stdout
    assert "cite the passage" not in compared.stdout  # both runs have it: no delta


def test_skill_templates_are_kept_as_they_were(tmp_path):
    skills = tmp_path / "skills"
    shutil.copytree(default_skills_dir() / "reading_comprehension",
                    skills / "reading_comprehension")
    config = load_config("demo_agentinstruct", [f"agentinstruct.skills_dir={skills}"])
    text = "name: x\n"
    assert record_version(tmp_path, text, config).name == "v1"
    assert record_version(tmp_path, text, config) is None  # nothing changed: no version
    template = next(p for p in sorted((skills / "reading_comprehension").rglob("*.j2")))
    before = template.read_text()
    template.write_text(before + "Quote the sentence your answer rests on.\n")
    assert record_version(tmp_path, text, config).name == "v2"
    saved = yaml.safe_load((tmp_path / "history" / "v1" / "skills.yaml").read_text())
    name = str(template.relative_to(skills))
    assert saved[name] == before and len(saved) == len(
        [p for p in (skills / "reading_comprehension").rglob("*") if p.is_file()])
    delta = prompt_delta(tmp_path, old=1, new=2)
    assert f"+++ v2/skills/{name}" in delta
    assert "+Quote the sentence your answer rests on." in delta
    assert "config.yaml" not in delta
