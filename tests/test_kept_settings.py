"""Settings that change no answer survive a resume: `gristmill resume RUN` keeps the run's
`--limit` unless it is given another."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from gristmill.runs.options import RunOptions, kept_settings, with_kept_settings
from tests.conftest import pipeline_config


def test_a_resume_takes_the_kept_settings_it_does_not_give():
    assert kept_settings(RunOptions(limit=3)) == {"limit": 3}
    assert kept_settings(RunOptions()) == {}
    assert with_kept_settings(RunOptions(), {"limit": 3}).limit == 3
    assert with_kept_settings(RunOptions(limit=5), {"limit": 3}).limit == 5
    assert with_kept_settings(RunOptions(limit=0), {"limit": 3}).limit == 0  # 0: no limit
    assert with_kept_settings(RunOptions(), None).limit is None


def test_resume_keeps_the_limit_of_the_run(mock_server, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(pipeline_config(mock_server.base_url, tmp_path, seeds=8)))
    run_dir = tmp_path / "run"

    def gristmill(*args: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "gristmill", *args, "--no-progress"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads((run_dir / "summary.json").read_text())

    assert gristmill("run", str(path), "--run-dir", str(run_dir), "--limit", "3")[
        "records_total"] == 6  # two questions a seed, an answer each
    assert gristmill("resume", str(run_dir))["records_total"] == 6  # still three seeds
    assert gristmill("resume", str(run_dir), "--limit", "5")["records_total"] == 10
    assert gristmill("resume", str(run_dir))["records_total"] == 10
    assert json.loads((run_dir / "settings.json").read_text()) == {"limit": 5}
    assert gristmill("resume", str(run_dir), "--limit", "0")["records_total"] == 16  # all
