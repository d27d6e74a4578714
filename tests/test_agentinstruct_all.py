"""configs/agentinstruct.yaml runs all seventeen skills: its dry run, its weighted default run,
and every skill end to end on the mock server with records in OpenAI's format."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest
import yaml

from tests.openai_format import format_errors

pytestmark = pytest.mark.integration
GRISTMILL = [sys.executable, "-m", "gristmill"]
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "agentinstruct.yaml"
SKILLS = yaml.safe_load(CONFIG.read_text())["agentinstruct"]["skills"]


def gristmill(*args: str) -> str:
    done = subprocess.run([*GRISTMILL, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def records(run_dir: Path) -> list[dict]:
    return [orjson.loads(line) for line in (run_dir / "output.jsonl").read_bytes().splitlines()]


def test_the_config_names_all_seventeen_skills():
    assert len(SKILLS) == len(set(SKILLS)) == 17


def test_the_dry_run_plans_every_skill(tmp_path):
    out = gristmill("run", str(CONFIG), "--dry-run")
    requests = int(re.search(r"about ([\d,]+) requests", out).group(1).replace(",", ""))
    assert 0 < requests < 1500  # about the six-skill run's cost (docs/agentinstruct.md)


def test_every_skill_runs_end_to_end(mock_server, tmp_path):
    gristmill("run", str(CONFIG), "--backend-url", mock_server.base_url, "--run-dir",
              str(tmp_path / "all"), "--no-progress",
              "--set", "agentinstruct.skills_per_seed=null", "--set", "agentinstruct.skill_weights={}",
              "--set", "agentinstruct.agents_per_seed=1", "--set", "agentinstruct.refine_rounds=0")
    got = records(tmp_path / "all")
    assert set(Counter(r["skill"] for r in got)) == set(SKILLS)
    for record in got:
        line = {key: record[key] for key in ("messages", "tools") if key in record}
        assert format_errors(line) == [], record["skill"]


def test_the_weighted_default_run_finishes_clean(mock_server, tmp_path):
    gristmill("run", str(CONFIG), "--backend-url", mock_server.base_url, "--run-dir",
              str(tmp_path / "default"), "--no-progress", "--set", "judge=null")
    got = records(tmp_path / "default")
    skills = Counter(r["skill"] for r in got)
    assert got and set(skills) <= set(SKILLS) and len(skills) >= 8
