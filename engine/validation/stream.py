"""Streaming validators: refusal openings, runaway length, forbidden patterns (repetition
loops are in `repetition`).

Each check keeps a little state and looks only at the new text plus a bounded tail, and its
verdict does not depend on how the stream was chunked: a decision that needs context ahead
(a pattern at the end of what has arrived) waits for that context or for the end.
"""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from gristmill.validation.base import (PASS, QUOTE_CHARS, Check, Context, Params, Rejection,
                                       StreamCheck, alternation, check_regexes,
                                       quote)

# -- refusal ------------------------------------------------------------------------------
REFUSAL_PATTERNS = (
    r"i['’]?m (?:very |so |really |truly )?sorry",
    r"i am (?:very |so |really |truly )?sorry",
    r"sorry,? (?:but )?i\b",
    r"(?:my )?apologies",
    r"i apologi[sz]e",
    r"i (?:cannot|can ?not|can['’]t|won['’]t|will not) (?:help|assist|provide|do|comply|"
    r"fulfil|create|write|answer|generate|support|complete)",
    r"i (?:am|['’]m) (?:unable|not able) to",
    r"i must (?:respectfully )?decline",
    r"as an ai\b",
    r"unfortunately,? i (?:cannot|can ?not|can['’]t|am unable|['’]m unable|am not able)",
    r"i (?:do not|don['’]t) feel comfortable",
)
# Every built-in pattern contains one of these (lowered): a head without any cannot match
# them, which `in` tells far faster than the regex (only used with the built-in patterns, on
# ASCII text only, so "can['’]t" needs only "can't").
REFUSAL_KEYWORDS = ("sorry", "apolog", "cannot", "can not", "can't", "won't", "will not",
                    "unable", "not able", "decline", "as an ai", "unfortunately", "comfortable")
# A refusal opens the answer or one of its first sentences; markdown may precede it, an
# opening quote may not (a story that opens with "I'm sorry," she said).
_SENTENCE_START = r"(?:^|[.!?:\n])[\s*_>#-]*"


class Refusal:
    """An answer that opens with a refusal or an apology: a pattern at the start of the text
    or of a sentence that begins within the first `window` characters. The verdict is taken
    once `window + lookahead` characters have arrived (or at the end), so it is the same
    however the text was chunked."""

    name: ClassVar[str] = "refusal"
    kind: ClassVar[str] = "stream"

    class Params(Params):
        window: int = Field(200, ge=1, le=10_000, description="Opening characters in which a "
                            "refusal must start.")
        lookahead: int = Field(80, ge=1, le=10_000, description="Characters past the window "
                               "that a match may extend into.")
        patterns: list[str] = Field(default_factory=lambda: list(REFUSAL_PATTERNS),
                                    description="Regexes (case-insensitive) replacing the "
                                    "built-in refusal phrases.")
        extra_patterns: list[str] = Field(default_factory=list, description="Regexes added "
                                          "to `patterns`.")

        @field_validator("patterns", "extra_patterns")
        @classmethod
        def _compiles(cls, patterns: list[str]) -> list[str]:
            return check_regexes(patterns)

    def __init__(self, params: "Refusal.Params") -> None:
        self.params = params
        phrases = alternation((*params.patterns, *params.extra_patterns))
        self.regex = re.compile(f"{_SENTENCE_START}(?P<refusal>{phrases})", re.IGNORECASE)
        self.cap = params.window + params.lookahead
        self.keywords = (REFUSAL_KEYWORDS if tuple(params.patterns) == REFUSAL_PATTERNS
                         and not params.extra_patterns else None)

    def may_match(self, head: str) -> bool:
        """False when the regex cannot match `head`: the built-in patterns, none of their
        keywords. Lowering keeps ASCII text aligned with the regex's ASCII case folding;
        other text always goes to the regex."""
        if self.keywords is None or not head.isascii():
            return True
        lowered = head.lower()
        return any(k in lowered for k in self.keywords)

    def start(self, context: Context) -> StreamCheck:
        return _RefusalCheck(self) if self.params.patterns or self.params.extra_patterns else PASS


class _RefusalCheck(Check):
    __slots__ = ("v", "head", "decided")
    settles = True

    def __init__(self, validator: Refusal) -> None:
        super().__init__()
        self.v, self.head, self.decided = validator, "", False

    def _feed(self, new_text: str) -> Rejection | None:
        if self.decided:
            return None
        self.head += new_text[: self.v.cap - len(self.head)]
        return self._decide() if len(self.head) >= self.v.cap else None

    def _finish(self) -> Rejection | None:
        return None if self.decided else self._decide()

    def _decide(self) -> Rejection | None:
        self.decided = self.settled = True  # a rejection stands anyway
        if not self.v.may_match(self.head):
            return None
        for match in self.v.regex.finditer(self.head):
            if match.start("refusal") >= self.v.params.window:
                break
            start = match.start("refusal")
            return Rejection("refusal", "opens with a refusal: "
                             + quote(self.head[start:start + 2 * QUOTE_CHARS]))
        return None


# -- max_length ---------------------------------------------------------------------------
class MaxLength:
    """A runaway answer: more than `max_chars` characters or `max_tokens` estimated tokens
    (4 characters per token, as `gristmill.scheduling.tokens.estimate_tokens`)."""

    name: ClassVar[str] = "max_length"
    kind: ClassVar[str] = "stream"

    class Params(Params):
        max_chars: int | None = Field(None, ge=1, description="Most characters of an answer.")
        max_tokens: int | None = Field(None, ge=1, description="Most estimated tokens.")

        @model_validator(mode="after")
        def _one(self) -> "MaxLength.Params":
            if self.max_chars is None and self.max_tokens is None:
                raise ValueError("give max_chars and/or max_tokens")
            return self

    def __init__(self, params: "MaxLength.Params") -> None:
        chars = params.max_chars if params.max_chars is not None else float("inf")
        tokens = params.max_tokens * 4 if params.max_tokens is not None else float("inf")
        self.limit = min(chars, tokens)  # estimate_tokens(n) > T exactly when n > 4 * T
        self.reason = (f"runaway length: more than {params.max_chars} characters"
                       if chars <= tokens else
                       f"runaway length: more than {params.max_tokens} tokens (estimated)")

    def start(self, context: Context) -> StreamCheck:
        return _MaxLengthCheck(self)


class _MaxLengthCheck(Check):
    __slots__ = ("v", "chars")

    def __init__(self, validator: MaxLength) -> None:
        super().__init__()
        self.v, self.chars = validator, 0

    def feed(self, new_text: str) -> Rejection | None:
        """`Check.feed` in one call: this one is made for every piece of every answer."""
        self.chars += len(new_text)
        if self.verdict is None and self.chars > self.v.limit:
            self.verdict = Rejection("max_length", self.v.reason)
        return self.verdict


# -- forbidden ----------------------------------------------------------------------------
class Forbidden:
    """Regexes that must not match anywhere. Each feed searches the new text plus the last
    `max_match_chars` characters, so a match across chunk boundaries is found (matches longer
    than that may be missed). A match touching the end of what has arrived waits for one more
    character, so `\\b` and short look-aheads see the same text as on the whole answer."""

    name: ClassVar[str] = "forbidden"
    kind: ClassVar[str] = "stream"

    class Params(Params):
        patterns: list[str] = Field(min_length=1, description="Regexes that reject an answer.")
        max_match_chars: int = Field(200, ge=1, le=100_000, description="Longest match "
                                     "guaranteed to be found across chunk boundaries.")
        ignore_case: bool = Field(True, description="Case-insensitive matching.")

        @field_validator("patterns")
        @classmethod
        def _compiles(cls, patterns: list[str]) -> list[str]:
            return check_regexes(patterns)

    def __init__(self, params: "Forbidden.Params") -> None:
        self.params = params
        flags = re.IGNORECASE if params.ignore_case else 0
        self.regex = re.compile(alternation(params.patterns), flags)

    def start(self, context: Context) -> StreamCheck:
        return _ForbiddenCheck(self)

    def rejection(self, match: re.Match[str]) -> Rejection:
        return Rejection(self.name, f"matches forbidden pattern: {quote(match.group())}")


class _ForbiddenCheck(Check):
    __slots__ = ("v", "tail")

    def __init__(self, validator: Forbidden) -> None:
        super().__init__()
        self.v, self.tail = validator, ""

    def _feed(self, new_text: str) -> Rejection | None:
        text = self.tail + new_text
        found = self._search(text, final=False)
        # Keep enough to re-find a match that ends at the edge, plus one char of context.
        self.tail = text[-(self.v.params.max_match_chars + 1):]
        return found

    def _finish(self) -> Rejection | None:
        return self._search(self.tail, final=True)

    def _search(self, text: str, final: bool) -> Rejection | None:
        for match in self.v.regex.finditer(text):
            if final or match.end() < len(text):
                return self.v.rejection(match)
        return None
