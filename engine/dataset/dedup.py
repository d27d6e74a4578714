"""Exact and near-duplicate removal of output records (MinHash LSH, `datasketch` MinHash).

Records are decided in `id` order (string order), so the smallest id of each cluster is
kept whatever order the records arrived in: first exact duplicates (same normalized text:
NFKC, case-folded, `\\w+` words), then near duplicates: a record is dropped when its MinHash
(word `shingle`-grams, `num_perm` permutations) agrees with an already kept record's on at
least `threshold` of the permutations (the estimated Jaccard similarity). Candidates come
from LSH banding (b bands of r rows, datasketch's optimal b, r for the threshold, weighted
towards recall) and are always verified on the signatures, so extra candidates and band-key
collisions cost time, never correctness.

The LSH index is numpy-sorted band keys, not datasketch's `MinHashLSH`: that one keeps
Python dicts and sets per band and key, several times this layout's memory per record (the
figures: benchmarks/RESULTS.md). Held per record (num_perm=128, b=14):

    signature   512 B  uint32[128] in 8192-row numpy blocks
    id          ~73 B  str (16 hex chars) + list slot
    text hash    16 B  64-bit hash + 64-bit tie-break, array('Q')
    dedup_run    16 B  file offset + line length, array('Q')
    banding   ~190 B  transient while deciding: band keys uint64[14], group ids int32[14],
                       the kept record per band group int64, sort temporaries

`python -m gristmill.dataset.dedup --measure N` measures the peak on N synthetic records; the
figures are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import orjson
from datasketch import MinHash, MinHashLSH

from gristmill.dataset.conversation import messages_of, text_of
from gristmill.dataset.files import atomic_path

BLOCK = 8192  # signature rows per numpy block
SLICE = 1024  # rows hashed into band keys at a time; divides BLOCK
_WORDS = re.compile(r"\w+")
Key = Callable[[dict[str, Any]], str]


def instruction_text(record: dict[str, Any]) -> str:
    """The record's `instruction` when it has one (the AgentInstruct flow's final instruction,
    without the passage a user message may embed: questions about one passage are not
    duplicates of each other), else the text of the last 'user' message (of a dialogue too:
    a flow that makes dialogues sets `instruction` to key them otherwise; a null content or a
    tool-calling turn counts as empty text)."""
    instruction = record.get("instruction")
    if isinstance(instruction, str):
        return instruction
    users = [m for m in messages_of(record) if m.get("role") == "user"]
    return text_of(users[-1].get("content")) if users else ""


def normal_words(text: str) -> list[str]:
    return _WORDS.findall(unicodedata.normalize("NFKC", text).casefold())


def hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


@dataclass
class DedupResult:
    kept: list[str]  # ids kept, in id order
    duplicate_of: dict[str, str] = field(default_factory=dict)  # dropped id -> kept id
    exact_duplicates: int = 0
    near_duplicates: int = 0
    kept_indices: np.ndarray | None = field(default=None, repr=False)  # arrival indices, id order

    @property
    def stats(self) -> dict[str, int]:
        return {"input": len(self.kept) + self.exact_duplicates + self.near_duplicates,
                "exact_duplicates": self.exact_duplicates,
                "near_duplicates": self.near_duplicates, "kept": len(self.kept)}


class Deduper:
    """Collects (id, text) compactly with `add`, then `decide` finds the duplicates."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, shingle: int = 5) -> None:
        if not 0.0 < threshold <= 1.0 or num_perm < 16 or shingle < 1:
            raise ValueError("need 0 < threshold <= 1, num_perm >= 16, shingle >= 1")
        self.threshold, self.num_perm, self.shingle = threshold, num_perm, shingle
        self.bands, self.rows = _band_params(threshold, num_perm)
        self.template = MinHash(num_perm=num_perm, seed=1, hashfunc=zlib.crc32)
        self.ids: list[str] = []
        self.hashes = array("Q")  # normalized-text hash
        self.ties = array("Q")  # orders records with equal ids (e.g. a hash of the line)
        self.blocks: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.ids)

    def sketch(self, text: str) -> tuple[int, np.ndarray]:
        """The normalized text's hash and its MinHash signature."""
        words = normal_words(text)
        joined = " ".join(words)
        k = self.shingle
        shingles = [" ".join(words[i:i + k]).encode() for i in range(len(words) - k + 1)] \
            or ([joined.encode()] if words else [])
        minhash = self.template.copy()
        minhash.update_batch(shingles)
        return hash64(joined.encode()), minhash.hashvalues

    def add(self, rid: str, text: str, tie: int = 0) -> None:
        text_hash, signature = self.sketch(text)
        row = len(self.ids) % BLOCK
        if row == 0:
            self.blocks.append(np.empty((BLOCK, self.num_perm), dtype=np.uint32))
        self.blocks[-1][row] = signature
        self.ids.append(rid)
        self.hashes.append(text_hash)
        self.ties.append(tie)

    def signature(self, index: int) -> np.ndarray:
        return self.blocks[index // BLOCK][index % BLOCK]

    def order(self) -> np.ndarray:
        """Record indices in id order (ties by `tie`, then by arrival)."""
        ids, ties = self.ids, self.ties
        order = sorted(range(len(ids)), key=ids.__getitem__)
        start = 0
        for end in range(1, len(order) + 1):  # runs of equal ids: rare, sorted by tie
            if end == len(order) or ids[order[end]] != ids[order[start]]:
                if end - start > 1:
                    order[start:end] = sorted(order[start:end], key=ties.__getitem__)
                start = end
        return np.array(order, dtype=np.int64)

    def decide(self) -> DedupResult:
        n = len(self.ids)
        order = self.order()
        dup_of = np.full(n, -1, dtype=np.int64)  # position (in id order) of the kept original
        kinds = np.zeros(n, dtype=np.int8)  # 0 kept, 1 exact, 2 near
        hashes = np.frombuffer(self.hashes, dtype=np.uint64)[order] if n else np.empty(0, np.uint64)
        _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
        rep = first[inverse]
        exact = rep != np.arange(n)
        kinds[exact], dup_of[exact] = 1, rep[exact]
        del hashes, first, inverse
        unique = np.flatnonzero(~exact)  # positions, in id order
        self._near(order, unique, kinds, dup_of)
        copies = np.flatnonzero(kinds == 1)  # an exact copy of a near duplicate: to its match
        originals = dup_of[copies]
        dup_of[copies] = np.where(kinds[originals] == 2, dup_of[originals], originals)
        ids = self.ids
        kept = [ids[i] for i in order[kinds == 0]]
        duplicate_of = {ids[order[p]]: ids[order[dup_of[p]]] for p in np.flatnonzero(kinds)}
        return DedupResult(kept, duplicate_of, int((kinds == 1).sum()), int((kinds == 2).sum()),
                           order[kinds == 0])

    def _near(self, order: np.ndarray, unique: np.ndarray, kinds: np.ndarray,
              dup_of: np.ndarray) -> None:
        """Near duplicates among `unique` positions: LSH candidates, verified on signatures."""
        if len(unique) < 2:
            return
        keys, records = self._band_keys(), order[unique]
        groups = np.empty((len(unique), self.bands), dtype=np.int32)
        shared = np.zeros((len(unique), self.bands), dtype=bool)
        for band in range(self.bands):
            column = keys[records, band]
            _, inverse, counts = np.unique(column, return_inverse=True, return_counts=True)
            groups[:, band] = inverse
            shared[:, band] = counts[inverse] > 1
        del keys
        # The kept record of each band group; the rare second kept one goes to `extra`.
        first_kept = [np.full(int(groups[:, b].max()) + 1, -1, dtype=np.int64)
                      for b in range(self.bands)]
        extra: dict[tuple[int, int], list[int]] = {}
        for u in np.flatnonzero(shared.any(axis=1)).tolist():  # the rest have no candidates
            position, bands = int(unique[u]), np.flatnonzero(shared[u]).tolist()
            slots = [(b, int(groups[u, b])) for b in bands]
            candidates = {int(first_kept[b][g]) for b, g in slots} - {-1}
            for slot in slots:
                candidates.update(extra.get(slot, ()))
            match = self._first_similar(order, position, sorted(candidates))
            if match is not None:
                kinds[position], dup_of[position] = 2, match
                continue
            for b, g in slots:
                if first_kept[b][g] < 0:
                    first_kept[b][g] = position
                else:
                    extra.setdefault((b, g), []).append(position)

    def _first_similar(self, order: np.ndarray, position: int, candidates: list[int]) -> int | None:
        mine = self.signature(int(order[position]))
        for candidate in candidates:  # in id order: the smallest similar kept id wins
            agree = np.count_nonzero(self.signature(int(order[candidate])) == mine)
            if agree >= self.threshold * self.num_perm:
                return candidate
        return None

    def band_multipliers(self) -> np.ndarray:
        """(bands, rows) odd uint64 multipliers of the band-key hash, the same every run."""
        return np.random.default_rng(7).integers(1, 2**63, size=(self.bands, self.rows),
                                                 dtype=np.uint64) * np.uint64(2) + np.uint64(1)

    def _band_keys(self) -> np.ndarray:
        """(records, bands) uint64 in arrival order: a multiply-add hash of each band's rows,
        computed a slice at a time so the temporaries stay small."""
        width, mult = self.bands * self.rows, self.band_multipliers()
        out = np.empty((len(self.ids), self.bands), dtype=np.uint64)
        for start in range(0, len(self.ids), SLICE):
            stop = min(start + SLICE, len(self.ids))
            block = self.blocks[start // BLOCK][start % BLOCK:(start % BLOCK) + stop - start]
            bands = block[:, :width].reshape(stop - start, self.bands, self.rows)
            out[start:stop] = (bands.astype(np.uint64) * mult).sum(axis=2, dtype=np.uint64)
        return out


class OnlineDeduper:
    """Decides each text as it comes, against the texts before it: the same rules as
    `Deduper.decide` (an exact copy of any earlier text, or a near duplicate of an earlier kept
    one: LSH candidates verified on the signatures, the first similar one wins), for a caller
    that must know at once whether a record counts (a run with a target, in seed order).
    Holds each kept text's signature and band keys in memory: fine for a target's N."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, shingle: int = 5) -> None:
        self.sketcher = Deduper(threshold, num_perm, shingle)  # parameters, MinHash, bands
        self.mult = self.sketcher.band_multipliers()
        self.seen: set[int] = set()  # hashes of every normalized text so far
        self.kept: list[np.ndarray] = []  # signatures of the kept texts
        self.buckets: dict[tuple[int, int], list[int]] = {}  # (band, key) -> kept indices
        self.counts = {"input": 0, "exact_duplicates": 0, "near_duplicates": 0, "kept": 0}

    def check(self, text: str) -> bool:
        """True when `text` is kept (and remembered), False for a duplicate."""
        d = self.sketcher
        text_hash, signature = d.sketch(text)
        self.counts["input"] += 1
        if text_hash in self.seen:
            self.counts["exact_duplicates"] += 1
            return False
        self.seen.add(text_hash)
        rows = signature[:d.bands * d.rows].reshape(d.bands, d.rows).astype(np.uint64)
        slots = list(enumerate((rows * self.mult).sum(axis=1, dtype=np.uint64).tolist()))
        candidates = sorted({i for slot in slots for i in self.buckets.get(slot, ())})
        for i in candidates:  # in arrival order: the earliest similar kept text wins
            if np.count_nonzero(self.kept[i] == signature) >= d.threshold * d.num_perm:
                self.counts["near_duplicates"] += 1
                return False
        for slot in slots:
            self.buckets.setdefault(slot, []).append(len(self.kept))
        self.kept.append(signature)
        self.counts["kept"] += 1
        return True

    def stats(self) -> dict[str, Any]:
        d = self.sketcher
        return {**self.counts, "threshold": d.threshold, "num_perm": d.num_perm,
                "shingle": d.shingle}


def _band_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """datasketch's (bands, rows) for the threshold, weighted 0.1/0.9 against false negatives:
    every candidate is verified on the signatures, so a missed pair costs more than an extra
    candidate (0.8, 128 -> 14 bands of 9: 87% recall at similarity 0.8, 97.5% at 0.85)."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.1, 0.9))
    return lsh.b, lsh.r


def dedup_records(records: Iterable[dict[str, Any]], key: Key = instruction_text,
                  threshold: float = 0.8, num_perm: int = 128, shingle: int = 5) -> DedupResult:
    """Deduplicate in memory; see the module doc. Records need an 'id'."""
    deduper = Deduper(threshold, num_perm, shingle)
    for record in records:
        tie = hash64(orjson.dumps(record, option=orjson.OPT_SORT_KEYS))
        deduper.add(str(record["id"]), key(record), tie)
    return deduper.decide()


def dedup_run(run_dir: Path, threshold: float = 0.8, num_perm: int = 128, shingle: int = 5,
              key: Key = instruction_text) -> dict[str, int]:
    """RUN/output.jsonl -> RUN/dataset.jsonl (kept records, in id order) and RUN/dedup.json.

    Pass 1 reads one line at a time and keeps only the compact per-record state plus the
    line's offset; pass 2 seeks to each kept line in id order. The same set of records gives
    a byte-identical dataset whatever order they were written in. A torn last line (no
    newline, not JSON) is skipped; so are other unreadable lines, counted in the stats."""
    run_dir = Path(run_dir)
    source = run_dir / "output.jsonl"
    deduper = Deduper(threshold, num_perm, shingle)
    offsets, lengths = array("Q"), array("Q")
    skipped = _read_pass(source, deduper, key, offsets, lengths)
    result = deduper.decide()
    kept_positions = result.kept_indices.tolist()
    _atomic_write(run_dir / "dataset.jsonl",
                  lambda out: _copy_lines(source, out, kept_positions, offsets, lengths))
    stats = {**result.stats, "skipped_lines": skipped}
    _atomic_write(run_dir / "dedup.json", lambda out: out.write(
        orjson.dumps({**stats, "threshold": threshold, "num_perm": num_perm, "shingle": shingle},
                     option=orjson.OPT_INDENT_2)))
    return stats


def _read_pass(source: Path, deduper: Deduper, key: Key, offsets: array, lengths: array) -> int:
    skipped, offset = 0, 0
    with source.open("rb") as fh:
        for line in fh:
            start, offset = offset, offset + len(line)
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                skipped += 1  # a torn last line, or a damaged one
                continue
            if not isinstance(record, dict):
                skipped += 1
                continue
            body = line.rstrip(b"\n")
            rid = record.get("id")
            deduper.add(str(rid) if rid is not None else f"{hash64(body):016x}", key(record),
                        hash64(body))
            offsets.append(start)
            lengths.append(len(body))
    return skipped


def _copy_lines(source: Path, out: Any, indices: list[int], offsets: array, lengths: array) -> None:
    with source.open("rb") as fh:
        for index in indices:
            fh.seek(offsets[index])
            out.write(fh.read(lengths[index]) + b"\n")


def _atomic_write(path: Path, write: Callable[[Any], Any]) -> None:
    with atomic_path(path, durable=True) as tmp, tmp.open("wb") as out:
        write(out)


def _measure(n: int) -> None:
    """`python -m gristmill.dataset.dedup --measure N`: peak traced memory of dedup_run on N synthetic
    records (ids and instructions shaped like the engine's), per record."""
    import random
    import tempfile
    import time
    import tracemalloc

    rng = random.Random(0)
    vocab = [f"{rng.choice('bcdfghklmnprst')}{rng.choice('aeiou')}{i}" for i in range(20_000)]
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        with (run / "output.jsonl").open("wb") as out:
            for i in range(n):
                words = " ".join(rng.choice(vocab) for _ in range(rng.randint(30, 150)))
                record = {"id": f"{hash64(str(i).encode()):016x}", "messages": [
                    {"role": "user", "content": words}, {"role": "assistant", "content": "ok"}]}
                out.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        tracemalloc.start()
        start = time.perf_counter()
        stats = dedup_run(run)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    print(f"{n} records in {time.perf_counter() - start:.1f} s (traced): {stats}; peak "
          f"{peak / 2**20:.1f} MiB = {peak / n:.0f} B/record -> 1M records: "
          f"{peak / n * 1e6 / 2**30:.2f} GiB")


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] != ["--measure"]:
        sys.exit("usage: python -m gristmill.dataset.dedup --measure N")
    _measure(int(sys.argv[2]) if len(sys.argv) > 2 else 50_000)
