"""Word statistics for a text: counts, the most common words, and sentence lengths."""

import re
from collections import Counter

WORD = re.compile(r"[A-Za-z']+")
SENTENCE_END = re.compile(r"[.!?]+\s+")


def words(text: str) -> list[str]:
    return [w.lower() for w in WORD.findall(text)]


def top_words(text: str, n: int = 5, stop: frozenset[str] = frozenset({"the", "a", "and", "of"})) -> list[tuple[str, int]]:
    counts = Counter(w for w in words(text) if w not in stop)
    return counts.most_common(n)


def sentence_lengths(text: str) -> list[int]:
    sentences = [s for s in SENTENCE_END.split(text.strip()) if s]
    return [len(words(s)) for s in sentences]


def readability(text: str) -> float:
    """Average words per sentence: a rough measure of how hard a text is to read."""
    lengths = sentence_lengths(text)
    return sum(lengths) / len(lengths) if lengths else 0.0
