"""Final validators of text that should not have come through into an answer.

placeholders        leftover template artefacts: [Insert ...], {{ var }}, lorem ipsum...
restates_question   the answer repeats the question instead of answering it
"""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field, field_validator

from gristmill.validation.base import CODE_SPANS, Context, Params, Rejection, check_regexes, quote
from gristmill.validation.final import parse_json, strings_in


# -- placeholders -------------------------------------------------------------------------
PLACEHOLDER_PATTERNS = (
    r"\[(?:insert|enter|add|your|placeholder|name of|fill in)\b[^\]\n]{0,80}\]",
    r"\{\{[^{}\n]{0,80}\}\}",  # an unrendered {{ variable }}
    r"\{%[^\n]{0,80}?%\}",  # an unrendered {% tag %}
    r"<\s*placeholder\b[^>\n]{0,80}>",
    r"\bas an ai language model\b",
    r"\blorem ipsum\b",
    r"(?-i:\bTODO:)",
)


# A pattern that is a word-bounded literal ("\bas an ai\b"; case-sensitive in (?-i:...)):
# it cannot match a text that lacks the literal, which `in` tells far faster than the regex.
_LITERAL = re.compile(r"(?P<open>\(\?-i:)?\\b(?P<lit>[A-Za-z0-9 :]+)(?:\\b)?(?(open)\))")


class LeftmostSearch:
    """`re.compile("|".join(patterns), re.IGNORECASE).search` with the same match, faster:
    each pattern is searched alone (so one that starts with a literal is scanned for by
    the regex engine's prefix search, which an alternation defeats), a word-bounded literal
    pattern is skipped when its literal is absent (in ASCII text, where ignoring case means
    ASCII case), and the leftmost match wins, the earlier pattern on a tie, as in the
    alternation."""

    def __init__(self, patterns: tuple[str, ...] | list[str]) -> None:
        self.parts: list[tuple[int, re.Pattern[str], str | None, bool]] = []
        for index, pattern in enumerate(patterns):
            literal = _LITERAL.fullmatch(pattern)
            cased = bool(literal and literal["open"])
            text = literal["lit"] if cased else literal["lit"].lower() if literal else None
            self.parts.append((index, re.compile(pattern, re.IGNORECASE), text, cased))

    def search(self, text: str) -> re.Match[str] | None:
        ascii_lower = text.lower() if text.isascii() else None
        best: tuple[int, int, re.Match[str]] | None = None
        for index, regex, literal, cased in self.parts:
            if literal is not None:
                if cased and literal not in text:
                    continue
                if not cased and ascii_lower is not None and literal not in ascii_lower:
                    continue
            match = regex.search(text)
            if match is not None and (best is None or (match.start(), index) < best[:2]):
                best = (match.start(), index, match)
        return best[2] if best is not None else None


class Placeholders:
    """Leftover placeholders and template artefacts. Code spans (``` blocks, `inline`) are
    not searched, so an answer about Jinja may show {{ var }}; in structured answers only
    the string values are searched (JSON braces are not template braces)."""

    name: ClassVar[str] = "placeholders"
    kind: ClassVar[str] = "final"

    class Params(Params):
        patterns: list[str] = Field(default_factory=lambda: list(PLACEHOLDER_PATTERNS),
                                    description="Regexes (case-insensitive) replacing the "
                                    "built-in ones.")
        extra_patterns: list[str] = Field(default_factory=list, description="Regexes added.")

        @field_validator("patterns", "extra_patterns")
        @classmethod
        def _compiles(cls, patterns: list[str]) -> list[str]:
            return check_regexes(patterns)

    def __init__(self, params: "Placeholders.Params") -> None:
        patterns = (*params.patterns, *params.extra_patterns)
        self.regex = LeftmostSearch(patterns) if patterns else None

    def check(self, text: str, context: Context) -> Rejection | None:
        if self.regex is None:
            return None
        if context.structured:
            value, problem = parse_json(text)
            texts = list(strings_in(value)) if problem is None else []
        else:
            texts = [CODE_SPANS.sub(" ", text)]
        for chunk in texts:
            if (match := self.regex.search(chunk)) is not None:
                return Rejection("placeholders", f"leftover placeholder {quote(match.group())} "
                                 f"in {quote(chunk[max(0, match.start() - 30):match.end() + 30])}")
        return None


# -- restates_question --------------------------------------------------------------------
_WORDS = re.compile(r"\w+")


# ASCII bytes outside \w, mapped to spaces: then split() finds the \w+ runs.
_ASCII_NON_WORD = bytes(i if i >= 128 or _WORDS.match(chr(i)) else 32 for i in range(256))


def _words(text: str) -> list[str]:
    if text.isascii():  # the same words, by a bytes table (C speed) instead of the regex
        return text.lower().encode().translate(_ASCII_NON_WORD).decode().split()
    return _WORDS.findall(text.casefold())


class RestatesQuestion:
    """The answer restates the question (`context.prompt`, which the stage sets to what its
    output answers; empty for stages whose output is not an answer): the same words, or `max_overlap` of the answer's distinct words taken from the
    question (answers of `min_words` words or more), or an opening that copies `copy_words`
    consecutive words of the question. Meant for answer stages: give `prompt` = the
    instruction, not a prompt that embeds a source document."""

    name: ClassVar[str] = "restates_question"
    kind: ClassVar[str] = "final"

    class Params(Params):
        max_overlap: float = Field(0.9, gt=0, le=1, description="Share of the answer's "
                                   "distinct words found in the question that rejects.")
        min_words: int = Field(5, ge=1, description="Shorter answers are only checked for "
                               "being the question itself.")
        copy_words: int = Field(20, ge=3, description="Consecutive question words at the "
                                "start of the answer that reject.")

    def __init__(self, params: "RestatesQuestion.Params") -> None:
        self.p = params

    def check(self, text: str, context: Context) -> Rejection | None:
        question = _words(context.prompt)
        if not question or self._cannot_restate(text, question):
            return None
        answer = _words(text)
        if answer and (reason := self._restates(answer, question)) is not None:
            return Rejection("restates_question", f"{reason}: {quote(text)}")
        return None

    def _cannot_restate(self, text: str, question: list[str]) -> bool:
        """True when the opening of the answer already rules every test out, so the whole
        answer need not be split into words: it has more words than the question, more
        distinct words than the overlap allows (the question's distinct words over
        `max_overlap`), and no copied opening."""
        distinct_question, n = len(set(question)), self.p.copy_words
        head = text[: 16 * (distinct_question + n)]
        words = _words(head)
        if len(head) < len(text):
            words = words[:-1]  # the last word may be cut
        if len(words) <= len(question) or len(set(words)) * self.p.max_overlap \
                <= distinct_question + 1:  # a margin of one word against rounding
            return False
        return len(question) < n or (len(words) >= n and not self._copies(words[:n], question))

    def _copies(self, opening: list[str], question: list[str]) -> bool:
        n = self.p.copy_words
        return len(opening) >= n and any(question[i:i + n] == opening
                                         for i in range(len(question) - n + 1))

    def _restates(self, answer: list[str], question: list[str]) -> str | None:
        if not question:
            return None
        if answer == question:
            return "the answer is the question"
        distinct = set(answer)
        if len(answer) >= self.p.min_words:
            share = len(distinct & set(question)) / len(distinct)
            if share >= self.p.max_overlap:
                return (f"the answer restates the question ({share:.0%} of its words are "
                        "the question's)")
        n = self.p.copy_words
        if len(question) >= n and self._copies(answer[:n], question):
            return f"the answer opens by copying {n} words of the question"
        return None
