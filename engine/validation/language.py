"""The `language` streaming validator: an answer in the wrong language, by a cheap test.

Two signals over the opening of the answer (its first `min_chars` characters, so the verdict
is the same however the stream was chunked, and a wrong-language answer is stopped after a
few dozen tokens):

* script: the share of letters in the expected language's script (Latin for en/fr/de/es...,
  Cyrillic for ru, Han and kana for ja...). Languages not in the table skip this test.
* English stop words, for "en" and prose answers only: the share of words that are common
  function words ("the", "of", "and"...). English prose is full of them; German, French or
  Spanish written with Latin letters have few, and `min_stopword_rate` sits between the two.
  Code spans are left out, and structured
  (JSON) answers skip this test: lists of names are legitimately stop-word-free.

Answers shorter than `min_chars` are not judged.
"""

from __future__ import annotations

import bisect
import re
from typing import ClassVar

from pydantic import Field

from gristmill.validation.base import (CODE_SPANS, PASS, Check, Context, Params, Rejection,
                                       StreamCheck, quote)

# (first, last, script) code point ranges, sorted by first.
_RANGES = sorted([
    (0x41, 0x5A, "latin"), (0x61, 0x7A, "latin"), (0xAA, 0xAA, "latin"), (0xBA, 0xBA, "latin"),
    (0xC0, 0x24F, "latin"), (0x1E00, 0x1EFF, "latin"), (0x370, 0x3FF, "greek"),
    (0x1F00, 0x1FFF, "greek"), (0x400, 0x52F, "cyrillic"), (0x590, 0x5FF, "hebrew"),
    (0x600, 0x6FF, "arabic"), (0x750, 0x77F, "arabic"), (0xFB50, 0xFDFF, "arabic"),
    (0xFE70, 0xFEFF, "arabic"), (0x900, 0x97F, "devanagari"), (0xE00, 0xE7F, "thai"),
    (0x1100, 0x11FF, "hangul"), (0x3130, 0x318F, "hangul"), (0xAC00, 0xD7AF, "hangul"),
    (0x3040, 0x30FF, "kana"), (0x3400, 0x4DBF, "han"), (0x4E00, 0x9FFF, "han"),
    (0xF900, 0xFAFF, "han"), (0x20000, 0x2FFFF, "han"),
])
_STARTS = [r[0] for r in _RANGES]

_LATIN_LANGS = ("en fr de es it pt nl sv da no nb nn fi pl cs sk sl hr ro hu tr id ms vi ca "
                "eu gl et lv lt sq sw tl af ga cy is")
SCRIPTS: dict[str, frozenset[str]] = {
    **{lang: frozenset({"latin"}) for lang in _LATIN_LANGS.split()},
    **{lang: frozenset({"cyrillic"}) for lang in "ru uk bg sr mk be kk".split()},
    "el": frozenset({"greek"}), "he": frozenset({"hebrew"}),
    **{lang: frozenset({"arabic"}) for lang in "ar fa ur".split()},
    **{lang: frozenset({"devanagari"}) for lang in "hi mr ne".split()},
    "th": frozenset({"thai"}), "zh": frozenset({"han"}), "ja": frozenset({"han", "kana"}),
    "ko": frozenset({"hangul", "han"}),
}

ENGLISH_STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from
further had has have having he her here hers him his how i if in into is it its itself just
me more most my no nor not now of off on once only or other our ours out over own same she
should so some such than that the their them then there these they this those through to too
under until up very was we were what when where which while who whom why will with would you
your yours it's don't isn't can't won't i'm you're we're they're that's there's let's
""".split())

_ENGLISH_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")
# ASCII bytes that are not letters: deleted to count letters, or mapped to spaces to split
# a text without apostrophes into the words of `_ENGLISH_WORD` (C speed, not the regex's).
_ASCII_NON_LETTERS = bytes(i for i in range(128) if not chr(i).isalpha())
_ASCII_LETTERS_ONLY = bytes(i if i >= 128 or chr(i).isalpha() else 32 for i in range(256))


def script_of(char: str) -> str | None:
    code = ord(char)
    i = bisect.bisect_right(_STARTS, code) - 1
    if i >= 0 and code <= _RANGES[i][1]:
        return _RANGES[i][2]
    return None


def script_share(text: str, scripts: frozenset[str]) -> tuple[float, int]:
    """(share of letters in `scripts`, letter count)."""
    if text.isascii():  # ASCII letters are Latin
        count = len(text.encode().translate(None, _ASCII_NON_LETTERS))
        return (1.0 if "latin" in scripts or not count else 0.0), count
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 1.0, 0
    inside = sum(1 for c in letters if script_of(c) in scripts)
    return inside / len(letters), len(letters)


def stopword_rate(text: str) -> tuple[float, int]:
    """(share of words that are English stop words, word count), code spans left out."""
    if "`" in text:
        text = CODE_SPANS.sub(" ", text)
    if text.isascii() and "'" not in text:
        words = text.encode().translate(_ASCII_LETTERS_ONLY).decode().split()
    else:
        words = _ENGLISH_WORD.findall(text)
    if not words:
        return 0.0, 0
    lowered = map(str.lower, words)
    if not text.isascii():
        lowered = (w.replace("’", "'") for w in lowered)
    hits = sum(map(ENGLISH_STOPWORDS.__contains__, lowered))
    return hits / len(words), len(words)


class Language:
    """Wrong language, judged on the answer's opening `min_chars` characters: the share of
    letters in the expected script (English: Latin) and, for English prose, the share of
    English stop words (code spans left out; structured answers skip this test)."""

    name: ClassVar[str] = "language"
    kind: ClassVar[str] = "stream"

    class Params(Params):
        min_chars: int = Field(200, ge=20, le=100_000, description="Characters judged (the "
                               "opening of the answer); shorter answers are not judged.")
        min_script_share: float = Field(0.6, ge=0, le=1, description="Least share of letters "
                                        "in the expected script.")
        min_stopword_rate: float = Field(0.15, ge=0, le=1, description="Least share of "
                                         "English stop words among words (en prose only).")
        min_words: int = Field(20, ge=1, description="Fewer words (after code is left out) "
                               "skip the stop-word test.")

    def __init__(self, params: "Language.Params") -> None:
        self.params = params

    def start(self, context: Context) -> StreamCheck:
        language = (context.language or "").lower().split("-")[0]
        scripts = SCRIPTS.get(language)
        stopwords = language == "en" and not context.structured
        if scripts is None and not stopwords:
            return PASS
        return _LanguageCheck(self.params, language, scripts, stopwords)


class _LanguageCheck(Check):
    __slots__ = ("p", "language", "scripts", "stopwords", "head")
    settles = True

    def __init__(self, params: Language.Params, language: str,
                 scripts: frozenset[str] | None, stopwords: bool) -> None:
        super().__init__()
        self.p, self.language, self.scripts, self.stopwords = params, language, scripts, stopwords
        self.head = ""

    def _feed(self, new_text: str) -> Rejection | None:
        if len(self.head) >= self.p.min_chars:
            return None  # decided already
        self.head += new_text[: self.p.min_chars - len(self.head)]
        if len(self.head) < self.p.min_chars:
            return None
        self.settled = True  # a rejection stands anyway
        return self._decide()

    def _decide(self) -> Rejection | None:
        text = self.head
        if self.scripts is not None:
            share, letters = script_share(text, self.scripts)
            if letters and share < self.p.min_script_share:
                script = "/".join(sorted(self.scripts))
                return Rejection("language", f"wrong language: {share:.0%} of letters in "
                                 f"{script} script (expected {self.language!r}, need "
                                 f"{self.p.min_script_share:.0%}): {quote(text)}")
        if self.stopwords:
            rate, words = stopword_rate(text)
            if words >= self.p.min_words and rate < self.p.min_stopword_rate:
                return Rejection("language", f"wrong language: English stop words are {rate:.0%} "
                                 f"of {words} words (need {self.p.min_stopword_rate:.0%}): "
                                 f"{quote(text)}")
        return None
