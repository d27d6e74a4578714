"""The retrieval index on a synthetic corpus: build time and peak memory, the resume's digest
pass, a shard's load, and query latency.

    python -m benchmarks.retrieval_index [--sizes 100000,1000000] [--queries 300]

The corpus is generated deterministically: passages of 40-80 words (60 on average) drawn
from a Zipf(1.07) distribution over a 100,000-word vocabulary of made-up words, each with
the 16-hex-digit id a seed has. Each size runs in two processes of its own (so each peak
RSS is its own): `build` streams the passages through what a fresh run does (read the
corpus and its digest, then build the index into a folder; "read s" leaves out the time
the synthetic passages take to generate), then times the digest pass of a resume;
`query` loads the index as a shard does (memory-mapped) and times searches, as a stage
calls them (k=3 passages, 3 distractors from the next 20 ranks, the item's own seed left
out), for two kinds of query: a 12-word question and a whole passage. Prints a table and
writes benchmarks/results/retrieval_index.json."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from benchmarks.common import machine, peak_rss_mb, print_table, run_worker, write_json
from gristmill.config.retrieval import RetrievalConfig, RetrieveConfig
from gristmill.flows.items import Item
from gristmill.retrieval.build import build_index
from gristmill.retrieval.corpus import read_corpus
from gristmill.retrieval.index import PassageIndex
from gristmill.retrieval.stage import Retrieval
from gristmill.seeds.report import Seed

VOCABULARY = 100_000
ZIPF_S = 1.07
CHUNK = 10_000  # passages generated at a time: the generator holds no more than this
SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"][:50]
SETTINGS = RetrievalConfig()


def made_up_word(rank: int) -> str:
    """A pronounceable word per rank, two syllables at least (no stopword, no 1-letter)."""
    parts = []
    rank += 50
    while rank:
        rank, digit = divmod(rank, 50)
        parts.append(SYLLABLES[digit])
    return "".join(parts)


def passages(n: int, seed: int = 7) -> Iterator[Seed]:
    words = np.array([made_up_word(r) for r in range(VOCABULARY)], dtype=object)
    weights = 1.0 / np.arange(1, VOCABULARY + 1) ** ZIPF_S
    cdf = np.cumsum(weights / weights.sum())
    for start in range(0, n, CHUNK):
        rng = np.random.default_rng([seed, start])
        count = min(CHUNK, n - start)
        lengths = rng.integers(40, 81, size=count)
        drawn = np.minimum(np.searchsorted(cdf, rng.random(int(lengths.sum()))), VOCABULARY - 1)
        at = 0
        for i, length in enumerate(lengths):
            text = " ".join(words[drawn[at:at + length]])
            at += length
            yield Seed(hashlib.blake2b(f"{start + i}".encode(), digest_size=8).hexdigest(),
                       text, f"synthetic#{start + i}")


def build(n: int, folder: Path) -> dict:
    base = peak_rss_mb()
    began = time.perf_counter()
    for _ in passages(n):
        pass
    generated = time.perf_counter()
    corpus = read_corpus(passages(n), SETTINGS, keep=True)
    read = time.perf_counter()
    info = build_index(corpus, SETTINGS, folder / "index")
    built = time.perf_counter()
    peak = peak_rss_mb()
    del corpus
    seeds = list(passages(n))  # generated before the clock starts: the digest alone is timed
    again = time.perf_counter()
    digest = read_corpus(seeds, SETTINGS, keep=False).digest
    digested = time.perf_counter()
    assert digest == info["digest"]
    size = sum(p.stat().st_size for p in (folder / "index").iterdir())
    return {"n": n, "terms": info["terms"], "generate_s": generated - began,
            "read_s": (read - generated) - (generated - began), "build_s": built - read,
            "resume_digest_s": digested - again,
            "base_rss_mb": base, "peak_rss_mb": peak, "index_mb": size / 2**20}


def query(n: int, folder: Path, count: int) -> dict:
    step = max(1, n // count)
    sample = [seed for i, seed in enumerate(passages(min(n, step * count))) if i % step == 0]
    base = peak_rss_mb()  # the sample's generation peaks before the index is loaded
    began = time.perf_counter()
    index = PassageIndex(folder / "index")
    loaded = time.perf_counter()
    retrieval = Retrieval("bench", RetrieveConfig(k=3, distractors=3, distractor_pool=20),
                          index)
    rng = np.random.default_rng(11)
    latencies: dict[str, list[float]] = {"question": [], "passage": []}
    for seed in sample[:count]:
        words = seed.text.split()
        question = " ".join(rng.choice(words, size=min(12, len(words)), replace=False))
        item = Item(seed.id, seed.id, {"seed": seed.text})
        for kind, text in (("question", question), ("passage", seed.text)):
            t0 = time.perf_counter()
            found, _ = retrieval.find(text, item)
            latencies[kind].append(1000 * (time.perf_counter() - t0))
            assert kind == "question" or found  # a passage shares words with others
    row = {"n": n, "load_s": loaded - began, "query_rss_mb": peak_rss_mb() - base}
    for kind, values in latencies.items():
        values.sort()
        row[f"{kind}_p50_ms"] = statistics.median(values)
        row[f"{kind}_p95_ms"] = values[int(0.95 * (len(values) - 1))]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, n, folder = args.worker
        row = build(int(n), Path(folder)) if kind == "build" else \
            query(int(n), Path(folder), args.queries)
        print(json.dumps(row))
        return
    rows = []
    for n in args.sizes.split(","):
        folder = Path(tempfile.mkdtemp(prefix="retrieval-bench-"))
        try:
            row = run_worker("benchmarks.retrieval_index", ["--worker", "build", n, str(folder)])
            row.update(run_worker("benchmarks.retrieval_index",
                                  ["--queries", str(args.queries), "--worker", "query", n,
                                   str(folder)]))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        rows.append(row)
    f1, f2 = "{:.1f}".format, "{:.2f}".format
    print_table(rows, [("n", "passages", "{:,}".format), ("terms", "terms", "{:,}".format),
                       ("read_s", "read s", f1), ("build_s", "build s", f1),
                       ("peak_rss_mb", "peak RSS MB", "{:,.0f}".format),
                       ("base_rss_mb", "before MB", "{:,.0f}".format),
                       ("index_mb", "index MB", "{:,.0f}".format),
                       ("resume_digest_s", "resume digest s", f1), ("load_s", "load s", f2),
                       ("query_rss_mb", "shard RSS growth MB", "{:,.0f}".format),
                       ("question_p50_ms", "question p50 ms", f2),
                       ("question_p95_ms", "p95 ms", f2),
                       ("passage_p50_ms", "passage p50 ms", f2),
                       ("passage_p95_ms", "p95 ms", f2)])
    path = write_json("retrieval_index", {"machine": machine(), "rows": rows,
                                          "time": time.strftime("%Y-%m-%d %H:%M:%S")})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
