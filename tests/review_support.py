"""Run directories and a review server process for the review page and report tests.

A run is made by a real small pipeline against the mock server; judge verdicts are then written
onto its records in the shape the judge stage stores them (see engine/flywheel/labels.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import gristmill
from gristmill.config.load import validate_config

from .conftest import ROOT, pipeline_config

PAYLOAD = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def make_run(base_url: str, tmp_path: Path, *, seeds: int = 8, judged: bool = True,
             regenerate: bool = True, **options: Any) -> Path:
    """A finished run: `seeds` seeds (the first carries an HTML payload), two questions each,
    an answer each; records show the seed and the question as the instruction. Without
    `regenerate`, an answer a validator rejects is a reject at once."""
    data = pipeline_config(base_url, tmp_path, seeds=seeds)
    if not regenerate:
        for stage in data["stages"]:
            stage["validators"] = {"max_regenerations": 0}
    with open(data["seeds"]["path"], "w") as fh:
        for i in range(seeds):
            extra = f" {PAYLOAD}" if i == 0 else ""
            fh.write(json.dumps({"text": f"Seed passage {i} about rivers and mills.{extra}"})
                     + "\n")
    data["record"] = [{"role": "user", "content": "{{ seed }}\n\n{{ question }}"},
                      {"role": "assistant", "content": "{{ answer1 }}"}]
    run_dir = tmp_path / "run"
    gristmill.run_sync(validate_config(data),
                    gristmill.RunOptions(run_dir=run_dir, progress=False, **options))
    if judged:
        add_judge_verdicts(run_dir)
    return run_dir


def verdict(index: int) -> dict[str, Any]:
    """A deterministic judge verdict: `faithful` fails every third record, `complete` every
    fourth; the overall verdict passes when both do."""
    faithful, complete = index % 3 != 0, index % 4 != 0
    return {"passed": faithful and complete, "version": "judge-test",
            "criteria": {"faithful": {"passed": faithful, "critique": f"critique {PAYLOAD}"},
                         "complete": {"passed": complete, "critique": "complete enough"}}}


def add_judge_verdicts(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "output.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for index, record in enumerate(records):
        record["judge"] = verdict(index)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def records_of(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "output.jsonl").read_text().splitlines()]


class ReviewServer:
    """`gristmill review RUN --port 0` as a real process; `url` is the page it printed."""

    def __init__(self, run_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gristmill", "review", str(run_dir), "--port", "0", *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("review page: "):
            self.proc.kill()
            raise AssertionError(f"review server did not start: {line}{self.proc.stderr.read()}")
        self.url = line.split()[2]
        self.base = self.url.split("?")[0]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=15)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        return code

    def __enter__(self) -> "ReviewServer":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            assert self.stop() == 0, "review server did not exit cleanly"
