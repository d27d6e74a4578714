"""Batch mode under random kills: kill -9 the run at random moments, resume, again, until it
finishes; then compare with an uninterrupted run and look for a request key in two batches.

    python -m benchmarks.batch_crash [--kills 12] [--seeds 1000] [--max-pending 100] [--seed 1]

One mock server (its batches take --ms-per-request each line, so kills land in every phase:
sealing, uploading, polling, downloading, committing) serves both runs. At most
`--max-pending` requests wait in batches at once (two files of 50 by default), so a run goes
through many cycles of files and the wait for room is killed too. Prints a table and
writes benchmarks/results/batch_crash.json."""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import yaml

from benchmarks.common import machine, mock_server, print_table, write_json

GRISTMILL = [sys.executable, "-m", "gristmill"]


def config(base_url: str, seeds: Path, tmp: Path, mode: str, max_pending: int) -> Path:
    data = {"name": f"crash-{mode}", "seeds": {"path": str(seeds), "min_chars": 1},
            "backends": {"default": {
                "base_url": base_url, "model": "mock", "mode": mode,
                "batch_files": {"max_requests": 50, "max_pending": max_pending,
                                "idle_seal_s": 0.3, "poll_s": 0.1, "poll_max_s": 0.5}}},
            "stages": [{"name": "question", "prompt": "Ask about: {{ seed }}"},
                       {"name": "answer", "prompt": "Answer: {{ question }}"}]}
    path = tmp / f"{mode}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def records(run_dir: Path) -> dict[str, Any]:
    rows = [orjson.loads(line) for line in (run_dir / "output.jsonl").read_bytes().splitlines()]
    return {row["id"]: row["messages"] for row in rows}


def lines_in_batches(files_dir: Path) -> Counter[str]:
    seen: Counter[str] = Counter()
    for path in files_dir.iterdir():
        for line in path.read_bytes().splitlines():
            row = orjson.loads(line)
            if "method" in row:
                seen[row["custom_id"]] += 1
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=1000)
    parser.add_argument("--ms-per-request", type=float, default=20.0)
    parser.add_argument("--max-pending", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp_name, \
            mock_server("--batch-ms-per-request", str(args.ms_per_request)) as server:
        tmp = Path(tmp_name)
        seeds = tmp / "seeds.jsonl"
        seeds.write_text("".join(orjson.dumps({"text": f"Seed {i} about mills and rivers."})
                                 .decode() + "\n" for i in range(args.seeds)))
        batch_dir = tmp / "batch"
        command = [*GRISTMILL, "run", str(config(server.base_url, seeds, tmp, "batch", args.max_pending)),
                   "--run-dir", str(batch_dir), "--no-progress"]
        kills, sessions, start = [], 0, time.perf_counter()
        while True:
            sessions += 1
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if len(kills) < args.kills:
                delay = rng.uniform(0.3, 2.0)
                try:
                    proc.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    kills.append(round(delay, 2))
                    continue
            else:
                proc.wait()
            if proc.returncode == 0:
                break
            raise RuntimeError(proc.stderr.read().decode()[-2000:] if proc.stderr else "")
        wall = time.perf_counter() - start
        in_batches = lines_in_batches(Path(server.stats()["batches"]["files_dir"]))
        online_dir = tmp / "online"
        subprocess.run([*GRISTMILL, "run", str(config(server.base_url, seeds, tmp, "online", args.max_pending)),
                        "--run-dir", str(online_dir), "--no-progress"], check=True,
                       capture_output=True)
        got, want = records(batch_dir), records(online_dir)
        raw = (batch_dir / "output.jsonl").read_bytes().splitlines()
    row = {"kills": len(kills), "sessions": sessions, "wall_s": round(wall, 1),
           "records": len(got), "same_records": got == want,
           "duplicate_records": len(raw) - len(got),
           "keys_in_two_batches": sum(1 for n in in_batches.values() if n > 1),
           "requests_in_batches": len(in_batches)}
    print_table([row], [(k, k.replace("_", " "), str) for k in row])
    print(f"kill times (s into a session): {kills}")
    path = write_json("batch_crash", {"machine": machine(), "args": vars(args), "kills": kills,
                                      **row})
    print(f"wrote {path}")
    if not row["same_records"] or row["duplicate_records"] or row["keys_in_two_batches"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
