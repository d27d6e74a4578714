"""Cleaning: normalised whitespace and unicode, and boilerplate lines dropped from prose.

Prose is cleaned a line at a time so a large file streams: runs of spaces/tabs inside a line
collapse to one space (leading indentation is kept: Markdown lists and indented code need it),
trailing spaces go, lines are NFC-normalised, at most one blank line separates paragraphs,
and lines matching `BOILERPLATE_PATTERNS` or looking like a navigation bar are dropped.
Fenced code blocks inside Markdown keep their spacing. Code files only get line endings and
trailing whitespace normalised: their spacing is meaning."""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable, Iterator

# A line longer than this is content, whatever words it contains.
BOILERPLATE_MAX_CHARS = 200
# A paragraph without blank lines is cut here so one giant paragraph cannot fill memory.
PARAGRAPH_FLUSH_CHARS = 1 << 20

# Whole-line patterns (case-insensitive, matched against the stripped line) and phrases
# that mark a short line wherever they occur. Kept narrow on purpose: a false positive
# deletes real text, a miss only leaves a little noise.
BOILERPLATE_LINES: tuple[str, ...] = (
    r"(cookie|privacy) (policy|settings|preferences|notice)",
    r"(©|\(c\)|copyright)\s*(©\s*)?\d{4}\b.{0,80}",
    r"subscribe( now| today| here)?[.!]?",
    r"(subscribe|sign up) (to|for) (our|the) (newsletter|mailing list|channel|blog|podcast)\b.*",
    r"share (this|on|via|to)\b.{0,40}",
    r"follow us( on\b.{0,40})?",
    r"skip to (the )?(main )?(content|navigation|menu)",
    r"skip navigation",
    r"(back|return|jump|go) to (the )?top",
    r"(read more|continue reading|click here)( ?[»›→>]|\.{3}|…)?",
    r"advertisement",
    r"[«‹←<]? ?(previous|prev|next|older|newer)"
    r"( (page|post|posts|article|entries))? ?[»›→>]?",
    # page numbers: "12", "- 12 -", "Page 3", "Page 3 of 10", "3 / 10"
    r"[-–—]? ?(page )?\d{1,4}( ?(of|/) ?\d{1,4})? ?[-–—]?",
)
BOILERPLATE_PHRASES: tuple[str, ...] = (
    r"\b(we|this (web)?site|our (web)?site) uses? cookies\b",  # cookie banners
    r"\b(accept|allow|reject|manage) (all )?cookies\b",
    r"\ball rights reserved\b",  # copyright footers
)
_LINES = re.compile("|".join(f"(?:{p})" for p in BOILERPLATE_LINES), re.IGNORECASE)
_PHRASES = re.compile("|".join(f"(?:{p})" for p in BOILERPLATE_PHRASES), re.IGNORECASE)
# Cheap gates: a line that passes none cannot be boilerplate (most lines). Plain substring
# tests, because a case-insensitive regex search over every line is several times slower.
_MAYBE_START = re.compile(r"[\W\d]|(cookie|privacy|copyright|subscribe|sign|share|follow|"
                          r"skip|back|return|jump|go|read|continue|click|advertisement|prev|"
                          r"next|older|newer|page)", re.IGNORECASE)
_MAYBE_WORDS = ("cookies", "reserved")
_NAV_MARKS = (" | ", " · ", " • ", "»", "›", " > ", " / ")

NAV_WORDS = frozenset({
    "home", "about", "about us", "contact", "contact us", "blog", "news", "login", "log in",
    "sign in", "sign up", "register", "search", "menu", "faq", "help", "privacy",
    "privacy policy", "terms", "terms of use", "terms of service", "careers", "jobs", "shop",
    "store", "products", "services", "support", "docs", "documentation", "pricing", "team",
    "events", "press", "sitemap", "cart", "account", "my account", "imprint", "legal",
})
_NAV_SPLIT = re.compile(r"\s+[|·•»›>/]\s+")
_BREADCRUMB_SPLIT = re.compile(r"\s*[»›>/]\s*")

_HSPACE = re.compile(r"[^\S\n]+")  # any whitespace but newline: spaces, tabs, NBSP, ...
_INDENT = re.compile(r"[ \t]*")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufeff]")  # C0 controls and stray BOMs
_FENCE = re.compile(r"\s*(```|~~~)")
_LINE_BREAK = re.compile(r"[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")  # str.splitlines' set


def is_boilerplate(line: str) -> bool:
    """`line` is stripped and non-empty."""
    if len(line) > BOILERPLATE_MAX_CHARS:
        return False
    if _MAYBE_START.match(line) and _LINES.fullmatch(line):
        return True
    lower = line.lower()
    for word in _MAYBE_WORDS:
        if word in lower:
            return _PHRASES.search(line) is not None or is_navigation(line)
    for mark in _NAV_MARKS:
        if mark in line:
            return is_navigation(line)
    return False


def is_navigation(line: str) -> bool:
    """'Home | About | Contact', 'Home » Docs » Install': short items, mostly menu words."""
    if line.startswith("|") or line.endswith("|"):
        return False  # a Markdown table row
    parts = [p.strip().lower() for p in _NAV_SPLIT.split(line)]
    if len(parts) >= 3 and all(len(p) <= 30 and len(p.split()) <= 4 for p in parts):
        if sum(p in NAV_WORDS for p in parts) >= 2:
            return True
    crumbs = _BREADCRUMB_SPLIT.split(line)
    return (len(crumbs) >= 2 and crumbs[0].lower() == "home"
            and all(len(c) <= 40 for c in crumbs))


def normalise_line(line: str) -> str:
    """NFC, no control characters, inner whitespace runs collapsed, no trailing spaces."""
    if not line.isascii():
        line = unicodedata.normalize("NFC", line)
    elif line.isprintable() and "  " not in line and not line.endswith(" "):
        return line  # the common case (no tab, control, double or trailing space): as is
    line = _CONTROL.sub("", line).rstrip()
    indent = _INDENT.match(line).end()  # type: ignore[union-attr]  # always matches
    return line[:indent] + _HSPACE.sub(" ", line[indent:])


def clean_prose_lines(lines: Iterable[str]) -> Iterator[str]:
    """Cleaned lines; "" marks a paragraph break (never two in a row, none first)."""
    in_fence = False
    pending_break = False
    started = False
    for raw in lines:
        if _FENCE.match(raw):
            in_fence = not in_fence
            line = raw.rstrip()
        elif in_fence:
            line = _CONTROL.sub("", raw).rstrip()
        else:
            line = normalise_line(raw)
            if line and is_boilerplate(line.strip()):
                continue
        if not line.strip():
            pending_break = started
            continue
        if pending_break:
            yield ""
            pending_break = False
        started = True
        yield line


def prose_parts(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Paragraphs of cleaned prose as (separator, text): the separator is "\n\n" (or "\n"
    where an over-long paragraph was cut), so joining them gives the cleaned document."""
    buf: list[str] = []
    size = 0
    sep = ""
    for line in clean_prose_lines(lines):
        if line:
            buf.append(line)
            size += len(line) + 1
            if size < PARAGRAPH_FLUSH_CHARS:
                continue
        if buf:
            yield sep, "\n".join(buf)
            sep = "\n" if line else "\n\n"
        else:
            sep = "\n\n" if sep else ""
        buf, size = [], 0
    if buf:
        yield sep, "\n".join(buf)


def prose_parts_of(text: str) -> Iterable[tuple[str, str]]:
    """`prose_parts` of one string. A single line, the usual dataset record, takes a
    shortcut past the generators (same result, several times faster)."""
    if _LINE_BREAK.search(text) or _FENCE.match(text):
        return prose_parts(text.splitlines())
    line = normalise_line(text)
    stripped = line.strip()
    return [] if not stripped or is_boilerplate(stripped) else [("", line)]


def clean_prose(text: str) -> str:
    return "".join(sep + para for sep, para in prose_parts(text.splitlines()))


def clean_code(text: str) -> str:
    """Line endings to '\\n', trailing whitespace and blank lines at both ends removed."""
    # split on "\n" only: str.splitlines would also break at form feeds inside code
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return "\n".join(lines).strip("\n")
