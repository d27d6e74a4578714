"""Retrieval over the run's seed corpus: a BM25 index (bm25s) over every seed of the input,
built once per run into RUN/retrieval/ and loaded (memory-mapped) by every process that
searches it; a stage with `retrieve:` gets supporting passages and distractors for each item.

    corpus.py   the corpus read once: its seeds in id order and a digest of them
    build.py    the index written: bm25s's save format plus the seed ids (ids.npy)
    index.py    the index loaded: search a query, read a passage by row
    ranking.py  the order of results (score, then seed id) and the distractors drawn
    stage.py    what a retrieving stage does to an item before its prompt is rendered

Nothing is imported here: bm25s (and scipy, when installed) load only for a run that
retrieves.
"""
