"""The validators' fast paths agree with the plain regexes and rules they replace
(hypothesis)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gristmill.validation import (DEFAULT_STREAM, Context, build_stream, run_stream_on_text,
                                  start_checks)
from gristmill.validation import language
from gristmill.validation import leftovers
from gristmill.validation.base import CODE_SPANS
from gristmill.validation.leftovers import PLACEHOLDER_PATTERNS, LeftmostSearch
from gristmill.validation.repetition import counted_words
from tests.validator_support import DE, EN, LOOP, PROPERTY, cuts_for, one, verdict

pytestmark = pytest.mark.timeout(60)

_TRICKY = ["as an AI language model", "LOREM IPSUM", "TODO:", "todo:", "{{ x }}", "[Insert name]",
           "<placeholder a>", "{% if %}", "ſ", "İ", "K", "Σ", "é", "’", " ", "\n", "_", "a1", "--"]
_TRICKY_TEXT = st.lists(st.sampled_from(_TRICKY), max_size=30).map("".join) | st.text(max_size=100)


@PROPERTY
@given(text=_TRICKY_TEXT)
def test_placeholder_search_matches_the_alternation(text):
    patterns = [*PLACEHOLDER_PATTERNS, r"\bFOO bar\b", r"(?-i:\bXy)"]
    alternation = re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
    want, got = alternation.search(text), LeftmostSearch(patterns).search(text)
    assert (want and (want.span(), want.group())) == (got and (got.span(), got.group()))


@PROPERTY
@given(text=_TRICKY_TEXT)
def test_word_and_script_fast_paths_match_the_regexes(text):
    assert leftovers._words(text) == re.findall(r"\w+", text.casefold())
    letters = [c for c in text if c.isalpha()]
    for scripts in (language.SCRIPTS["en"], language.SCRIPTS["ru"]):
        inside = sum(1 for c in letters if language.script_of(c) in scripts)
        want = (inside / len(letters), len(letters)) if letters else (1.0, 0)
        assert language.script_share(text, scripts) == want


@PROPERTY
@given(text=_TRICKY_TEXT | st.text(st.characters(max_codepoint=127), max_size=200))
def test_stopword_rate_fast_path_matches_the_regex(text):
    words = re.findall(r"[^\W\d_]+(?:['’][^\W\d_]+)?", CODE_SPANS.sub(" ", text))
    hits = sum(w.lower().replace("’", "'") in language.ENGLISH_STOPWORDS for w in words)
    assert language.stopword_rate(text) == ((hits / len(words), len(words)) if words else (0.0, 0))


_WORDISH = ["mill", "MILL", "--", "*", "—", "x" * 120, "X" * 101, "\x00", "\x1f", "a_b", "1.", "é",
            "İ", " ", "\n", "\t", "\x1c"]


@PROPERTY
@given(text=st.lists(st.sampled_from(_WORDISH), max_size=40).map("".join) |
       st.text(st.characters(max_codepoint=127), max_size=200) | st.text(max_size=100))
def test_counted_words_match_the_plain_filter(text):
    """ASCII feeds are lowered whole and filtered by a bytes table; others by the regex."""
    want = [w[:100].lower() for w in text.split() if re.search(r"\w", w)]
    ascii_only = text.isascii()
    assert counted_words((text.lower() if ascii_only else text).split(), ascii_only) == want


_REFUSALISH = ["I'm sorry", "i AM so sorry", "Sorry, I", "apologies", "I apologise", "I can't help",
               "I CANNOT do", "I can not write", "I won't", "i will not assist", "I'm unable to",
               "I am not able to", "I must decline", "As an AI", "Unfortunately, I can't",
               "I don't feel comfortable", "can", "I", "won", "sorr", ". ", "\n", "*", "’", "ſ",
               "K", " ", "the mill", "x"]


@PROPERTY
@given(text=st.lists(st.sampled_from(_REFUSALISH), max_size=30).map("".join) |
       st.lists(st.sampled_from(_REFUSALISH[:16]), min_size=1, max_size=1).map(
           lambda phrase: "The mill. " + phrase[0] + " with that.") |
       st.text(max_size=100))
def test_refusal_keywords_never_skip_a_match(text):
    """With the built-in patterns the regex is skipped when no keyword is in the head: it
    must then find nothing, and the verdict equals the regex-only one."""
    refusal = one("refusal")
    plain = one({"name": "refusal", "extra_patterns": ["(?!)"]})  # no keyword skipping
    assert refusal.keywords is not None and plain.keywords is None
    if not refusal.may_match(text):
        assert refusal.regex.search(text) is None
    assert verdict(refusal, text) == verdict(plain, text)


@PROPERTY
@given(question=st.lists(st.sampled_from(["mill", "wheel", "the", "grain", "Water", "a"]) |
                         st.integers(0, 40).map(lambda i: f"q{i}"), max_size=30).map(" ".join),
       answer=st.lists(st.sampled_from(["mill", "wheel", "the", "grain", "water", "river", "."]) |
                       st.integers(0, 60).map(lambda i: f"q{i}"), max_size=60).map(" ".join),
       copy=st.integers(3, 6), overlap=st.sampled_from([0.5, 0.8, 0.9, 1.0]),
       prefix=st.booleans())
def test_restates_question_opening_bound_agrees_with_the_whole_check(question, answer, copy,
                                                                      overlap, prefix):
    """Settling on the answer's opening gives the verdict of splitting the whole answer."""
    spec = {"name": "restates_question", "copy_words": copy, "max_overlap": overlap}
    fast, plain = one(spec), one(spec)
    plain._cannot_restate = lambda text, question: False
    text = f"{question} {answer}" if prefix else answer
    ctx = Context(prompt=question)
    assert fast.check(text, ctx) == plain.check(text, ctx)


@PROPERTY
@given(text=st.sampled_from([EN, DE, "I'm sorry, but I can't help. " + EN, LOOP]), data=st.data())
def test_composite_drops_settled_checks_without_changing_the_verdict(text, data):
    stream = build_stream(DEFAULT_STREAM)
    check = start_checks(stream, Context())
    bounds = [0, *sorted(set(data.draw(cuts_for(text)))), len(text)]
    got = None
    for a, b in zip(bounds, bounds[1:]):
        if (got := check.feed(text[a:b])) is not None:
            break
    got = got or check.finish()
    assert got == run_stream_on_text(stream, text, Context())
    if got is None:  # past the opening, refusal and language are no longer called
        assert {type(c).__name__ for c in check.checks} == {"_RepetitionCheck", "_MaxLengthCheck"}
