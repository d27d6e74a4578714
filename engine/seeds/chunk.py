"""Token-bounded chunking that keeps natural units whole.

A document arrives as units (paragraphs for prose, top-level blocks for code), each a
(separator, text) pair where the separator is the exact text that stood before it, so every
chunk is a verbatim slice of the cleaned document. Units are packed greedily up to
`max_tokens`; a unit too big on its own is split with the next finer splitter (prose:
sentences, then words; code: blank-line blocks, then lines, then words) and, as a last
resort, by characters. Each new chunk starts with up to `overlap_tokens` of the previous
chunk's tail, in whole units where they fit, else in finer ones.

Every chunk is checked with the real counter (`count(chunk) <= max_tokens`) rather than by
summing unit counts, because an exact tokenizer need not be additive across joins."""

from __future__ import annotations

import re
from typing import Callable, Iterable, Iterator, Sequence

Part = tuple[str, str]  # (separator before it, text)
Splitter = Callable[[str], list[Part]]
Count = Callable[[str], int]

_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")
# Sentence end: terminal punctuation (plus closing quotes/brackets), then whitespace; or a
# CJK full stop, which needs no whitespace after it.
_SENTENCE_END = re.compile(r"(?:[.!?…]+[\"'”’)\]]*(\s+)|[。！？]+(\s*))")
_WHITESPACE = re.compile(r"\s+")
_BLANK_LINES = re.compile(r"\n(?:[^\S\n]*\n)+")
# A blank line followed by a line at column 0 that does not close a block starts a new
# top-level definition (`}` / `end` at column 0 belong to the block above).
_TOP_LEVEL = re.compile(r"\n(?:[^\S\n]*\n)+(?=[^\s})\]])(?!end\b)")
_NEWLINE = re.compile(r"\n")


def split_on(pattern: re.Pattern[str], text: str) -> list[Part]:
    """Split at every match; the whole match is the separator."""
    parts: list[Part] = []
    sep, start = "", 0
    for m in pattern.finditer(text):
        if m.start() > start:
            parts.append((sep, text[start:m.start()]))
            sep = m.group()
        else:
            sep += m.group()
        start = m.end()
    if start < len(text):
        parts.append((sep, text[start:]))
    return parts


def split_sentences(text: str) -> list[Part]:
    """Sentences keep their punctuation; only the whitespace after it separates them."""
    parts: list[Part] = []
    sep, start = "", 0
    for m in _SENTENCE_END.finditer(text):
        space = m.group(1) if m.group(1) is not None else (m.group(2) or "")
        end = m.end() - len(space)
        if m.end() >= len(text):
            break
        parts.append((sep, text[start:end]))
        sep, start = space, m.end()
    parts.append((sep, text[start:]))
    return [p for p in parts if p[1]]


def paragraphs(text: str) -> list[Part]:
    return split_on(_PARAGRAPH_BREAK, text)


def words(text: str) -> list[Part]:
    return split_on(_WHITESPACE, text)


def blank_line_blocks(text: str) -> list[Part]:
    return split_on(_BLANK_LINES, text)


def top_level_blocks(text: str) -> list[Part]:
    return split_on(_TOP_LEVEL, text)


def lines(text: str) -> list[Part]:
    return split_on(_NEWLINE, text)


# How a unit that is too big is split, coarsest first. Documents arrive as units already:
# prose as paragraphs (`paragraphs`, or streamed), code as `top_level_blocks`.
REFINE: dict[str, tuple[Splitter, ...]] = {
    "prose": (split_sentences, words),
    "code": (blank_line_blocks, lines, words),
    "html": (split_sentences, words),  # a page's main text is prose
}


def join(parts: Sequence[Part]) -> str:
    """The verbatim text of consecutive parts (the first one's separator is not included)."""
    if not parts:
        return ""
    return parts[0][1] + "".join(sep + text for sep, text in parts[1:])


def split_chars(text: str, max_tokens: int, count: Count) -> list[Part]:
    """Last resort for a run without spaces (a hash, base64): longest prefixes that fit."""
    parts: list[Part] = []
    start = 0
    while start < len(text):
        # Search at most max_tokens * 32 characters: no real token is wider, and slicing
        # the whole rest of a megabyte blob for every piece would be quadratic.
        lo, hi = 1, min(len(text) - start, max_tokens * 32)
        while lo < hi:  # largest n with count(text[start:start+n]) <= max_tokens
            mid = (lo + hi + 1) // 2
            if count(text[start:start + mid]) <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        parts.append(("", text[start:start + lo]))
        start += lo
    return parts


def fitting_parts(part: Part, splitters: Sequence[Splitter], max_tokens: int,
                  count: Count) -> Iterator[Part]:
    """`part`, or its pieces by the coarsest splitter that splits it, each <= max_tokens."""
    sep, text = part
    if count(text) <= max_tokens:
        yield part
        return
    for i, split in enumerate(splitters):
        pieces = split(text)
        if len(pieces) > 1:
            pieces[0] = (sep, pieces[0][1])
            for piece in pieces:
                yield from fitting_parts(piece, splitters[i + 1:], max_tokens, count)
            return
    pieces = split_chars(text, max_tokens, count)
    pieces[0] = (sep, pieces[0][1])
    yield from pieces


def tail(parts: Sequence[Part], budget: int, splitters: Sequence[Splitter],
         count: Count) -> list[Part]:
    """The longest suffix of `parts` within `budget` tokens, in whole parts if one fits,
    else in pieces of the last part."""
    if budget <= 0 or not parts:
        return []
    best = 0
    for n in range(1, len(parts) + 1):
        if count(join(parts[-n:])) > budget:
            break
        best = n
    if best:
        return list(parts[-best:])
    for i, split in enumerate(splitters):
        pieces = split(parts[-1][1])
        if len(pieces) > 1:
            return tail(pieces, budget, splitters[i + 1:], count)
    return []


class Packer:
    """Greedy packing of fitting parts into chunks, carrying an overlap between them."""

    def __init__(self, max_tokens: int, overlap_tokens: int, splitters: Sequence[Splitter],
                 count: Count) -> None:
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.splitters = splitters
        self.count = count
        self.parts: list[Part] = []
        self.text = ""
        self.carried = 0  # leading parts that repeat the previous chunk

    def add(self, part: Part) -> Iterator[str]:
        if not self.parts:
            self._start([], part)
            return
        candidate = self.text + part[0] + part[1]
        if self.count(candidate) <= self.max_tokens:
            self.parts.append(part)
            self.text = candidate
            return
        if len(self.parts) > self.carried:
            yield self.text
        # The overlap shrinks (to finer units) so that it fits beside a big new part.
        room = self.max_tokens - self.count(part[1]) - 1
        overlap = tail(self.parts, min(self.overlap_tokens, room), self.splitters, self.count)
        self._start(overlap, part)

    def _start(self, overlap: list[Part], part: Part) -> None:
        # Drop overlap from the front until the new part fits beside it.
        while overlap and self.count(join(overlap + [part])) > self.max_tokens:
            overlap.pop(0)
        self.parts = overlap + [part]
        self.text = join(self.parts)
        self.carried = len(overlap)

    def finish(self) -> Iterator[str]:
        if len(self.parts) > self.carried:
            yield self.text
        self.parts, self.text, self.carried = [], "", 0


def chunk_units(units: Iterable[Part], splitters: Sequence[Splitter], max_tokens: int,
                overlap_tokens: int, count: Count) -> Iterator[str]:
    """Chunks of the document made of `units`; `splitters` refine a unit that is too big
    (and the overlap), coarsest first."""
    packer = Packer(max_tokens, overlap_tokens, splitters, count)
    for unit in units:
        for part in fitting_parts(unit, splitters, max_tokens, count):
            yield from packer.add(part)
    yield from packer.finish()
