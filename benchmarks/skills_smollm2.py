"""Every skill of configs/agentinstruct.yaml on the embedded model: `gristmill demo` (SmolLM2-135M
behind vLLM's CPU build) over one seed of each kind (a prose passage, a code file, a web page,
a table), so each skill gets one seed, one transformation agent and no refinement.

    python -m benchmarks.skills_smollm2            # --mock: the same run on the mock server

Prints records, rejects and their main reasons per skill, and the wall time; writes
benchmarks/results/skills_smollm2.json."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson
import yaml

from .common import ROOT, machine, print_table, write_json

SEEDS = ROOT / "configs" / "seeds"
ONE_OF_EACH = [SEEDS / "demo" / "tides.txt", next(iter(sorted((SEEDS / "code").rglob("*.py")))),
               SEEDS / "web" / "shop-product.html", SEEDS / "tables" / "city-climate.csv"]


def skills() -> list[str]:
    config = yaml.safe_load((ROOT / "configs" / "agentinstruct.yaml").read_text())
    return config["agentinstruct"]["skills"]


def run(run_dir: Path, seeds: Path, mock: bool) -> float:
    names = skills()
    sets = {"seeds.path": str(seeds), "seeds.min_chars": "50",
            "seeds.kinds": "[prose,code,html,table]", "retrieval": "{}",
            "agentinstruct.skills": "[" + ",".join(names) + "]",
            "agentinstruct.agents": "null", "agentinstruct.agents_per_seed": "1",
            "agentinstruct.skills_per_seed": "null", "agentinstruct.skill_weights": "{}",
            "agentinstruct.refine_rounds": "0", "judge": "null"}
    args = [arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "gristmill", "demo", "--run-dir", str(run_dir),
                           "--no-progress", *(["--mock"] if mock else []), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=7200)
    if done.returncode != 0:
        raise RuntimeError(f"gristmill demo failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def per_skill(run_dir: Path) -> list[dict]:
    records: Counter[str] = Counter()
    for line in (run_dir / "output.jsonl").read_bytes().splitlines():
        records[orjson.loads(line)["skill"]] += 1
    rejects: dict[str, Counter[str]] = {}
    for line in (run_dir / "rejects.jsonl").read_bytes().splitlines():
        reject = orjson.loads(line)
        reason = reject.get("validator") or reject.get("error") or "?"
        rejects.setdefault(reject.get("skill", "?"), Counter())[f"{reject['stage']}:{reason}"] += 1
    return [{"skill": name, "records": records[name],
             "rejects": sum(rejects.get(name, Counter()).values()),
             "reasons": ", ".join(f"{k} {v}" for k, v in
                                  rejects.get(name, Counter()).most_common(2))}
            for name in skills()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mock", action="store_true", help="the mock server, not the model")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        seeds = Path(tmp) / "seeds"
        seeds.mkdir()
        for path in ONE_OF_EACH:
            shutil.copy(path, seeds / path.name)
        wall = run(Path(tmp) / "run", seeds, args.mock)
        rows = per_skill(Path(tmp) / "run")
        summary = json.loads((Path(tmp) / "run" / "summary.json").read_text())
    print_table(rows, [("skill", "skill", str), ("records", "records", str),
                       ("rejects", "rejects", str), ("reasons", "main reasons", str)])
    print(f"wall {wall:.0f} s (set-up included), pipeline {summary['elapsed_s']:.0f} s, "
          f"{summary['records']} records, {summary['rejects']} rejects, "
          f"{summary['tokens']:,} tokens")
    write_json("skills_smollm2", {"machine": machine(), "mock": args.mock, "wall_s": wall,
                                  "summary": {k: summary[k] for k in
                                              ("records", "rejects", "elapsed_s", "tokens")},
                                  "skills": rows})


if __name__ == "__main__":
    main()
