"""The corpus an index is built over, and its digest: what a resume compares to know the
index still answers as it did (the same seeds and the same settings)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterable

import orjson

from gristmill.config.retrieval import RetrievalConfig
from gristmill.seeds.report import Seed

# What the index's files depend on besides the seeds and the settings: bump it when the
# tokenizer or the file layout changes, so an old index is rebuilt, never misread.
FORMAT = "bm25s lucene; tokens: lowercase words, English stopwords, no stemmer; v1"
_MOD = 1 << 128


@dataclass
class Corpus:
    digest: str
    passages: int
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (seed id, text) in id order


def read_corpus(seeds: Iterable[Seed], settings: RetrievalConfig, keep: bool) -> Corpus:
    """One pass over the seeds. The digest adds up a hash of each (id, text), so it does not
    depend on the order the input is read in (the index, in id order, does not either);
    `keep` holds the texts too, for a build."""
    total = count = 0
    pairs: list[tuple[str, str]] = []
    for seed in seeds:
        one = hashlib.blake2b(f"{seed.id}\0{seed.text}".encode(), digest_size=16).digest()
        total = (total + int.from_bytes(one, "big")) % _MOD
        count += 1
        if keep:
            pairs.append((seed.id, seed.text))
    pairs.sort()  # by id; an id twice (same place, same text) keeps a fixed order
    return Corpus(_digest(settings, total, count), count, pairs)


def corpus_digest(seeds: Iterable[Seed], settings: RetrievalConfig) -> str:
    return read_corpus(seeds, settings, keep=False).digest


def _digest(settings: RetrievalConfig, total: int, count: int) -> str:
    described = {"format": FORMAT, "settings": settings.model_dump(mode="json"),
                 "seeds": count, "sum": f"{total:032x}"}
    return hashlib.blake2b(orjson.dumps(described, option=orjson.OPT_SORT_KEYS),
                           digest_size=16).hexdigest()
