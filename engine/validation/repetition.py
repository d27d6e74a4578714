"""The repetition-loop validator: a line or a word n-gram repeated too often in the tail.

Like the other streaming checks it keeps bounded state and its verdict does not depend on how
the stream was chunked."""

from __future__ import annotations

import re
from collections import Counter, deque
from itertools import compress, repeat
from typing import ClassVar

from pydantic import Field

from gristmill.validation.base import PASS, Check, Context, Params, Rejection, StreamCheck, quote


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
            word = tokens.pop()[: Repetition.MAX_WORD]  # may continue in the next feed
            # kept as an ASCII feed would give it (lowered), whatever this feed held: the
            # next feed takes an ASCII carried word as already lowered
            self.word = word.lower() if not ascii_only and word.isascii() else word
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
