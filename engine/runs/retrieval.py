"""A run's retrieval index (`retrieval:` in its config), opened before its stages are built:
built over every seed of the input into RUN/retrieval/ by a fresh run; loaded by a resume
whose corpus and settings are unchanged (it reads the seeds once, for their digest) and
refused, like any answer-changing change, when they did change; loaded as is by a cluster's
shard from the index its driver built."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gristmill.config.pipeline import PipelineConfig
from gristmill.errors import ConfigError
from gristmill.seeds import SeedSource

if TYPE_CHECKING:
    from gristmill.retrieval.index import PassageIndex

log = logging.getLogger("gristmill.retrieval")
RETRIEVAL_DIR = "retrieval"


def open_index(config: PipelineConfig, run_dir: Path, source: SeedSource, *, resuming: bool,
               force: bool, built: Path | None = None) -> PassageIndex | None:
    """The run's index, or None without `retrieval:`. `built`: an index made elsewhere (a
    cluster's driver), loaded and not checked (its driver checked it)."""
    settings = config.retrieval
    if settings is None:
        return None
    from gristmill.retrieval.build import build_index, recorded  # bm25s: only when used
    from gristmill.retrieval.corpus import read_corpus
    from gristmill.retrieval.index import PassageIndex

    if built is not None:
        return PassageIndex(built)
    where = run_dir / RETRIEVAL_DIR
    before = recorded(where)
    if resuming and before is not None:
        corpus = read_corpus(source, settings, keep=False)
        if corpus.digest == before["digest"]:
            return PassageIndex(where)
        if not force:
            raise ConfigError(
                f"{run_dir} was started with a different retrieval corpus; resuming would "
                f"change answers. Changed: the seeds or the `retrieval` settings ({before['passages']:,} "
                f"passages indexed, {corpus.passages:,} now). Use the original seeds, a new "
                "--run-dir, or --force to rebuild the index and continue anyway.")
    started = time.monotonic()
    corpus = read_corpus(source, settings, keep=True)
    build_index(corpus, settings, where)
    log.info("retrieval: indexed %d passages in %.1f s", corpus.passages,
             time.monotonic() - started)
    return PassageIndex(where)
