"""`SeedSource`: the configured inputs as a lazy, re-iterable stream of clean, chunked,
deduplicated seeds with stable ids.

Memory does not grow with the input except for the duplicate filter (`DigestSet`, ~16
bytes per distinct chunk) and the capped problem list; everything else is one document
(or one streamed paragraph) at a time."""

from __future__ import annotations

import hashlib
from array import array
from collections import Counter
from typing import Iterable, Iterator

from engine.errors import ConfigError
from engine.items import seed_id
from engine.tokens import Counter as TokenCounter
from engine.tokens import estimate_tokens

from .chunk import REFINE, chunk_units
from .config import SeedsConfig
from .files import check_paths, plan_inputs
from .readers import Doc, read_docs
from .report import Seed, SeedReport


_INITIAL_SLOTS = 1 << 10


def digest64(text: str) -> int:
    value = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    return value or 1  # 0 marks an empty slot


class DigestSet:
    """Exact-duplicate detection with a compact set of 8-byte content digests.

    A Python `set` of digests costs ~70-90 bytes per entry (an object per digest plus the
    table), which is 70-90 MB per million seeds. `DigestSet` stores the raw 64-bit digests in
    an open-addressed `array('Q')` kept between 1/3 and 2/3 full: 12-24 bytes per distinct
    chunk (measured: 16 MiB, 16.8 bytes each, at 1,000,000 chunks), and a resize briefly
    holds old and new tables (3x the old one). A false "duplicate" needs a 64-bit collision:
    about n^2 / 2^65, i.e. 3e-8 at a million chunks and 3% at a billion."""

    def __init__(self) -> None:
        self._table = array("Q", [0]) * _INITIAL_SLOTS
        self._mask = _INITIAL_SLOTS - 1
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        return self._table.itemsize * len(self._table)

    def add(self, text: str) -> bool:
        """Record `text`; False if it was seen before."""
        return self.add_digest(digest64(text))

    def add_digest(self, value: int) -> bool:
        table, mask = self._table, self._mask
        i = value & mask
        while True:
            slot = table[i]
            if slot == 0:
                break
            if slot == value:
                return False
            i = (i + 1) & mask  # linear probing: good locality; digests are uniform
        table[i] = value
        self._size += 1
        if 3 * self._size > 2 * len(table):
            self._grow()
        return True

    def _grow(self) -> None:
        old = self._table
        self._table = array("Q", [0]) * (2 * len(old))  # no temporary bytes copy
        self._mask = len(self._table) - 1
        self._size = 0
        for value in old:
            if value:
                self._insert_new(value)

    def _insert_new(self, value: int) -> None:
        table, mask = self._table, self._mask
        i = value & mask
        while table[i]:
            i = (i + 1) & mask
        table[i] = value
        self._size += 1


class SeedSource:
    """Iterate it for seeds (again for a fresh pass); `report` accounts for the last pass."""

    def __init__(self, config: SeedsConfig, count: TokenCounter = estimate_tokens) -> None:
        self.config = config
        self.count = count  # the rate limiter's counter, so chunk sizes mean the same tokens
        self.report = SeedReport()

    @property
    def skipped(self) -> Counter[str]:
        """Counts by reason (the name `engine.sources.SeedSource` used)."""
        return self.report.counts

    def count_files(self) -> int | None:
        """Input files to read (a directory walk, no file is opened): a unit for an ETA."""
        try:
            check_paths(self.config)
        except ConfigError:
            return None
        return sum(1 for _ in plan_inputs(self.config))

    def __iter__(self) -> Iterator[Seed]:
        check_paths(self.config)  # a missing path is a config error, not broken input
        report = self.report = SeedReport()
        seen = DigestSet() if self.config.dedup else None
        min_chars = self.config.min_chars
        for file in plan_inputs(self.config, report):
            report.files += 1
            for doc in read_docs(file, self.config, report):
                index = -1
                for index, text in enumerate(self._chunks(doc, report)):
                    if len(text) < min_chars:  # >=: a chunk of exactly min_chars is kept
                        report.drop("too_short")
                    elif seen is not None and not seen.add(text):
                        report.drop("duplicate")
                    else:
                        report.seeds += 1
                        yield self._seed(doc, index, text)
                if index < 0 and doc.record:
                    report.drop("empty")
                elif index < 0:
                    report.problem(doc.source, "empty", "no text left after cleaning")

    @staticmethod
    def _seed(doc: Doc, index: int, text: str) -> Seed:
        # The chunk index is part of the identity: equal text at two places of one file
        # gets two ids (when dedup is off), and the root folder is not (moving it keeps ids).
        return Seed(seed_id(f"{doc.key}#{index}", text), text, doc.source, doc.kind,
                    doc.language, doc.title)

    def _chunks(self, doc: Doc, report: SeedReport) -> Iterable[str]:
        parts, max_tokens = doc.parts, self.config.chunk.max_tokens
        if type(parts) is list and len(parts) == 1 and self.count(parts[0][1]) <= max_tokens:
            return (parts[0][1],)  # a short record: skip the packer
        return self._packed(doc, report)

    def _packed(self, doc: Doc, report: SeedReport) -> Iterator[str]:
        chunk = self.config.chunk
        try:
            yield from chunk_units(doc.parts, REFINE[doc.kind], chunk.max_tokens,
                                   chunk.overlap_tokens, self.count)
        except (OSError, UnicodeDecodeError) as exc:  # a streamed file changed under us
            report.problem(doc.source, "unreadable", str(exc))
