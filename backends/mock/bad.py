"""The mock server's bad answers (`--bad-rate`): which arrivals get one, and what it looks like
— refusals, repetition loops, broken JSON and wrong-language prose, long enough that stopping
them early shows — so validators can be tested and benchmarked against a real server."""

from __future__ import annotations

import json
import random
from typing import Any

from gristmill.backends.mock.answers import Answer, body_seed, capped_choice, max_tokens_of
from gristmill.backends.mock.json_answers import json_for_schema
from gristmill.backends.mock.prose import SENTENCES, prose_tokens, sentence

BAD_KINDS = ("refusal", "loop", "json", "language")
REFUSAL = "I'm sorry, but I can't help with that. "
FOREIGN = {  # wrong-language filler: German (Latin script, no English stop words), Russian
    "de": ("Die Forschungsgruppe|Der Lehrer|Eine Nachbarin|Das Planungsbüro|Viele Studenten",
           "prüfte|beschrieb|verbesserte|erklärte|sammelte|besprach",
           "die Ergebnisse|einen einfachen Plan|den Zeitplan|die Notizen|neue Ideen",
           "mit großer Sorgfalt.|vor dem Termin.|im Frühling.|ohne Eile.|für die Gemeinde."),
    "ru": ("Исследовательская группа|Учитель|Соседка|Многие студенты|Садовник",
           "проверила|описал|улучшила|объяснили|собрал",
           "результаты|простой план|расписание|заметки|новые идеи",
           "очень внимательно.|до срока.|весной.|без спешки.|для всех."),
}


class BadDrawer:
    """Per arrival, whatever the body: is this answer bad? One draw from its own seeded
    generator (apart from the faults), so a regenerated request may come out good."""

    __slots__ = ("rate", "kinds", "_rng")

    def __init__(self, rate: float, kinds: tuple[str, ...], seed: int = 0) -> None:
        self.rate, self.kinds = rate, kinds
        self._rng = random.Random(seed + 0xBAD)

    def draw(self) -> float | None:
        """None for a good answer, else a number in [0, 1) that picks the bad kind."""
        if self.rate <= 0.0:
            return None
        u = self._rng.random()
        return u / self.rate if u < self.rate else None

    def kind(self, pick: float, structured: bool) -> str | None:
        """JSON requests get broken JSON when allowed; text requests never do."""
        if structured and "json" in self.kinds:
            return "json"
        kinds = [k for k in self.kinds if k != "json"]
        return kinds[int(pick * len(kinds))] if kinds else None


def bad_tokens(kind: str, rng: random.Random, n: int, schema: dict | None) -> list[str]:
    """A long bad answer of n tokens, recognisable by the matching validator."""
    if kind == "refusal":
        tokens = [w + " " for w in REFUSAL.split()] + prose_tokens(rng, n)
    elif kind == "loop":
        looped = SENTENCES[int(rng.random() * len(SENTENCES))]
        tokens = prose_tokens(rng, 12)
        tokens[-1] += " "
        while len(tokens) < n:
            tokens.extend(looped)
    elif kind == "json":
        doc = json.dumps(json_for_schema(schema, rng) if schema else {"text": sentence(rng)})
        tokens = [w + " " for w in doc[:_cut_outside_strings(doc)].split(" ")]
        tokens += ["@@ ", "}}} ", "<broken> "] + prose_tokens(rng, n)
    else:
        parts = [p.split("|") for p in FOREIGN[rng.choice(("de", "ru"))]]
        tokens = []
        while len(tokens) < n:  # subject, verb, object, tail
            tokens.extend(w + " " for w in " ".join(map(rng.choice, parts)).split())
    tokens = tokens[:n]
    tokens[-1] = tokens[-1].rstrip()
    return tokens


def _cut_outside_strings(doc: str) -> int:
    """Where to break a JSON text: after a separator about a third in, outside strings."""
    cuts, in_string, escaped = [], False, False
    for i, c in enumerate(doc):
        if in_string:
            in_string, escaped = (not (c == '"' and not escaped)), (c == "\\" and not escaped)
        elif c == '"':
            in_string = True
        elif c in ",{[" and i + 1 < len(doc):
            cuts.append(i + 1)
    return cuts[len(cuts) // 3] if cuts else 0


def bad_answer(answer: Answer, body: dict[str, Any], kind: str, n: int) -> Answer:
    """`answer` with every choice replaced by a bad one (max_tokens still applies)."""
    rng, cap = random.Random(body_seed(body)), max_tokens_of(body)
    fmt = body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") if isinstance(fmt, dict) else None
    choices = [capped_choice(bad_tokens(kind, rng, n, schema), cap) for _ in answer.choices]
    return Answer(choices, answer.prompt_tokens, sum(len(c.tokens) for c in choices))
