"""The review page's cost on a big run: building the index over output.jsonl, its memory per
record, and the work of one request (next record + progress counters + filter values) per
sampling mode, with and without a filter, at a given number of labels.

    python -m benchmarks.review [--records 1000000] [--labels 5000]

Records are synthetic (17 skills x 50 types, 400 characters of text each, judge verdicts on
all).
Prints a table and writes benchmarks/results/review.json."""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

import psutil

from benchmarks.common import machine, print_table, write_json
from gristmill.flywheel.labels import Label
from gristmill.flywheel.review_index import RecordIndex
from gristmill.flywheel.review_sampling import (MODES, LabelView, Query, facets, next_record,
                                                progress)


def write_records(path: Path, n: int) -> None:
    rng = random.Random(0)
    text = "word " * 40
    with path.open("w") as fh:
        for i in range(n):
            a, b = rng.random() < 0.8, rng.random() < 0.8
            fh.write(json.dumps({
                "id": f"{i:016x}", "seed_id": f"{i // 20:016x}", "skill": f"skill{i % 17}",
                "type": f"type{i % 50}", "messages": [{"role": "user", "content": text},
                                                      {"role": "assistant", "content": text}],
                "judge": {"passed": a and b, "version": "v1",
                          "criteria": {"x": {"passed": a}, "y": {"passed": b}}}}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--labels", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        write_records(run / "output.jsonl", args.records)
        rss_before = psutil.Process().memory_info().rss
        started = time.perf_counter()
        index = RecordIndex(run)
        build_s = time.perf_counter() - started
        used = psutil.Process().memory_info().rss - rss_before
        pool = index.pool
        history = [Label(m.id, "", i % 3 != 0, "", "", float(i))
                   for i, m in enumerate(pool.metas[:args.labels])]
        rows = []
        for mode in MODES:
            for query in (Query(mode), Query(mode, skill="skill3", judge="fail")):
                started = time.perf_counter()
                view = LabelView.of(history)
                next_record(pool, query, view)
                progress(pool, query, view)
                facets(pool)
                rows.append({"mode": mode, "filter": "skill3, judge failed" if query.skill else "-",
                             "ms": (time.perf_counter() - started) * 1000})
    print(f"{args.records:,} records, {args.labels:,} labels: index built in {build_s:.1f} s, "
          f"{used / args.records:.0f} bytes of RSS per record; load average "
          f"{os.getloadavg()[0]:.1f}")
    print_table(rows, [("mode", "mode", str), ("filter", "filter", str),
                       ("ms", "ms per request", lambda v: f"{v:.1f}")])
    path = write_json("review", {"machine": machine(), "records": args.records,
                                 "labels": args.labels, "index_build_s": build_s,
                                 "rss_bytes_per_record": used / args.records,
                                 "load_average": os.getloadavg()[0], "requests": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
