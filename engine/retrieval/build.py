"""Writing an index: bm25s's own save format (the score matrix as .npy arrays, the vocabulary,
the parameters, and corpus.jsonl: one {id, text} per row), the seed ids of the rows
(ids.npy, for a seed's row), and index.json last, which marks the index complete.

Rows are in seed-id order and every file is a function of the corpus and the settings alone
(no time, no path, no random state): the same corpus gives the same bytes."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import orjson

from gristmill.config.retrieval import RetrievalConfig
from gristmill.retrieval.corpus import Corpus

INDEX_FILE = "index.json"  # written last: its presence says the index is whole
IDS_FILE = "ids.npy"
STOPWORDS = "en"  # bm25s's English list; no stemmer: no compiled dependency for it


def tokenize(texts: Any, ids: bool) -> Any:
    """bm25s's tokenizer as the index and its queries both use it (lowercase words)."""
    return bm25s.tokenize(texts, stopwords=STOPWORDS, return_ids=ids, show_progress=False)


def build_index(corpus: Corpus, settings: RetrievalConfig, where: Path) -> dict[str, Any]:
    """Index `corpus` into the folder `where` (replacing what is there) and return what
    index.json says: the digest, the passages and the distinct terms."""
    partial = where.with_name(where.name + ".partial")  # a build cut short leaves only this
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    terms = 0
    tokens = tokenize((text for _, text in corpus.pairs), ids=True) if corpus.pairs else None
    if tokens is not None and tokens.vocab:  # else nothing can match: an empty index
        model = bm25s.BM25(k1=settings.k1, b=settings.b)
        model.index(tokens, show_progress=False)
        terms = len(tokens.vocab)
        del tokens
        cut = settings.max_passage_chars
        model.save(partial, corpus=({"id": i, "text": t[:cut]} for i, t in corpus.pairs),
                   show_progress=False, raise_on_serialization_error=True)
    np.save(partial / IDS_FILE, np.array([i for i, _ in corpus.pairs], dtype="S"),
            allow_pickle=False)
    info = {"digest": corpus.digest, "passages": corpus.passages, "terms": terms,
            "bm25s": bm25s.__version__}
    (partial / INDEX_FILE).write_bytes(orjson.dumps(info, option=orjson.OPT_INDENT_2))
    shutil.rmtree(where, ignore_errors=True)
    partial.rename(where)
    return info


def recorded(where: Path) -> dict[str, Any] | None:
    """index.json of a whole index at `where`, or None."""
    try:
        return orjson.loads((where / INDEX_FILE).read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None
