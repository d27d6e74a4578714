"""Coverage: records per skill and per taxonomy type in summary.json, state.json,
`gristmill status` and the report; a resumed run goes on counting from its earlier sessions."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.integration
GRISTMILL = [sys.executable, "-m", "gristmill"]
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "agentinstruct.yaml"


def gristmill(*args: str) -> str:
    done = subprocess.run([*GRISTMILL, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def counted(run_dir: Path) -> tuple[Counter, Counter]:
    skills, types = Counter(), Counter()
    for line in (run_dir / "output.jsonl").read_bytes().splitlines():
        record = orjson.loads(line)
        skills[record["skill"]] += 1
        types[f"{record['skill']}/{record['type']}"] += 1
    return skills, types


def test_coverage_is_counted_across_sessions_and_shown(mock_server, tmp_path):
    run_dir = tmp_path / "r"
    common = ["--backend-url", mock_server.base_url, "--no-progress",
              "--set", "agentinstruct.refine_rounds=0", "--set", "judge=null"]
    gristmill("run", str(CONFIG), "--run-dir", str(run_dir), "--limit", "2", *common)
    first = json.loads((run_dir / "summary.json").read_text())["coverage"]
    gristmill("resume", str(run_dir), "--limit", "4", "--no-progress")
    skills, types = counted(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["coverage"] == {"by_skill": dict(skills), "by_type": dict(types)}
    assert sum(skills.values()) > sum(first["by_skill"].values())  # both sessions counted
    state = json.loads((run_dir / "state.json").read_text())
    assert state["coverage"] == summary["coverage"]

    status = gristmill("status", str(run_dir))
    assert "records by skill" in status
    for skill, count in skills.items():
        line = next(l for l in status.splitlines() if l.strip().startswith(skill))
        kinds = sum(1 for key in types if key.startswith(skill + "/"))
        assert f"{count:,}" in line and f"types {kinds:>3}" in line

    gristmill("report", str(run_dir))
    page = (run_dir / "report.html").read_text()
    assert 'id="coverage"' in page and all(skill in page for skill in skills)
