"""Seed collection: read raw documents (prose folders, code trees, JSONL, Parquet, local
Hugging Face datasets), clean them, cut them into token-bounded chunks, drop exact
duplicates and yield `Seed`s with stable ids. Broken input is counted in a `SeedReport`
and skipped; it never stops a run."""

from gristmill.config.seeds import ChunkConfig, CodeConfig, SeedsConfig
from gristmill.seeds.report import Seed, SeedReport
from gristmill.seeds.source import SeedSource

__all__ = ["ChunkConfig", "CodeConfig", "Seed", "SeedReport", "SeedSource", "SeedsConfig"]
