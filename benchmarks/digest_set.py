"""The exact-duplicate filter's set of 64-bit digests against a Python `set` of the same ints.

    python -m benchmarks.digest_set [--sizes 100000,1000000,4000000]

Each structure and size runs in its own process (so each peak RSS is its own): it adds n
random digests, then looks up every tenth of them. Prints a table (µs per add and per lookup,
bytes held per digest, peak RSS growth per digest) and writes
benchmarks/results/digest_set.json. The digests exist as ints before the clock starts, so a
`set`'s RSS growth is its table alone; in a run it also keeps each int alive (~36 B more),
which "bytes held" counts."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

from benchmarks.common import machine, peak_rss_mb, print_table, run_worker, write_json
from gristmill.dataset.digest_set import DigestSet

KINDS = ("DigestSet", "set")


def worker(kind: str, n: int) -> dict:
    rng = random.Random(1)
    values = [rng.getrandbits(64) for _ in range(n)]
    rss_before = peak_rss_mb()
    began = time.perf_counter()
    if kind == "DigestSet":
        digests = DigestSet()
        for value in values:
            digests.add_digest(value)
    else:
        digests = set()
        for value in values:
            digests.add(value)
    added = time.perf_counter()
    probes = values[::10]
    assert all(value in digests for value in probes)
    looked = time.perf_counter()
    held = digests.nbytes if kind == "DigestSet" else sys.getsizeof(digests) + sum(
        map(sys.getsizeof, values))  # the set's table and the int objects it keeps alive
    return {"kind": kind, "n": n, "add_us": 1e6 * (added - began) / n,
            "lookup_us": 1e6 * (looked - added) / len(probes), "bytes_each": held / n,
            "rss_growth_each": (peak_rss_mb() - rss_before) * 2**20 / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000,4000000")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]))))
        return
    rows = [run_worker("benchmarks.digest_set", ["--worker", kind, size])
            for size in args.sizes.split(",") for kind in KINDS]
    f2 = "{:.2f}".format
    print_table(rows, [("kind", "structure", str), ("n", "digests", "{:,}".format),
                       ("add_us", "add µs", f2), ("lookup_us", "lookup µs", f2),
                       ("bytes_each", "bytes held each", "{:.1f}".format),
                       ("rss_growth_each", "peak RSS growth each, B", "{:.1f}".format)])
    path = write_json("digest_set", {"machine": machine(), "rows": rows,
                                     "time": time.strftime("%Y-%m-%d %H:%M:%S")})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
