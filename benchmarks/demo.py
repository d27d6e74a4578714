"""`gristmill demo` as a user runs it, timed: first use (provisioning the vLLM runtime and the
model into a fresh cache, with --fresh) and the runs after it.

    python -m benchmarks.demo --runs 2             # uses the user's cache
    python -m benchmarks.demo --fresh /tmp/x --runs 2   # first use into /tmp/x, then reuse

Prints a table (wall time, records kept, rejects, tokens, tokens/s of the run) and writes
benchmarks/results/demo.json."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import ROOT, machine, print_table, write_json


def run_demo(run_dir: Path, env: dict[str, str]) -> dict:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "gristmill", "demo", "--run-dir", str(run_dir),
                           "--no-progress"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=3600)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"gristmill demo failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    provisioned = "first use" in proc.stderr
    return {"wall_s": round(wall, 1), "provisioned": provisioned, "records": summary["records"],
            "rejects": summary["rejects"], "tokens": summary["tokens"],
            "run_s": round(summary["elapsed_s"], 1),
            "tokens_per_s": round(summary["tokens_per_s"], 1),
            "rejects_by_reason": summary["rejects_by_reason"],
            "setup_lines": [line for line in proc.stderr.splitlines() if "done in" in line
                            or "ready in" in line or "healthy" in line]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--fresh", type=Path, help="an empty folder for the runtime and the "
                        "model caches (measures first use)")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.fresh:
        env["GRISTMILL_VLLM_HOME"] = str(args.fresh / "vllm-cpu")
        env["GRISTMILL_MODEL_HOME"] = str(args.fresh / "models")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            row = run_demo(Path(tmp) / f"run{i}", env)
            rows.append({"run": i + 1, **row})
            print(f"run {i + 1}: {row['wall_s']} s, {row['records']} records", file=sys.stderr)
    print_table(rows, [("run", "run", str), ("provisioned", "first use", str),
                       ("wall_s", "wall s", str), ("run_s", "pipeline s", str),
                       ("records", "records", str), ("rejects", "rejects", str),
                       ("tokens", "tokens", str), ("tokens_per_s", "tok/s", str)])
    print(f"wrote {write_json('demo', {'machine': machine(), 'runs': rows})}")


if __name__ == "__main__":
    main()
