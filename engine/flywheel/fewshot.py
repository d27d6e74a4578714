"""Few-shot examples for the judge, retrieved per record from human labels.

The score of an example for a record is the Jaccard similarity of their word sets
(instruction + answer, lower-cased words of two letters or more), plus a bonus when the judge
got that example wrong (a past judge-human disagreement: the lesson the judge most needs), plus
a bonus for recent labels (preferences drift), falling linearly from the newest label to the
oldest. The record's own label is never shown to it. The k best, ties by record id, are
returned least similar first, so the closest example sits right before the record."""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

WORD = re.compile(r"[a-z0-9]{2,}")


def words(text: str) -> frozenset[str]:
    return frozenset(WORD.findall(text.lower()))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 0.0
    return len(a & b) / len(a | b)


@dataclass(frozen=True)
class Example:
    record_id: str
    instruction: str
    answer: str
    passed: bool
    critique: str = ""
    criterion: str = ""
    labeled_at: float = 0.0
    disagreed: bool = False
    words: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    @classmethod
    def make(cls, **values: Any) -> "Example":
        text = f"{values.get('instruction', '')}\n{values.get('answer', '')}"
        return cls(**values, words=words(text))

    def as_config(self) -> dict[str, Any]:
        return {"record_id": self.record_id, "instruction": self.instruction,
                "answer": self.answer, "passed": self.passed, "critique": self.critique,
                "criterion": self.criterion, "labeled_at": self.labeled_at,
                "disagreed": self.disagreed}


class Retriever:
    """The pool of examples, ranked per record. Build once; `select` is cheap per record
    (one set intersection per example)."""

    def __init__(self, pool: Iterable[Example], k: int, disagreement_bonus: float = 0.3,
                 recency_bonus: float = 0.2) -> None:
        self.pool = sorted(pool, key=lambda e: (e.labeled_at, e.record_id))
        self.k = k
        self.disagreement_bonus = disagreement_bonus
        n = len(self.pool)
        # recency by rank (oldest 0, newest 1): robust to bursts of labels at one moment
        self._recency = [recency_bonus * (i / (n - 1) if n > 1 else 1.0) for i in range(n)]

    def score(self, index: int, query: frozenset[str]) -> float:
        ex = self.pool[index]
        return (jaccard(query, ex.words) + (self.disagreement_bonus if ex.disagreed else 0.0)
                + self._recency[index])

    def select(self, record_id: str, instruction: str, answer: str) -> list[Example]:
        if self.k == 0 or not self.pool:
            return []
        query = words(f"{instruction}\n{answer}")
        ranked = heapq.nsmallest(self.k, ((-self.score(i, query), ex.record_id, i)
                                          for i, ex in enumerate(self.pool)
                                          if ex.record_id != record_id))
        best = [self.pool[i] for _, _, i in ranked]
        return best[::-1]


def cut(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"
