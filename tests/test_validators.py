"""Streaming validators: each on good and bad answers, and the chunking-invariance of their
verdicts (hypothesis). (Final validators, the registry, custom callables and the mock's
answers: test_validators_final.py; fast paths: test_validator_fast_paths.py; the client's
stream watch: test_stream_watch.py.)"""

from __future__ import annotations

import json
import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gristmill.backends.mock.prose import prose_tokens
from gristmill.validation import Context
from gristmill.validation.base import quote
from tests.validator_support import DE, EN, LINES, LOOP, PROPERTY, RU, cuts_for, one, verdict

pytestmark = pytest.mark.timeout(60)


# -- streaming validators on examples -----------------------------------------------------
def test_refusal_only_at_the_opening():
    refusal = one("refusal")
    assert verdict(refusal, "I'm sorry, but I can't help with that. " + EN).validator == "refusal"
    assert "I'm sorry, but" in verdict(refusal, "I'm sorry, but I can't help. " + EN).reason
    assert verdict(refusal, "Sure. Unfortunately, I cannot share that. " + EN) is not None
    assert verdict(refusal, "**As an AI**, I do not have opinions. " + EN) is not None
    assert verdict(refusal, EN) is None
    assert verdict(refusal, EN + " I'm sorry, I cannot help with that.") is None  # too late
    assert verdict(refusal, "The clerk said I'm sorry to the miller. " + EN) is None  # mid-sentence
    assert verdict(refusal, "“I'm sorry,” the miller said. " + EN) is None  # dialogue
    assert verdict(refusal, "I can't help") is not None  # short answers are judged at the end
    custom = one({"name": "refusal", "patterns": ["nope"], "window": 10})
    assert verdict(custom, "Nope. " + EN) is not None and verdict(custom, "I'm sorry.") is None


def test_max_length_chars_and_tokens():
    assert verdict(one({"name": "max_length", "max_chars": 100}), "x" * 100) is None
    chars = one({"name": "max_length", "max_chars": 100})
    assert "100 characters" in verdict(chars, "x" * 101).reason
    tokens = one({"name": "max_length", "max_tokens": 10})
    assert verdict(tokens, "x" * 40) is None and verdict(tokens, "x" * 41).validator == "max_length"


def test_repetition_lines_and_ngrams():
    rep = one("repetition")
    assert "8-word sequence repeated 4 times" in verdict(rep, LOOP).reason
    line = verdict(rep, LINES)
    assert line.reason.startswith("line repeated 4 times") and "Repeat this exact" in line.reason
    assert verdict(rep, EN) is None
    assert verdict(rep, "}\n" * 50 + "\n\n" * 50) is None  # short lines are not counted
    long_prose = "".join(prose_tokens(random.Random(3), 3000))
    assert verdict(rep, long_prose) is None
    code = "Tests:\n```python\n" + "    self.assertEqual(result, expected)\n" * 5 + "```\n"
    assert verdict(rep, code) is None  # lines in code blocks are not counted
    items = [{"question": f"Question {i} about {w}?", "type": "multiple_choice",
              "level": "medium", "public": True, "tags": ["mills", "rivers"], "score": 3}
             for i, w in enumerate(EN.split()[:12])]
    pretty = json.dumps({"items": items}, indent=2)
    assert verdict(rep, pretty, context=Context(structured=True)) is None
    strict = one({"name": "repetition", "structured": True})
    assert verdict(strict, pretty, context=Context(structured=True)).validator == "repetition"
    spaced = one({"name": "repetition", "window_words": 20})  # copies further apart than that
    assert verdict(spaced, ("alpha beta gamma delta epsilon zeta eta theta " + EN) * 4) is None


def test_json_prefix_rejects_early_and_incomplete():
    jp = one("json_prefix")
    ctx = Context(structured=True)
    good = '  {"items": ["a", "b\\n\\u00e9"], "n": -1.5e3, "ok": [true, null]}'
    assert verdict(jp, good, context=ctx) is None
    early = verdict(jp, '{"items": ["a", @@ ' + "filler " * 500, context=ctx)
    assert early.validator == "json_prefix" and "char 16" in early.reason and "'@'" in early.reason
    assert "unclosed" in verdict(jp, '{"items": ["a"', context=ctx).reason
    assert "unterminated string" in verdict(jp, '{"items": ["a', context=ctx).reason
    assert "no value" in verdict(jp, "   ", context=ctx).reason
    for bad in ('```json\n{}', '{"a": 1,}', "[1 2]", "{'a': 1}", "01", "[1,]", '{"a" 1}', "tru ",
                '"tab\there"', "{} {}", "nul", "-", "1.e5"):
        assert verdict(jp, bad, context=ctx) is not None, bad
    assert verdict(jp, "not json at all") is None  # only structured requests are checked


def test_forbidden_across_chunks_and_word_boundaries():
    fb = one({"name": "forbidden", "patterns": [r"\bsecret\b", "internal use only"]})
    assert verdict(fb, "this is a se", [12]) is None
    assert verdict(fb, "the secret plan", [6, 9]).reason == "matches forbidden pattern: 'secret'"
    assert verdict(fb, "secretary " * 3, [6]) is None  # the chunk edge is not a word boundary
    assert verdict(fb, "FOR INTERNAL USE ONLY.", [8, 13]) is not None
    assert verdict(fb, EN) is None


def test_language_script_and_stopwords():
    lang = one("language")
    assert verdict(lang, EN) is None
    assert "stop words" in verdict(lang, DE).reason
    assert "latin script" in verdict(lang, RU).reason
    assert verdict(lang, RU, context=Context(language="ru")) is None
    assert verdict(lang, DE, context=Context(language="de")) is None  # script only for de
    assert verdict(lang, "Die Katze schläft.") is None  # under min_chars: not judged
    code = "Use this:\n```python\n" + "x = compute(y, z)\n" * 20 + "```\n"
    assert verdict(lang, code) is None  # code is left out, too few words remain
    names = json.dumps({"items": ["Paris Berlin Madrid Lisbon Vienna Prague Warsaw"] * 6})
    assert verdict(lang, names, context=Context(structured=True)) is None
    assert verdict(lang, "日本語のテキストです。" * 30, context=Context(language="ja")) is None


# -- chunking invariance (hypothesis) -------------------------------------------------------
def _json_docs():
    scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | \
        st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) |
                          st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)
    return values.map(lambda v: json.dumps(v, ensure_ascii=False))


STREAM_CASES = {
    "refusal": ["I'm sorry, but I can't help with that. " + EN, EN, "Sure. I cannot help. x",
                "   " + "I apologize " * 40],
    "max_length": ["x" * 120, "y" * 60],
    "repetition": [LOOP, LINES, EN, "a b c d e f g h " * 10, "w\n" * 40],
    "forbidden": ["the secret plan", "secretary", EN + " secret", "so secret\n"],
    "language": [EN, DE, RU, DE[:150]],
}
STREAM_SPECS = {"refusal": "refusal", "max_length": {"name": "max_length", "max_chars": 100},
                "repetition": "repetition", "language": "language",
                "forbidden": {"name": "forbidden", "patterns": [r"\bsecret\b", "plan"]}}


@pytest.mark.parametrize("name", sorted(STREAM_CASES))
@PROPERTY
@given(data=st.data())
def test_streaming_verdict_does_not_depend_on_chunking(name, data):
    validator = one(STREAM_SPECS[name])
    text = data.draw(st.sampled_from(STREAM_CASES[name]) | st.text(max_size=300) |
                     st.lists(st.sampled_from(["the", "wheel", "turns", "\n", " ", "sorry",
                                               "I'm", "secret", ".", "Mühle"]), max_size=200)
                     .map(" ".join) |
                     st.lists(st.sampled_from(["A line long enough to be counted here",
                                               "Another line, also long enough to count",
                                               "short", "", "  }", "```"]), max_size=30)
                     .map("\n".join))
    cuts = data.draw(cuts_for(text))
    assert verdict(validator, text, cuts) == verdict(validator, text)


def reference_ngram_verdict(text: str, n: int, repeats: int, window: int) -> str | None:
    """The n-gram rule written plainly over the whole text: the first n-gram of counted words
    (with a letter or digit, lowered, capped at 100 characters) that occurs `repeats` times
    among the last `window` n-grams, as the check's reason."""
    words = [w.lower()[:100] for w in text.split() if re.search(r"\w", w)]
    grams = [tuple(words[j:j + n]) for j in range(len(words) - n + 1)]
    for j, gram in enumerate(grams):
        count = grams[max(0, j - window + 1):j + 1].count(gram)
        if count >= repeats:
            return (f"{n}-word sequence repeated {count} times in the last {window} words: "
                    + quote(" ".join(gram)))
    return None


@PROPERTY
@given(words=st.lists(st.sampled_from(["mill", "wheel", "the", "—", "Wheel", "x" * 120]) |
                      st.integers(0, 3).map(lambda i: f"unique{i}") |
                      st.integers(0, 10**9).map(lambda i: f"u{i}"), max_size=300),
       n=st.integers(2, 4), repeats=st.integers(2, 5), window=st.integers(10, 60),
       data=st.data())
def test_repetition_ngrams_agree_with_the_plain_rule(words, n, repeats, window, data):
    """A small vocabulary among words that never repeat: triggers, near misses, copies just
    beyond the window and feeds that only look like they may trigger are all exercised, fed
    in random chunks."""
    text = " ".join(words)
    validator = one({"name": "repetition", "ngram": n, "max_ngram_repeats": repeats,
                     "window_words": window})
    got = verdict(validator, text, data.draw(cuts_for(text)))
    expected = reference_ngram_verdict(text, n, repeats, window)
    if expected is None:
        assert got is None
    else:
        assert got is not None and got.reason == expected


@pytest.mark.parametrize("distance", [8, 9, 10, 11])
@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_repetition_copies_at_the_window_edge(distance, chunk):
    """Copies of an n-gram 9 n-grams apart share a window of 10; 10 apart they do not."""
    validator = one({"name": "repetition", "ngram": 2, "max_ngram_repeats": 2,
                     "window_words": 10})
    text = " ".join(["a", "b", *(f"u{i}" for i in range(distance - 2)), "a", "b", "tail"])
    expected = reference_ngram_verdict(text, 2, 2, 10)
    assert (expected is not None) == (distance <= 9)
    got = verdict(validator, text, range(0, len(text), chunk))
    assert (got and got.reason) == expected


@PROPERTY
@given(doc=_json_docs(), data=st.data())
def test_json_prefix_chunking_and_agreement_with_a_parser(doc, data):
    jp, ctx = one("json_prefix"), Context(structured=True)
    mutate = data.draw(st.booleans())
    if mutate and doc:  # drop, duplicate or replace one character
        i = data.draw(st.integers(0, len(doc) - 1))
        doc = doc[:i] + data.draw(st.sampled_from(["", doc[i] * 2, ",", "]", "}", ":", '"', "x"]))\
            + doc[i + 1:]
    cuts = data.draw(cuts_for(doc))
    whole = verdict(jp, doc, context=ctx)
    assert verdict(jp, doc, cuts, context=ctx) == whole
    try:  # the oracle: Python's parser without its NaN/Infinity extensions
        json.loads(doc, parse_constant=lambda name: json.loads("x"))
        valid = True
    except json.JSONDecodeError:
        valid = False
    assert (whole is None) == valid, (doc, whole)
    if valid and len(doc) > 1:  # every proper prefix is accepted while streaming
        check = jp.start(ctx)
        assert check.feed(doc[: data.draw(st.integers(1, len(doc) - 1))]) is None


def test_a_pattern_with_inline_flags_is_one_of_several():
    """`(?i)` opens a pattern of the docs' examples: joined with others it must still work."""
    from gristmill.validation.base import alternation

    regex = re.compile(alternation(["(?i)as an ai language model", "XYZ", "(?s)a.b"]))
    assert regex.search("As An AI Language Model") and regex.search("a\nb")
    assert not regex.search("xyz")


def test_a_word_carried_from_a_non_ascii_feed_is_compared_lowered():
    """Found by the property above: 'Wheel' ended a feed holding '—', then completed in an
    ASCII feed (here: the end) and was compared unlowered."""
    validator = one({"name": "repetition", "ngram": 2, "max_ngram_repeats": 2,
                     "window_words": 10})
    text = "mill wheel — mill Wheel"
    assert verdict(validator, text) is not None
    assert verdict(validator, text) == verdict(validator, text, [5, 13])
