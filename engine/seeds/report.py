"""What a seed is, and the account of what was dropped on the way and why."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger("gristmill.seeds")

MAX_PROBLEMS = 1000

# Deliberate filters: counted (and listed, for file-level ones) but not warned about.
FILTERS = frozenset({"too_short", "duplicate", "too_large", "minified", "ignored"})


@dataclass(slots=True)
class Seed:
    id: str
    text: str
    # "path", "path:line" (JSONL; a table chunk's first row) or "path#row" (Parquet, datasets)
    source: str
    kind: Literal["prose", "code", "html", "table"] = "prose"
    language: str | None = None  # for code, e.g. "python"
    title: str | None = None  # the file name for file documents
    # html: {"title", "elements", "elements_text"}; table: {"table": {"columns", "rows", ...}}
    extra: dict[str, Any] | None = None

    def template_values(self) -> dict[str, Any]:
        """What every template sees of its seed (flows' first items, the dry run): `seed`,
        `kind`, `language`, and the structured forms, empty for seeds without them, so one
        template serves a mix of kinds: `elements` (the element view, one line each),
        `element_ids`, `page_title`, `table` ({columns, rows, ...} or None)."""
        extra = self.extra or {}
        return {"seed": self.text, "kind": self.kind, "language": self.language,
                "elements": extra.get("elements_text", ""),
                "element_ids": [e["id"] for e in extra.get("elements", ())],
                "page_title": extra.get("title", ""), "table": extra.get("table")}


@dataclass
class SeedReport:
    """Counts by reason of everything not turned into a seed, plus the first
    `max_problems` (path, reason, detail) entries so a user can find the bad input."""

    counts: Counter[str] = field(default_factory=Counter)
    problems: list[tuple[str, str, str]] = field(default_factory=list)
    seeds: int = 0
    files: int = 0
    problem_total: int = 0  # including those past the cap
    max_problems: int = MAX_PROBLEMS

    def problem(self, where: str, reason: str, detail: str = "") -> None:
        """Broken or filtered input at `where`: counted; listed and logged up to the cap."""
        self.counts[reason] += 1
        self.problem_total += 1
        detail = " ".join(detail.split())  # library messages can span lines
        if len(self.problems) >= self.max_problems:
            if self.problem_total == self.max_problems + 1:  # say so once, then count only
                log.warning("more than %d seed input problems; further ones are counted "
                            "in the report but not logged", self.max_problems)
            return
        self.problems.append((where, reason, detail))
        level = logging.INFO if reason in FILTERS else logging.WARNING
        log.log(level, "seed input skipped: %s: %s%s", where, reason,
                f" ({detail})" if detail else "")

    def drop(self, reason: str) -> None:
        """A routine filter (too_short, duplicate, ignored file, empty record or empty
        code file): counted only, as these can number in the millions."""
        self.counts[reason] += 1

    def summary(self) -> dict[str, Any]:
        return {
            "seeds": self.seeds,
            "files": self.files,
            "skipped": dict(sorted(self.counts.items())),
            "problems": self.problem_total,
            "problems_listed": len(self.problems),
        }
