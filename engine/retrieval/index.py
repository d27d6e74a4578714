"""A built index, loaded read-only: the score matrix and the passages memory-mapped (many
processes on one machine share one copy in the page cache), the vocabulary in memory."""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import orjson

from gristmill.errors import ConfigError
from gristmill.retrieval.build import IDS_FILE, recorded, tokenize
from gristmill.retrieval.ranking import ranked

CORPUS_FILE = "corpus.jsonl"  # bm25s's names
OFFSETS_FILE = "corpus.mmindex.json"


class PassageIndex:
    def __init__(self, where: Path) -> None:
        info = recorded(where)
        if info is None:
            raise ConfigError(f"{where}: no retrieval index here (no index.json); a run "
                              "builds it at its start")
        self.where = where
        self.info = info
        self.ids = np.load(where / IDS_FILE, mmap_mode="r", allow_pickle=False)
        self.model: Any = None
        if info["terms"]:
            self.model = bm25s.BM25.load(where, mmap=True, show_progress=False)
            with (where / OFFSETS_FILE).open("rb") as f:
                self._starts = np.asarray(orjson.loads(f.read()), dtype=np.int64)
            with (where / CORPUS_FILE).open("rb") as f:  # the map outlives the descriptor
                self._text = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)

    @property
    def digest(self) -> str:
        return self.info["digest"]

    def __len__(self) -> int:
        return len(self.ids)

    def row_of(self, seed_id: str) -> int | None:
        """The row of a seed, or None when the index does not hold it."""
        key = seed_id.encode()
        row = int(np.searchsorted(self.ids, key))
        return row if row < len(self.ids) and self.ids[row] == key else None

    def search(self, query: str, n: int, exclude: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the `n` best passages for `query`, best first, ties by seed
        id; `exclude` is a row left out."""
        if self.model is None:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        terms = self.model.get_tokens_ids(tokenize(query, ids=False)[0])
        scores = self.model.get_scores_from_ids(terms)
        if exclude is not None:
            scores[exclude] = -np.inf
            n = min(n, len(scores) - 1)
        rows = ranked(scores, n)
        return rows, scores[rows]

    def passage(self, row: int) -> dict[str, str]:
        """{id, text} of a row. Slices of the map, not seek-and-read: searches run on
        threads at once."""
        start = int(self._starts[row])
        end = int(self._starts[row + 1]) if row + 1 < len(self._starts) else len(self._text)
        return orjson.loads(self._text[start:end])
