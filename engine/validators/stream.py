"""Streaming validators: refusal openings, runaway length, forbidden patterns, repetition loops.

Each check keeps a little state and looks only at the new text plus a bounded tail, and its
verdict does not depend on how the stream was chunked: a decision that needs context ahead
(a pattern at the end of what has arrived) waits for that context or for the end.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from itertools import compress, repeat
from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from .base import (PASS, QUOTE_CHARS, Check, Context, Params, Rejection, StreamCheck,
                   check_regexes, quote)

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
        phrases = "|".join(f"(?:{p})" for p in (*params.patterns, *params.extra_patterns))
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
    (4 characters per token, as `engine.tokens.estimate_tokens`)."""

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
        self.regex = re.compile("|".join(f"(?:{p})" for p in params.patterns), flags)

    def start(self, context: Context) -> StreamCheck:
        return _ForbiddenCheck(self)


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
                return Rejection("forbidden", f"matches forbidden pattern: {quote(match.group())}")
        return None


# -- repetition ---------------------------------------------------------------------------
class Repetition:
    """A repetition loop: the same line `max_line_repeats` times among the last `line_window`
    lines, or the same word n-gram `max_ngram_repeats` times among the last `window_words`
    n-grams. Memory is bounded by the windows. Lines shorter than `min_line_chars` (braces,
    separators, blank lines) and lines inside ``` code blocks are not counted, nor are
    words without a letter or digit. Structured (JSON) answers are skipped unless
    `structured` is set: the keys and enum values of a list of objects repeat by design
    (a looping JSON answer still ends at max_length, or cut and rejected by the schema)."""

    name: ClassVar[str] = "repetition"
    kind: ClassVar[str] = "stream"

    class Params(Params):
        max_line_repeats: int = Field(4, ge=2, description="Copies of a line that reject.")
        line_window: int = Field(20, ge=2, le=10_000, description="Recent lines compared.")
        min_line_chars: int = Field(20, ge=1, description="Shorter lines are not counted.")
        ngram: int = Field(8, ge=2, le=100, description="Words per n-gram.")
        max_ngram_repeats: int = Field(4, ge=2, description="Copies of an n-gram that reject.")
        window_words: int = Field(400, ge=10, le=1_000_000, description="Recent n-grams "
                                  "compared.")
        structured: bool = Field(False, description="Also check structured (JSON) answers.")

    MAX_LINE = 1000  # a line is identified by its first 1000 characters
    MAX_WORD = 100

    def __init__(self, params: "Repetition.Params") -> None:
        self.params = params

    def start(self, context: Context) -> StreamCheck:
        if context.structured and not self.params.structured:
            return PASS
        return _RepetitionCheck(self.params)


_HAS_WORD_CHAR = re.compile(r"\w")
_WORD = re.compile(r"\S+")  # the words of str.split(): both split at str.isspace()
# An ASCII word without a letter, digit or underscore is made of these only.
_ASCII_NON_WORD = "".join(c for c in map(chr, range(128))
                          if not c.isspace() and not re.match(r"\w", c))
_ASCII_NON_WORD_BYTES = _ASCII_NON_WORD.encode()
_SPACE_OR_X = bytes(32 if i == 32 else 120 for i in range(256))  # b" " stays, the rest b"x"
_LONG_WORD = b"x" * (Repetition.MAX_WORD + 1)
INF = float("inf")


def counted_words(tokens: list[str], ascii_only: bool) -> list[str]:
    """The tokens with a letter or digit, lowered and capped. ASCII tokens come lowered
    (the feed is lowered whole) and are tested at once, joined, with C-level byte calls:
    when deleting the non-word characters loses no token, all count (the common case),
    else each is stripped of them; a run of more than `MAX_WORD` non-spaces is a token to
    cap. Others are filtered by the regex."""
    if not tokens:
        return tokens
    cap = Repetition.MAX_WORD
    if not ascii_only:
        return [w[:cap].lower() for w in filter(_HAS_WORD_CHAR.search, tokens)]
    joined = " ".join(tokens).encode()
    # A token of non-word characters only leaves a doubled, leading or trailing space.
    left = joined.translate(None, _ASCII_NON_WORD_BYTES)
    if not left or left[0] == 32 or left[-1] == 32 or b"  " in left:
        tokens = list(compress(tokens, map(str.strip, tokens, repeat(_ASCII_NON_WORD))))
    if len(joined) > cap and _LONG_WORD in joined.translate(_SPACE_OR_X):
        return [w[:cap] for w in tokens]
    return tokens


class _RepetitionCheck(Check):
    """Per feed, the new words are found, filtered and lowered in one pass each (C-level
    split, filter and map), their n-grams built by zip and identified by their hash; a feed
    without a repeated n-gram is settled by C-level set operations (see `_count`). Positions
    are only worked out when a check rejects (the earlier of a line and an n-gram trigger is
    the verdict)."""

    __slots__ = ("p", "offset", "line", "in_code", "lines", "line_counts", "word", "recent",
                 "grams", "seen")

    def __init__(self, params: Repetition.Params) -> None:
        super().__init__()
        self.p, self.offset = params, 0  # offset: characters before the current feed
        self.line = ""  # the unfinished line (capped)
        self.in_code = False  # inside a ``` block
        self.lines: deque[str] = deque()
        self.line_counts: Counter[str] = Counter()
        self.word = ""  # the unfinished word (capped)
        self.recent: list[str] = []  # the last n - 1 counted words
        self.grams: list[int] = []  # hashes of the last `window_words` n-grams
        self.seen: set[int] = set()  # a superset of the window's n-grams

    def _feed(self, new_text: str) -> Rejection | None:
        if "\n" in new_text:
            lines = self._lines(new_text, False)
        else:  # the common case, a token inside a line
            if len(self.line) < Repetition.MAX_LINE:
                self.line = (self.line + new_text)[: Repetition.MAX_LINE]
            lines = (INF, 0), None
        words = self._words(new_text, False)
        self.offset += len(new_text)
        return (lines if lines[0] <= words[0] else words)[1]

    def _finish(self) -> Rejection | None:
        lines, words = self._lines("", True), self._words("", True)
        return (lines if lines[0] <= words[0] else words)[1]

    # Both scanners return (position of the first trigger, rejection); the earlier wins, so
    # the verdict is the one the whole text would give (lines win ties).
    def _lines(self, text: str, final: bool) -> tuple[tuple[float, int], Rejection | None]:
        """Lines end at a newline; the position of a completed line is that newline."""
        parts, cap = text.split("\n"), Repetition.MAX_LINE
        pos = self.offset
        for i, part in enumerate(parts if final else parts[:-1]):
            pos += len(part)
            line = (self.line + part if i == 0 else part)[:cap]
            if (rejection := self._add_line(line.strip())) is not None:
                return (pos, 0), rejection
            pos += 1
        if not final:
            self.line = (self.line + parts[0] if len(parts) == 1 else parts[-1])[:cap]
        return (INF, 0), None

    def _add_line(self, line: str) -> Rejection | None:
        if line.startswith("```"):
            self.in_code = not self.in_code
        if self.in_code or len(line) < self.p.min_line_chars:
            return None
        self.lines.append(line)
        self.line_counts[line] += 1
        if len(self.lines) > self.p.line_window:
            old = self.lines.popleft()
            self.line_counts[old] -= 1
        if self.line_counts[line] >= self.p.max_line_repeats:
            return Rejection("repetition", f"line repeated {self.line_counts[line]} times in "
                             f"the last {self.p.line_window} lines: {quote(line)}")
        return None

    def _words(self, text: str, final: bool) -> tuple[tuple[float, int], Rejection | None]:
        """Words end at whitespace; the position of a completed word is that whitespace."""
        carried = self.word  # the unfinished word of the last feed (lowered if ASCII)
        ascii_only = text.isascii() and carried.isascii()
        tokens = (text.lower() if ascii_only else text).split()  # ASCII lower() keeps lengths
        joined = bool(tokens) and not text[0].isspace()
        if carried:
            if joined:
                tokens[0] = carried + tokens[0]  # it continues
            else:
                tokens.insert(0, carried)  # whitespace (or the end) completes it
        self.word = ""
        if tokens and not final and not text[-1].isspace():
            self.word = tokens.pop()[: Repetition.MAX_WORD]  # may continue in the next feed
        words = counted_words(tokens, ascii_only)
        if not words:
            return (INF, 1), None
        n = self.p.ngram
        seq = self.recent + words
        self.recent = seq[-(n - 1):]
        if len(seq) < n:
            return (INF, 1), None
        grams = list(map(hash, zip(*[seq[i:] for i in range(n)])))
        found = self._count(grams)
        if found is None:
            return (INF, 1), None
        j, count = found
        last = j + n - 1 - (len(seq) - len(words))  # its last word, in `words`
        rejection = Rejection(
            "repetition", f"{n}-word sequence repeated {count} times in the last "
            f"{self.p.window_words} words: {quote(' '.join(seq[j:j + n]))}")
        return (self._word_ends(text, carried, joined)[last], 1), rejection

    def _count(self, grams: list[int]) -> tuple[int, int] | None:
        """Adds a feed's n-grams to the window; the first that reaches the limit within its
        window, with its count, or None. Reaching it takes a repeat (the limit is at least 2):
        an n-gram seen earlier (`seen` holds every n-gram of the window, and some that left
        it) or twice in this feed. Without one, C-level set operations settle the feed; the
        exact per-n-gram walk runs only with one: rarely outside a loop."""
        window, seen = self.grams, self.seen
        before = len(seen)
        seen.update(grams)  # early: if a trigger is found, the check is over anyway
        if len(seen) - before < len(grams) and (found := self._first_trigger(grams)):
            return found
        window.extend(grams)
        if (excess := len(window) - self.p.window_words) > 0:
            del window[:excess]
        if len(seen) > 4 * self.p.window_words:  # keep memory bounded by the window
            self.seen = set(window)
        return None

    def _first_trigger(self, grams: list[int]) -> tuple[int, int] | None:
        """The exact rule: each n-gram counted among the last `window_words` at its place.
        Only n-grams with enough copies in the window and feed together can reach the
        limit; those are counted at their place (C-level counts)."""
        limit, repeats = self.p.window_words, self.p.max_ngram_repeats
        combined = self.grams + grams  # the window's n-grams, then the feed's
        base, totals = len(self.grams), Counter(combined)
        for j, gram in enumerate(grams):
            if totals[gram] >= repeats:
                end = base + j + 1
                if (count := combined[max(0, end - limit):end].count(gram)) >= repeats:
                    return j, count
        return None

    def _word_ends(self, text: str, carried: str, joined: bool) -> list[int]:
        """Where each counted word of this feed ends, as `_words` split them (a carried word
        that whitespace completed ends where the feed starts)."""
        spans = [(m.group(), self.offset + m.end()) for m in _WORD.finditer(text)]
        if carried:
            if joined:
                spans[0] = (carried + spans[0][0], spans[0][1])
            else:
                spans.insert(0, (carried, self.offset))
        return [end for word, end in spans if _HAS_WORD_CHAR.search(word)]
