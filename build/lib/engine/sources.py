"""Seed sources: lazy readers that yield one seed at a time, so memory never depends on
the input's size. A malformed seed is counted, logged with its reason and skipped."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import orjson

from .config import SeedsConfig
from .errors import ConfigError
from .items import seed_id

log = logging.getLogger("gristmill.seeds")
TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst"}


@dataclass(slots=True)
class Seed:
    id: str
    text: str
    source: str  # "path" or "path:line"


@dataclass
class SeedSource:
    config: SeedsConfig
    skipped: Counter[str] = field(default_factory=Counter)

    def __iter__(self) -> Iterator[Seed]:
        path = self.config.path
        if not path.exists():
            raise ConfigError(f"seeds.path: {path} does not exist")
        fmt = self.config.format
        if fmt == "auto":
            fmt = "jsonl" if path.suffix in (".jsonl", ".ndjson") else "text"
        reader = self._jsonl(path) if fmt == "jsonl" else self._text(path)
        for seed in reader:
            if len(seed.text) < self.config.min_chars:
                self._skip(seed.source, "too_short", f"{len(seed.text)} < min_chars "
                           f"{self.config.min_chars}")
                continue
            yield seed

    def _skip(self, where: str, reason: str, detail: str) -> None:
        self.skipped[reason] += 1
        log.warning("seed skipped: %s: %s (%s)", where, reason, detail)

    def _text(self, path: Path) -> Iterator[Seed]:
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES) \
            if path.is_dir() else [path]
        for file in files:
            try:
                text = file.read_text(encoding="utf-8").strip()
            except (UnicodeDecodeError, OSError) as exc:
                self._skip(str(file), "unreadable", str(exc))
                continue
            yield Seed(seed_id(str(file.name), text), text, str(file))

    def _jsonl(self, path: Path) -> Iterator[Seed]:
        key = self.config.field
        with path.open("rb") as fh:
            for number, line in enumerate(fh, 1):
                where = f"{path}:{number}"
                if not line.strip():
                    continue
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    self._skip(where, "bad_json", str(exc))
                    continue
                text = row.get(key) if isinstance(row, dict) else None
                if not isinstance(text, str):
                    self._skip(where, "missing_field", f"no string field {key!r}")
                    continue
                yield Seed(seed_id(path.name, text), text, where)
