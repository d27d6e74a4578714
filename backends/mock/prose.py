"""Prose of the mock server's answers: sentence templates over word lists, so the default
validators see real English, built into a fixed pool so every process answers alike."""

from __future__ import annotations

import random
from typing import Any


def _phrases(text: str) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(p.split()) for p in text.split("|"))


SUBJECTS = _phrases(
    "the research team|a careful reader|the new approach|most engineers|the city council|"
    "our small group|the early data|a good teacher|many students|the local library|"
    "a seasoned editor|the design review|each volunteer|the project lead|a curious child|"
    "the weather service|most historians|the survey results|a patient gardener|the museum staff|"
    "the kitchen crew|a young architect|the review board|several farmers|the support team|"
    "an old friend|the field guide|the morning crew|a quiet neighbor|the planning office")
VERBS = tuple(
    "reviewed described improved explained organized measured questioned shared tested "
    "revisited summarized supported examined documented adjusted compared prepared discussed "
    "clarified simplified planned recorded considered welcomed highlighted outlined checked "
    "refined collected presented".split())
OBJECTS = _phrases(
    "the early results|a simple plan|the main argument|several practical ideas|"
    "the seasonal schedule|a clear summary|the shared budget|the local history|"
    "each proposed change|the harvest numbers|a short checklist|the common questions|"
    "the regional map|an honest estimate|the daily routine|the reading list|a modest proposal|"
    "the key findings|the open questions|a useful example|the training notes|the river levels|"
    "the visitor feedback|a new timeline|the safety rules|the garden layout|the final draft|"
    "several small details|the budget forecast|the meeting notes|the schedule|clear goals|"
    "new ideas|the budget|local records|the evidence|fresh questions|the timeline")
TAILS = _phrases(
    "with great care|before the deadline|during the spring|in the final report|"
    "over several weeks|for the whole community|after a long discussion|without much fuss|"
    "at the weekly meeting|in plain language|for future projects|with a few examples|"
    "on a quiet afternoon|in the shared document|before making any decisions|"
    "with help from volunteers|across several departments|for new members|in a calm manner|"
    "after the first trial")
OPENERS = _phrases(
    "In practice,|As expected,|Over time,|For example,|In the end,|Later that week,|At first,|"
    "By contrast,|Not surprisingly,|In many cases,|Even so,|Meanwhile,|As a result,|Last year,|"
    "To be fair,|In short,")
CLOSERS = {  # exact-length sentences that finish an answer on its token budget
    1: _phrases("Indeed.|Certainly.|Naturally.|Absolutely."),
    2: _phrases("That helps.|Details matter.|Results vary.|Context matters."),
    3: _phrases("This seems reasonable.|The evidence agrees.|Small steps help."),
    4: _phrases("That is worth noting.|The pattern holds well.|Each step builds trust."),
}
MIN_SENTENCE = 5  # two-word subject, verb, two-word object
POOL_SIZE = 2048
POOL_SEED = 20240611  # fixed: every process builds the same pool, so answers are stable


def _sentence_words(rng: random.Random) -> list[str]:
    """A clause, optionally with an opener, a tail or a second clause; no phrase twice."""
    used: set = set()

    def pick(items: tuple) -> Any:
        for _ in range(4):
            item = items[rng.randrange(len(items))]
            if item not in used:
                break
        used.add(item)
        return item

    def clause() -> list[str]:
        return [*pick(SUBJECTS), pick(VERBS), *pick(OBJECTS)]

    words, shape = clause(), rng.randrange(5)
    if shape == 2:
        words[-1] += ","
        words += ["and", *clause()]
    if shape in (0, 3):
        words += pick(TAILS)
    if shape in (1, 3):
        words = [*pick(OPENERS), *words]
    words[0] = words[0][0].upper() + words[0][1:]
    words[-1] += "."
    return words


def _build_pool() -> tuple[list[tuple[str, ...]], dict[int, list[tuple[str, ...]]]]:
    """Sentences as token tuples (word + space), built once: answers just pick from them,
    which keeps answer generation to a few microseconds on the server's hot path."""
    rng = random.Random(POOL_SEED)
    pool = list(dict.fromkeys(tuple(w + " " for w in _sentence_words(rng)) for _ in range(POOL_SIZE)))
    longest = max(map(len, pool))
    at_most = {k: [p for p in pool if len(p) <= k] for k in range(MIN_SENTENCE, longest + 1)}
    return pool, at_most


SENTENCES, SENTENCES_AT_MOST = _build_pool()
LONGEST = max(SENTENCES_AT_MOST)
CLOSER_TOKENS = {k: [tuple(w + " " for w in c) for c in v] for k, v in CLOSERS.items()}


def prose_tokens(rng: random.Random, n: int) -> list[str]:
    """Exactly n tokens of prose ending with a full sentence (no trailing space)."""
    tokens: list[str] = []
    seen: set[int] = set()  # sentence ids already used: an answer never repeats itself
    draw = rng.random  # int(draw() * n): a fraction of randrange's cost
    while len(tokens) < n:
        left = n - len(tokens)
        if left < MIN_SENTENCE:
            choices = CLOSER_TOKENS[left]
        else:
            choices = SENTENCES if left > LONGEST else SENTENCES_AT_MOST[left]
        for _ in range(4):
            picked = choices[int(draw() * len(choices))]
            if id(picked) not in seen:
                break
        seen.add(id(picked))
        tokens.extend(picked)
    if tokens:
        tokens[-1] = tokens[-1].rstrip()
    return tokens


def sentence(rng: random.Random) -> str:
    return "".join(SENTENCES[int(rng.random() * len(SENTENCES))]).rstrip()
