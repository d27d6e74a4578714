"""The `decontamination` final validator: reject answers that share a long word n-gram with
an evaluation set, so benchmark items do not leak into training data.

The index is built once, when the validator is built (files are read then, never during a
check), and shared by every validator with the same files, field and n. Texts are compared
as lower-cased word sequences (`\\w+` runs); each n-gram is hashed to 64 bits and the index
is a sorted numpy int64 array of the distinct hashes:

    memory: 8 bytes per distinct eval n-gram (a 1,000-example set of 300-word items holds
    ~290k 13-grams: ~2.3 MB), plus a transient 16 bytes per n-gram while building.

A check hashes the answer's n-grams and looks them up with one `searchsorted`. Hash
collisions (2^-64 per pair) are negligible. Eval examples shorter than n words cannot be
matched. The hash is Python's tuple hash, stable within a process (the index is rebuilt per
process, never stored).
"""

from __future__ import annotations

import re
from array import array
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np
import orjson
from pydantic import Field, ValidationInfo, field_validator

from gristmill.validation.base import Context, Params, Rejection, quote

_WORDS = re.compile(r"\w+")
_INDEXES: dict[tuple[Any, ...], "NgramIndex"] = {}  # shared by validators of the same files


def words_of(text: str) -> list[str]:
    return _WORDS.findall(text.casefold())


def ngram_hashes(words: list[str], n: int) -> np.ndarray:
    return np.fromiter((hash(tuple(words[i:i + n])) for i in range(len(words) - n + 1)),
                       dtype=np.int64, count=max(0, len(words) - n + 1))


class NgramIndex:
    def __init__(self, hashes: np.ndarray, examples: int, n: int) -> None:
        self.hashes = hashes  # sorted, distinct
        self.examples = examples
        self.n = n

    @classmethod
    def build(cls, texts: Iterator[str], n: int) -> "NgramIndex":
        collected, examples = array("q"), 0
        for text in texts:
            examples += 1
            collected.extend(ngram_hashes(words_of(text), n).tolist())
        hashes = np.unique(np.frombuffer(collected, dtype=np.int64)) if collected \
            else np.empty(0, dtype=np.int64)
        return cls(hashes, examples, n)

    def first_hit(self, words: list[str]) -> int | None:
        """Index of the first of `words`' n-grams found in the eval set, or None."""
        probe = ngram_hashes(words, self.n)
        if not len(probe) or not len(self.hashes):
            return None
        at = np.searchsorted(self.hashes, probe).clip(max=len(self.hashes) - 1)
        hits = np.flatnonzero(self.hashes[at] == probe)
        return int(hits[0]) if len(hits) else None

    @property
    def nbytes(self) -> int:
        return self.hashes.nbytes


def read_examples(path: Path, field: str) -> Iterator[str]:
    """JSONL (.jsonl/.json: the `field` of each object) or text (one example per line)."""
    jsonl = path.suffix.lower() in (".jsonl", ".json", ".ndjson")
    with path.open("rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            if not jsonl:
                yield line.decode("utf-8", "replace")
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise ValueError(f"{path}:{number} is not a JSON line") from None
            text = value.get(field) if isinstance(value, dict) else None
            if isinstance(text, str):
                yield text


def load_index(paths: list[Path], field: str, n: int) -> NgramIndex:
    key = (tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths), field, n)
    index = _INDEXES.get(key)
    if index is None:
        texts = (text for path in paths for text in read_examples(path, field))
        index = _INDEXES[key] = NgramIndex.build(texts, n)
    return index


class Decontamination:
    """Rejects an answer sharing a sequence of `n` words (lower-cased) with an example of the
    evaluation files, so benchmark items do not leak into training data."""

    name: ClassVar[str] = "decontamination"
    kind: ClassVar[str] = "final"

    class Params(Params):
        paths: list[Path] = Field(min_length=1, description="Evaluation sets: JSONL files "
                                  "(the `field` of each line) or text files (one example per "
                                  "line); relative paths are relative to the config's folder.")
        field: str = Field("text", description="JSONL field holding an example's text.")
        n: int = Field(13, ge=3, le=64, description="Words per n-gram.")

        @field_validator("paths")
        @classmethod
        def _exist(cls, paths: list[Path], info: ValidationInfo) -> list[Path]:
            base = (info.context or {}).get("base_dir")
            out = []
            for path in paths:
                path = path.expanduser()
                if not path.is_absolute() and base is not None:
                    path = Path(base) / path
                if not path.is_file():
                    raise ValueError(f"evaluation file {str(path)!r} does not exist")
                out.append(path)
            return out

    def __init__(self, params: "Decontamination.Params") -> None:
        self.p = params
        self.index = load_index(params.paths, params.field, params.n)
        names = ", ".join(p.name for p in params.paths[:3]) + ("…" if len(params.paths) > 3 else "")
        self.source = f"{names}: {self.index.examples} examples"

    def check(self, text: str, context: Context) -> Rejection | None:
        words = words_of(text)
        hit = self.index.first_hit(words)
        if hit is None:
            return None
        gram = " ".join(words[hit:hit + self.p.n])
        return Rejection("decontamination", f"shares a {self.p.n}-word sequence with the "
                         f"evaluation set ({self.source}): {quote(gram, 120)}")
