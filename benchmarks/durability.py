"""What durability costs: cache and sink overhead per record, and resume start-up time.

    python -m benchmarks.durability [--records 200000] [--resume-records 1000000]

1. Per record, in one process (the event loop's thread and the store's writer thread both
   counted): the cache lookup that misses, the answer put and its SQLite commit, and the JSONL
   append written after the commit. CPU microseconds per record.
2. Resume start-up: a run directory with N records in output.jsonl (and N answers in the
   cache) is opened as a resume does: torn-line repair, the written-id index, the database.
Prints a table and writes benchmarks/results/durability.json."""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path

import orjson
import psutil

from gristmill.protocol import Completion, Request, Usage
from benchmarks.common import Meter, machine, print_table, write_json
from gristmill.dataset.cache import AnswerCache, answer_key, encode
from gristmill.flows.items import child_id
from gristmill.dataset.store import SCHEMA, Store

ANSWER = Completion("The stones turn slowly and the flour falls into the bin. " * 6, "stop",
                    Usage(120, 80), "mock")


def record(i: int) -> dict:
    rid = child_id("seed", str(i))
    return {"id": rid, "seed_id": rid,
            "messages": [{"role": "user", "content": f"Question {i} about the mill race?"},
                         {"role": "assistant", "content": ANSWER.text}],
            "lineage": [{"id": rid, "stage": "seed"}], "model": "mock",
            "usage": {"prompt_tokens": 120, "completion_tokens": 80}}


def request(i: int) -> Request:
    return Request("mock", messages=[{"role": "user", "content": f"Question {i} about the mill race?"}],
                   params={"max_tokens": 256, "temperature": 0.7})


async def per_record_cost(n: int, tmp: Path) -> list[dict]:
    rows = []
    for label, use_cache in (("sink only", False), ("cache + sink", True)):
        store = Store(tmp / f"{label}.sqlite", {"output": tmp / f"{label}.jsonl"})
        cache = AnswerCache(store, "default")
        requests = [request(i) for i in range(n)]
        records = [record(i) for i in range(n)]
        with Meter() as meter:
            for req, rec in zip(requests, records):
                if use_cache:
                    key, hit = cache.get(req)
                    cache.put(key, ANSWER)
                store.append("output", rec)
                if len(store._pending) > 5000:  # let the writer keep up, as a real run does
                    await asyncio.sleep(0)
            await store.flush()
            store.close()
        rows.append({"what": label, "records": n, "cpu_us_per_record": 1e6 * meter.cpu / n,
                     "wall_us_per_record": 1e6 * meter.wall / n, "commits": store.commits})
    rows.append({"what": "cache overhead", "records": n,
                 "cpu_us_per_record": rows[1]["cpu_us_per_record"] - rows[0]["cpu_us_per_record"],
                 "wall_us_per_record": rows[1]["wall_us_per_record"] - rows[0]["wall_us_per_record"]})
    return rows


def build_run_dir(n: int, tmp: Path) -> Path:
    """A run directory as a long run leaves it: n answers, n records, a torn last line."""
    run = tmp / "big-run"
    run.mkdir()
    conn = sqlite3.connect(run / "run.sqlite")
    conn.executescript(SCHEMA)
    value = encode(ANSWER)
    conn.executemany("INSERT INTO answers VALUES (?, ?, 0)",
                     ((answer_key("default", request(i)), value) for i in range(n)))
    conn.commit()
    conn.close()
    with (run / "output.jsonl").open("wb") as fh:
        for i in range(n):
            fh.write(orjson.dumps(record(i), option=orjson.OPT_APPEND_NEWLINE))
        fh.write(b'{"id":"torn-by-a-kill')  # as kill -9 would leave it
    return run


def resume_startup(n: int, tmp: Path) -> dict:
    run = build_run_dir(n, tmp)
    size = (run / "output.jsonl").stat().st_size
    process = psutil.Process()
    rss0 = process.memory_info().rss
    with Meter() as meter:
        store = Store(run / "run.sqlite", {"output": run / "output.jsonl"})
        ids = len(store.written("output"))
    growth = (process.memory_info().rss - rss0) / 1e6
    store.close()
    return {"what": "resume start-up", "records": ids, "output_mb": size / 1e6,
            "wall_s": meter.wall, "cpu_s": meter.cpu, "rss_growth_mb": growth}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--resume-records", type=int, default=1_000_000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gm-durable-"))
    rows = asyncio.run(per_record_cost(args.records, tmp))
    print_table(rows, [("what", "what", str), ("records", "records", "{:,}".format),
                       ("cpu_us_per_record", "CPU µs/record", "{:.1f}".format),
                       ("wall_us_per_record", "wall µs/record", "{:.1f}".format)])
    resume = resume_startup(args.resume_records, tmp)
    print(f"\nresume start-up with {resume['records']:,} records ({resume['output_mb']:.0f} MB "
          f"output.jsonl, torn last line): {resume['wall_s']:.2f} s wall, {resume['cpu_s']:.2f} s "
          f"CPU, +{resume['rss_growth_mb']:.0f} MB RSS for the id index")
    print(f"wrote {write_json('durability', {'machine': machine(), 'per_record': rows, 'resume': resume, 'time': time.strftime('%Y-%m-%d %H:%M:%S')})}")


if __name__ == "__main__":
    main()
