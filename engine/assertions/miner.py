"""Candidate assertions mined from labelled records, deterministically, by contrasting the
records humans failed with those they passed (SPADE proposes, EvalGen keeps several
implementations per criterion; here every criterion gets a few parameter variants and
selection keeps what the labels support):

phrases     word n-grams (1 to 3 words) far more common in failed answers: must not occur
            (the exact phrase, its word-prefix form, the strongest together as forbidden
            terms); and n-grams common in passed answers but rare in failed: required
length      characters and words: the passed answers' quantiles as upper and lower bounds
json paths  paths (and their types) nearly every passed answer has: present; paths of failed
            answers rare in passed ones: absent
language    English by stop-word rate, at three thresholds, when the passed answers are English
overlap     the share of answer words found in the instruction: passed answers' quantiles
items       list items or bullet lines: passed answers' quantiles

Candidates that catch no failure are left for selection to drop; the order is stable (same
labels, same candidates)."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Iterator

from gristmill.assertions.vocabulary import (MISSING, Assertion, Items, JsonPath, Language,
                                             Length, Overlap, Regex, Terms, Texts, json_type,
                                             parse_json, words)

MAX_PHRASES = 6  # fail phrases kept (each gives two regex variants)
MAX_REQUIRED = 3  # pass phrases kept
MAX_PATHS = 12
LOW_QUANTILES, HIGH_QUANTILES = (0.0, 0.05, 0.1), (0.9, 0.95, 1.0)


@dataclass(frozen=True)
class Labelled:
    record_id: str
    texts: Texts
    passed: bool


def mine(labelled: list[Labelled]) -> list[Assertion]:
    fails = [x.texts for x in labelled if not x.passed]
    passes = [x.texts for x in labelled if x.passed]
    if not fails:
        return []
    found = [*phrase_candidates(fails, passes), *length_candidates(passes),
             *json_candidates(fails, passes), *language_candidates(passes),
             *overlap_candidates(passes), *item_candidates(fails, passes)]
    return list({a.id: a for a in found}.values())  # first of each id, in order


# -- phrases -------------------------------------------------------------------------------
def ngrams(text: str, longest: int = 3) -> set[str]:
    from gristmill.validation.language import ENGLISH_STOPWORDS

    tokens = words(text)
    return {" ".join(tokens[i:i + n]) for n in range(1, longest + 1)
            for i in range(len(tokens) - n + 1)
            if not all(t in ENGLISH_STOPWORDS or t.isdigit() for t in tokens[i:i + n])}


def document_frequency(texts: list[Texts]) -> Counter[str]:
    return Counter(g for t in texts for g in ngrams(t.answer))


def contrasted(more: list[Texts], less: list[Texts], limit: int) -> list[str]:
    """n-grams in at least two (or, with under 4 records, one) of `more` and at least twice
    as frequent there as in `less`; the largest difference of rates first, shorter and then
    alphabetical on ties. A gram found mostly in records the grams before it already cover
    is skipped, so one failure mode's many words leave room for the others'."""
    df_more, df_less = document_frequency(more), document_frequency(less)
    support = 2 if len(more) >= 4 else 1
    scored = []
    for gram, count in df_more.items():
        rate, other = count / len(more), df_less[gram] / max(1, len(less))
        if count >= support and rate >= 2 * other:
            scored.append((-(rate - other), len(gram.split()), gram))
    grams = [ngrams(t.answer) for t in more]
    chosen: list[str] = []
    covered: set[int] = set()
    for *_, gram in sorted(scored):
        holders = {i for i, g in enumerate(grams) if gram in g}
        if len(holders - covered) >= max(support, len(holders) / 2):
            chosen.append(gram)
            covered |= holders
        if len(chosen) == limit:
            break
    return chosen


def phrase_regex(phrase: str, prefix: bool = False) -> str:
    body = r"\s+".join(re.escape(w) for w in phrase.split())
    return rf"\b{body}\w*" if prefix else rf"\b{body}\b"


def phrase_candidates(fails: list[Texts], passes: list[Texts]) -> Iterator[Assertion]:
    bad = contrasted(fails, passes, MAX_PHRASES)
    for phrase in bad:
        yield Regex(pattern=phrase_regex(phrase))
        yield Regex(pattern=phrase_regex(phrase, prefix=True))
    if len(bad) > 1:
        yield Terms(terms=bad[:3], mode="forbidden")
    if passes:
        for phrase in contrasted(passes, fails, MAX_REQUIRED):
            yield Terms(terms=[phrase], mode="required")


# -- numeric bounds ------------------------------------------------------------------------
def quantile(values: list[float], q: float, upper: bool) -> float:
    """Nearest-rank quantile; `upper` rounds the rank up (an upper bound keeping that share)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    return ordered[math.ceil(position) if upper else math.floor(position)]


def bounds(values: list[float], digits: int | None = None) -> Iterator[tuple[float | None,
                                                                               float | None]]:
    """(min, max) pairs: each low quantile as a lower bound, each high one as an upper bound."""
    if not values:
        return
    for q in LOW_QUANTILES:
        low = quantile(values, q, upper=False)
        yield (math.floor(low * 10**digits) / 10**digits if digits else low), None
    for q in HIGH_QUANTILES:
        high = quantile(values, q, upper=True)
        yield None, (math.ceil(high * 10**digits) / 10**digits if digits else high)


def length_candidates(passes: list[Texts]) -> Iterator[Assertion]:
    for unit in ("chars", "words"):
        probe = Length(unit=unit, min=0)
        for low, high in bounds([probe.measure(t) for t in passes]):
            if low or high is not None:  # a lower bound of 0 rejects nothing
                yield Length(unit=unit, min=low, max=high)


def overlap_candidates(passes: list[Texts]) -> Iterator[Assertion]:
    ratios = [Overlap.ratio(t) for t in passes if t.instruction.strip()]
    for low, high in bounds(ratios, digits=2):
        if low or (high is not None and high < 1):
            yield Overlap(min=low, max=high)


def item_candidates(fails: list[Texts], passes: list[Texts]) -> Iterator[Assertion]:
    if not any(Items.count(t) for t in (*fails, *passes)):
        return  # nobody writes lists here
    for low, high in bounds([Items.count(t) for t in passes]):
        if low or high is not None:
            yield Items(min=low, max=high)


def language_candidates(passes: list[Texts]) -> Iterator[Assertion]:
    from gristmill.validation.language import stopword_rate

    rates = sorted(stopword_rate(t.answer)[0] for t in passes)
    if rates and rates[len(rates) // 2] >= 0.2:  # the passed answers are English prose
        for threshold in (0.1, 0.15, 0.2):
            yield Language(language="en", min_stopword_rate=threshold)


# -- JSON paths ----------------------------------------------------------------------------
def json_paths(value: object, prefix: str = "", depth: int = 3) -> Iterator[tuple[str, str]]:
    """(path, type) of every key under an object (lists by their first element)."""
    if depth == 0:
        return
    children: Iterable[tuple[str, object]] = ()
    if isinstance(value, dict):
        children = ((str(k), v) for k, v in value.items())
    elif isinstance(value, list) and value:
        children = (("0", value[0]),)
    for key, child in children:
        if not key or "." in key or any(c.isspace() for c in key):
            continue
        path = f"{prefix}.{key}" if prefix else key
        yield path, json_type(child) or "null"
        yield from json_paths(child, path, depth - 1)


def path_rates(texts: list[Texts]) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for t in texts:
        value = parse_json(t.answer)
        if value is not MISSING:
            counts.update(set(json_paths(value)))
    return counts


def json_candidates(fails: list[Texts], passes: list[Texts]) -> Iterator[Assertion]:
    in_fails, in_passes = path_rates(fails), path_rates(passes)
    n_fail, n_pass = len(fails), max(1, len(passes))
    present = sorted(k for k, c in in_passes.items()
                     if c / n_pass >= 0.8 and in_fails[k] / n_fail < c / n_pass)
    absent = sorted(k for k, c in in_fails.items()
                    if in_passes[k] / n_pass <= 0.2 and c / n_fail > in_passes[k] / n_pass)
    for path, kind in present[:MAX_PATHS]:
        yield JsonPath(path=path, type=kind)
        yield JsonPath(path=path, type="any")
    for path, kind in absent[:MAX_PATHS]:
        yield JsonPath(path=path, type="any", present=False)
