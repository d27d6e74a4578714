"""`SeedSource`: the configured inputs as a lazy, re-iterable stream of clean, chunked,
deduplicated seeds with stable ids.

Memory does not grow with the input except for the duplicate filter (`DigestSet`, a few
bytes per distinct chunk, off the heap) and the capped problem list; everything else is one document
(or one streamed paragraph) at a time."""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Iterator

from gristmill.dataset.digest_set import DigestSet
from gristmill.errors import ConfigError
from gristmill.flows.items import seed_id
from gristmill.scheduling.tokens import Counter as TokenCounter
from gristmill.scheduling.tokens import estimate_tokens

from gristmill.seeds.chunk import REFINE, chunk_units
from gristmill.config.seeds import SeedsConfig
from gristmill.seeds.files import check_paths, plan_inputs
from gristmill.seeds.readers import Doc, read_docs
from gristmill.seeds.report import Seed, SeedReport


def _content(doc: Doc, text: str) -> str:
    """What a seed is judged and named by (min_chars, dedup, id): its text, and for a page
    its element view too, so two forms with the same prose are two seeds."""
    return f"{text}\n\n{doc.view}" if doc.view else text


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
            for doc in read_docs(file, self.config, report, self.count):
                index = -1
                for index, text in enumerate(self._chunks(doc, report)):
                    content = _content(doc, text)
                    if len(content) < min_chars:  # >=: a chunk of exactly min_chars is kept
                        report.drop("too_short")
                    elif seen is not None and not seen.add(content):
                        report.drop("duplicate")
                    else:
                        report.seeds += 1
                        yield self._seed(doc, index, text, content)
                if index < 0 and doc.record:
                    report.drop("empty")
                elif index < 0:
                    report.problem(doc.source, "empty", "no text left after cleaning")

    @staticmethod
    def _seed(doc: Doc, index: int, text: str, content: str) -> Seed:
        # The chunk index is part of the identity: equal text at two places of one file
        # gets two ids (when dedup is off), and the root folder is not (moving it keeps ids).
        return Seed(seed_id(f"{doc.key}#{index}", content), text, doc.source, doc.kind,
                    doc.language, doc.title, doc.extra)

    def _chunks(self, doc: Doc, report: SeedReport) -> Iterable[str]:
        parts, max_tokens = doc.parts, self.config.chunk.max_tokens
        if doc.kind == "table":
            return [text for _, text in parts]  # cut by rows already, never split further
        if doc.view and type(parts) is list and not parts:
            return ("",)  # a page of forms and links without prose: its elements are the seed
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
