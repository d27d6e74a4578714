"""`gristmill export` on a big run: wall time, records per second and the peak RSS of the
exporting process, per format, whole and `--split-by skill`.

    python -m benchmarks.export [--records 200000]

Records are synthetic: 17 skills, two in three a one-turn instruction and answer (~1 KB), one
in three a tool-use dialogue (two user turns, two tool rounds, the tools list; ~2 KB). Each
export runs in its own process (`--worker`), so its peak RSS is its own.
Prints a table and writes benchmarks/results/export.json."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, peak_rss_mb, print_table, run_worker, write_json

FORMATS = ("openai", "sharegpt", "parquet", "hf")


TOOLS = [{"type": "function", "function": {
    "name": f"tool{k}", "description": "Does one thing.",
    "parameters": {"type": "object", "properties": {"x": {"type": "integer"}},
                   "required": ["x"]}}} for k in range(3)]


def call(n: int) -> dict:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": f"call_{n}", "type": "function",
         "function": {"name": f"tool{n % 3}", "arguments": json.dumps({"x": n})}}]}


def record(i: int, text: str) -> dict:
    messages = [{"role": "user", "content": text}, {"role": "assistant", "content": text}]
    extra = {}
    if i % 3 == 0:  # a tool-use dialogue
        messages = [messages[0], call(1), {"role": "tool", "tool_call_id": "call_1",
                                           "content": '{"ok": true}'},
                    messages[1], {"role": "user", "content": "And then?"}, call(2),
                    {"role": "tool", "tool_call_id": "call_2", "content": '{"ok": false}'},
                    {"role": "assistant", "content": text}]
        extra["tools"] = TOOLS
    return {"id": f"{i:016x}", "messages": messages, **extra, "skill": f"skill{i % 17}",
            "agent": "a", "type": "t", "seed_id": f"{i // 20:016x}",
            "lineage": [{"id": f"{i // 20:016x}", "stage": "seed"}], "model": "m",
            "usage": {"prompt_tokens": 100, "completion_tokens": 50}}


def write_records(path: Path, n: int) -> None:
    text = "word " * 100
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps(record(i, text)) + "\n")


def worker(run: Path, fmt: str, split: bool) -> None:
    from gristmill.dataset.export import export_run

    started = time.perf_counter()
    export_run(run, fmt, split_by="skill" if split else None, say=lambda _: None)
    print(json.dumps({"seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb()}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--worker", nargs=3, metavar=("RUN", "FORMAT", "SPLIT"))
    args = parser.parse_args()
    if args.worker:
        run, fmt, split = args.worker
        worker(Path(run), fmt, split == "1")
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        write_records(run / "output.jsonl", args.records)
        size_mb = (run / "output.jsonl").stat().st_size / 2**20
        for fmt in FORMATS:
            for split in (False, True):
                result = run_worker("benchmarks.export",
                                    ["--worker", str(run), fmt, "1" if split else "0"])
                rows.append({"format": fmt, "split": "by skill" if split else "-", **result,
                             "records_per_s": args.records / result["seconds"]})
    print(f"{args.records:,} records ({size_mb:.0f} MB of JSONL); load average "
          f"{os.getloadavg()[0]:.1f}")
    print_table(rows, [("format", "format", str), ("split", "split", str),
                       ("seconds", "s", lambda v: f"{v:.1f}"),
                       ("records_per_s", "records/s", lambda v: f"{v:,.0f}"),
                       ("peak_rss_mb", "peak RSS MB", lambda v: f"{v:.0f}")])
    path = write_json("export", {"machine": machine(), "records": args.records,
                                 "input_mb": size_mb, "load_average": os.getloadavg()[0],
                                 "exports": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
