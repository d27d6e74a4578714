"""The run store with WAL (one machine) against a truncated rollback journal (a cluster's
shared run directory, where WAL cannot work): the time to commit answers and records, and
the time an answer lookup takes while the writer commits.

    python -m benchmarks.store_journal [--answers 20000] [--rounds 3]

Each round runs both modes, alternating which goes first, in a fresh directory on this
machine's disk (a network file system adds its own round trips to every commit and lock, the
same for both modes' fsyncs). The writer commits every 50 ms as in a run: a steady stream of
answers (1 KB each, with a record line each) arrives at about 2,000 per second. Prints a
table, writes benchmarks/results/store_journal.json."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import machine, print_table, write_json
from gristmill.dataset.store import Store

VALUE = b"x" * 1000
PER_TICK = 20  # answers per 10 ms: about 2,000 a second


async def one(path: Path, answers: int, wal: bool) -> dict[str, Any]:
    store = Store(path / "run.sqlite", {"output": path / "output.jsonl"}, wal=wal)
    lookups: list[float] = []
    start = time.perf_counter()
    for i in range(answers):
        key = i.to_bytes(16, "big")
        store.put_answer(key, VALUE)
        store.append("output", {"id": f"{i:016x}", "text": "y" * 200})
        if i % PER_TICK == PER_TICK - 1:
            t = time.perf_counter()
            store.get_answer((i // 2).to_bytes(16, "big"))  # an earlier, committed answer
            lookups.append(time.perf_counter() - t)
            await asyncio.sleep(0.01)
    await store.flush()
    wall = time.perf_counter() - start
    commits = store.commits
    store.close()
    return {"mode": "WAL" if wal else "TRUNCATE", "answers": answers, "wall_s": wall,
            "commits": commits, "lookup_p50_us": statistics.median(lookups) * 1e6,
            "lookup_p99_us": sorted(lookups)[int(len(lookups) * 0.99)] * 1e6,
            "lookup_max_ms": max(lookups) * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for r in range(args.rounds):
        for wal in ((True, False) if r % 2 == 0 else (False, True)):
            with tempfile.TemporaryDirectory(dir=os.getcwd()) as tmp:
                rows.append({"round": r + 1, **asyncio.run(one(Path(tmp), args.answers, wal))})
    print_table(rows, [("round", "round", str), ("mode", "journal", str),
                       ("answers", "answers", "{:,}".format), ("wall_s", "wall s", "{:.2f}".format),
                       ("commits", "commits", "{:,}".format),
                       ("lookup_p50_us", "lookup p50 µs", "{:.0f}".format),
                       ("lookup_p99_us", "lookup p99 µs", "{:.0f}".format),
                       ("lookup_max_ms", "lookup max ms", "{:.1f}".format)])
    path = write_json("store_journal", {"machine": machine(), "args": vars(args), "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
