"""Planted failure modes (`--plant`): answers that pass gristmill's default validators yet are
bad in a way a reviewer sees, so assertion mining can be measured against a known truth.

Which request gets a plant is a deterministic function of its last user message
(`planted_kind`): the truth is recoverable from any record that keeps that message, and a
rerun plants the same answers. The kinds:

  hedge          the answer opens with "It may be worth noting that ..."
  short          one short sentence where a full answer was asked for
  missing_field  a JSON answer without one of its schema's optional top-level properties
  off_topic      fluent prose about baking bread, whatever was asked
  contradiction  the answer restates a fact of its input with another number: the input says
                 "the river depth is 40", the answer opens "The river depth is 55." Only the
                 relation to the input shows it; the mock judge fails it (`contradictions`)."""

from __future__ import annotations

import hashlib
import random
import re
from typing import Any

from gristmill.backends.mock.answers import Answer, Choice, capped_choice, json_tokens, max_tokens_of
from gristmill.backends.mock.json_answers import json_for_schema
from gristmill.backends.mock.prose import prose_tokens

PLANT_KINDS = ("hedge", "short", "missing_field", "off_topic", "contradiction")
GOOD = "restate"  # the good twin of contradiction: not a failure
HEDGE = "It may be worth noting that"
SHORT_TOKENS = 6
# A fact: "the <one to four lowercase words> is <number>", as the input states it.
FACT = re.compile(r"\b[Tt]he ((?:[a-z]+ ){0,3}[a-z]+) is (\d{1,6})\b")
OFF_TOPIC = (
    "A sourdough starter needs flour, water and a warm corner of the kitchen.",
    "The dough rests overnight so that its flavour can deepen slowly.",
    "Bakers fold the dough gently to keep the bubbles inside.",
    "A hot oven and a heavy pot give the crust its deep colour.",
    "The loaf should cool on a rack before anyone cuts into it.",
    "Rye flour makes a denser crumb with a slightly sour taste.",
    "Many bakers weigh their flour instead of measuring it by the cup.",
    "Steam in the first minutes of baking helps the bread rise.",
)


def last_user_text(body: dict[str, Any]) -> str:
    """The last user message's text (chat), else the prompt (completions)."""
    messages = body.get("messages")
    if isinstance(messages, list):
        for m in reversed(messages):
            if isinstance(m, dict) and m.get("role") == "user":
                content = m.get("content")
                if isinstance(content, list):
                    return "".join(p.get("text", "") for p in content if isinstance(p, dict))
                return content if isinstance(content, str) else ""
        return ""
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) else ""


def facts(text: str) -> dict[str, int]:
    """The facts a text states: subject (lowercase) -> number; the first statement wins."""
    found: dict[str, int] = {}
    for subject, value in FACT.findall(text):
        found.setdefault(subject.lower(), int(value))
    return found


def contradiction(instruction: str, answer: str) -> tuple[str, int, int] | None:
    """(subject, the input's number, the answer's number) of a fact the answer contradicts."""
    given = facts(instruction)
    for subject, value in facts(answer).items():
        if subject in given and given[subject] != value:
            return subject, given[subject], value
    return None


def _schema(body: dict[str, Any]) -> dict[str, Any] | None:
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else None
    return None


def _optional(schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required") or ())
    return [k for k in (schema.get("properties") or {}) if k not in required]


def applicable(body: dict[str, Any], kinds: tuple[str, ...]) -> list[str]:
    """The kinds that can be planted in this request's answer."""
    schema = _schema(body)
    if schema is not None or isinstance(body.get("response_format"), dict):
        return ["missing_field"] if "missing_field" in kinds and schema and _optional(schema) \
            else []
    prose = [k for k in kinds if k not in ("missing_field", "contradiction")]
    if "contradiction" in kinds and facts(last_user_text(body)):
        prose.append("contradiction")
    return prose


def _draw(body: dict[str, Any], salt: bytes) -> float:
    digest = hashlib.blake2b(salt + last_user_text(body).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def planted_kind(body: dict[str, Any], rate: float, kinds: tuple[str, ...] = PLANT_KINDS
                 ) -> str | None:
    """The plant of this request, or None: a draw seeded by its last user message. Without a
    plant, a request whose message states a fact gets `restate` (a good answer that opens by
    restating it rightly) half the time when `contradiction` is planted, so that a
    contradiction differs from a good answer only in its number."""
    if rate <= 0.0:
        return None
    u = _draw(body, b"plant/")
    fits = applicable(body, kinds)
    if u < rate and fits:
        return fits[int(u / rate * len(fits))]
    if "contradiction" in fits and _draw(body, b"restate/") < 0.5:
        return "restate"
    return None


def plant(answer: Answer, body: dict[str, Any], kind: str) -> Answer:
    """`answer` with its first choice replaced by the planted one (max_tokens still applies)."""
    rng = random.Random(f"plant/{kind}/{last_user_text(body)}")
    good = answer.choices[0].tokens
    if kind == "hedge":
        first = good[0][:1].lower() + good[0][1:] if good else ""
        tokens = [w + " " for w in HEDGE.split()] + [first, *good[1:]]
    elif kind == "short":
        tokens = prose_tokens(rng, SHORT_TOKENS)
    elif kind == "missing_field":
        schema = _schema(body) or {}
        value = json_for_schema(schema, rng)
        value.pop(rng.choice(_optional(schema)), None)
        tokens = json_tokens(value)
    elif kind == "off_topic":
        lines = rng.sample(OFF_TOPIC, k=min(len(OFF_TOPIC), max(2, len(good) // 12)))
        tokens = [w + " " for w in " ".join(lines).split()]
    else:  # contradiction, or restate: the same claim with the input's own number
        subject, value = next(iter(facts(last_user_text(body)).items()))
        claim = f"The {subject} is {value + (rng.randint(5, 50) if kind != 'restate' else 0)}."
        tokens = [w + " " for w in claim.split()] + good
    tokens[-1] = tokens[-1].rstrip()
    choice: Choice = capped_choice(tokens, max_tokens_of(body))
    choices = [choice, *answer.choices[1:]]
    return Answer(choices, answer.prompt_tokens, sum(len(c.tokens) for c in choices),
                  answer.cached_tokens)


def parse_kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    if not kinds or set(kinds) - set(PLANT_KINDS):
        raise ValueError(f"a comma-separated list of {','.join(PLANT_KINDS)}")
    return kinds
