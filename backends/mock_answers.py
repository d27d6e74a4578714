"""Answers of the mock server: pure, deterministic functions of a request body.

The same body (minus `stream`/`stream_options`) always yields the same answer, so tests can
compare streamed and non-streamed runs, and reruns of a pipeline reproduce their data. A mock
"token" is one word with its following space or punctuation; prompts are counted with
`engine.tokens` so client-side estimates and server-side usage agree.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from typing import Any

import orjson

from engine.tokens import count_messages, estimate_tokens

SEED_EXCLUDED = ("stream", "stream_options")


class BadRequest(ValueError):
    """The body is not a valid completion request; the message goes to the client."""


@dataclass(slots=True)
class Choice:
    tokens: list[str]  # concatenated they are the text; one SSE event each when streaming
    finish_reason: str  # "stop", or "length" when max_tokens cut the answer

    @property
    def text(self) -> str:
        return "".join(self.tokens)


@dataclass(slots=True)
class Answer:
    choices: list[Choice]
    prompt_tokens: int
    completion_tokens: int


def body_seed(body: dict[str, Any]) -> int:
    """Seed from the canonical body, so key order and streaming flags do not matter."""
    canon = {k: v for k, v in body.items() if k not in SEED_EXCLUDED}
    key = orjson.dumps(canon, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


def build_answer(body: Any, chat: bool, length: tuple[int, int]) -> Answer:
    """Validate a chat or text-completion body and produce its answer."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a non-empty string")
    cap = max_tokens_of(body)
    if chat:
        messages = _messages(body)
        choice = _answer_choice(body, length, cap)
        return Answer([choice], count_messages(messages), len(choice.tokens))
    prompts = _prompts(body)
    if len(prompts) == 1 and isinstance(body["prompt"], str):
        choices = [_answer_choice(body, length, cap)]
    else:
        # Each element answers as if sent alone, so batching never changes the data.
        choices = [_answer_choice({**body, "prompt": p}, length, cap) for p in prompts]
    prompt_tokens = sum(estimate_tokens(p) for p in prompts)
    return Answer(choices, prompt_tokens, sum(len(c.tokens) for c in choices))


def max_tokens_of(body: dict[str, Any]) -> int | None:
    cap = body.get("max_completion_tokens")
    cap = body.get("max_tokens") if cap is None else cap
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
        raise BadRequest("'max_tokens' must be a non-negative integer")
    return cap


def _messages(body: dict[str, Any]) -> list[dict[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' is required and must be a non-empty list")
    out = []
    for m in messages:
        if not isinstance(m, dict) or "role" not in m:
            raise BadRequest("each message must be an object with a 'role'")
        content = m.get("content")
        if isinstance(content, list):  # content parts (multimodal style): count their text
            text = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            m = {"role": m["role"], "content": text}
        elif content is not None and not isinstance(content, str):
            raise BadRequest("message 'content' must be a string or a list of parts")
        out.append(m)
    return out


def _prompts(body: dict[str, Any]) -> list[str]:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return prompt
    raise BadRequest("'prompt' is required: a string or a non-empty list of strings")


def _answer_choice(body: dict[str, Any], length: tuple[int, int], cap: int | None) -> Choice:
    rng = random.Random(body_seed(body))
    return capped_choice(_answer_tokens(body, rng, length), cap)


def capped_choice(tokens: list[str], cap: int | None) -> Choice:
    """The answer as sent: cut at max_tokens (finish_reason 'length') when longer."""
    if cap is None or len(tokens) <= cap:
        return Choice(tokens, "stop")
    tokens = tokens[:cap]
    if tokens:
        tokens[-1] = tokens[-1].rstrip()
    return Choice(tokens, "length")


def _answer_tokens(body: dict[str, Any], rng: random.Random, length: tuple[int, int]) -> list[str]:
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        kind = fmt.get("type")
        if kind == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema")
            if not isinstance(schema, dict):
                raise BadRequest("response_format.json_schema.schema must be an object")
            return json_tokens(json_for_schema(schema, rng))
        if kind == "json_object":
            return json_tokens({"text": sentence(rng)})
    n = rng.randint(*length)
    return prose_tokens(rng, n)


def json_tokens(value: Any) -> list[str]:
    """Serialize with spaces after separators, then split at spaces: JSON read as words."""
    words = json.dumps(value, ensure_ascii=False).split(" ")
    tokens = [w + " " for w in words]
    tokens[-1] = words[-1]
    return tokens


# --- Prose: sentence templates over word lists, so default validators see real English. ---
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


# --- JSON that validates against a (practical subset of) JSON Schema. ---
MAX_DEPTH, OPTIONAL_DEPTH = 16, 4  # recursive $refs stop there


def json_for_schema(schema: dict[str, Any], rng: random.Random) -> Any:
    return _value(schema, rng, schema, 0)


def _value(s: Any, rng: random.Random, root: dict, depth: int) -> Any:
    s = _resolve(s, root) if isinstance(s, dict) else {}
    if "const" in s:
        return s["const"]
    if s.get("enum"):
        return rng.choice(s["enum"])
    for key in ("anyOf", "oneOf"):
        if s.get(key):
            options = [_resolve(o, root) for o in s[key]]
            pick = next((o for o in options if o.get("type") != "null"), options[0])
            return _value({**_without(s, key), **pick}, rng, root, depth)
    if s.get("allOf"):
        return _value(_merge_all(s, root), rng, root, depth)
    kind = _type(s)
    if depth > MAX_DEPTH:
        return {} if kind == "object" else [] if kind == "array" else None
    maker = _MAKERS.get(kind, _string)
    return maker(s, rng, root, depth + 1)


def _resolve(s: dict, root: dict) -> dict:
    for _ in range(MAX_DEPTH):
        ref = s.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#"):
            return s
        target: Any = root
        for part in filter(None, ref[1:].split("/")):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        s = {**target, **_without(s, "$ref")}
    return s


def _without(s: dict, key: str) -> dict:
    return {k: v for k, v in s.items() if k != key}


def _merge_all(s: dict, root: dict) -> dict:
    merged = _without(s, "allOf")
    for part in s["allOf"]:
        part = _resolve(part, root)
        props = {**merged.get("properties", {}), **part.get("properties", {})}
        required = list(dict.fromkeys([*merged.get("required", []), *part.get("required", [])]))
        merged = {**merged, **part, "properties": props, "required": required}
    return merged


def _type(s: dict) -> str:
    kind = s.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind:
        return kind
    return "object" if "properties" in s or "required" in s else "array" if "items" in s else "string"


def _object(s: dict, rng: random.Random, root: dict, depth: int) -> dict:
    props, required = s.get("properties") or {}, s.get("required") or ()
    # Optional properties too, except deep down, where recursive schemas must bottom out.
    out = {k: _value(v, rng, root, depth) for k, v in props.items()
           if depth <= OPTIONAL_DEPTH or k in required}
    out.update({key: sentence(rng) for key in required if key not in out})
    if not props and not out and s.get("additionalProperties", True) is not False:
        out["text"] = sentence(rng)  # a free-form object still says something
    return out


def _array(s: dict, rng: random.Random, root: dict, depth: int) -> list:
    lo, hi = s.get("minItems", 0), s.get("maxItems")
    n = rng.randint(lo, min(hi, lo + 4)) if hi is not None and "minItems" in s else max(lo, 3)
    n = min(n, hi) if hi is not None else n
    items = s.get("items") if isinstance(s.get("items"), dict) else {}
    out: list = []
    for _ in range(4 * n + 4):  # extra tries only matter for uniqueItems
        if len(out) >= n:
            break
        value = _value(items, rng, root, depth)
        if not s.get("uniqueItems") or value not in out:
            out.append(value)
    return out


def _string(s: dict, rng: random.Random, root: dict, depth: int) -> str:
    fmt = s.get("format")
    if fmt in _FORMATS:
        return _FORMATS[fmt](rng)
    lo, hi = s.get("minLength", 0), s.get("maxLength")
    text = sentence(rng)
    while len(text) < lo:
        text += " " + sentence(rng)
    if hi is not None and len(text) > hi:
        text = _shorten(text, hi, lo)
    return text


def _shorten(text: str, hi: int, lo: int) -> str:
    """Cut at a word boundary and keep the final period; raw cut when no word fits."""
    cut = text[: max(hi - 1, 0)].rsplit(" ", 1)[0].rstrip(",.") + "."
    return cut if lo <= len(cut) <= hi and len(cut) > 1 else text[:hi]


_FORMATS = {
    "date": lambda r: f"20{r.randint(10, 29)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
    "date-time": lambda r: _FORMATS["date"](r) + f"T{r.randint(0, 23):02d}:30:00Z",
    "email": lambda r: f"reader{r.randint(1, 999)}@example.com",
    "uri": lambda r: f"https://example.com/items/{r.randint(1, 9999)}",
}


def _numeric(s: dict, rng: random.Random, integer: bool) -> int | float:
    """Within minimum/maximum (exclusive bounds nudged inward), on multipleOf if given."""
    nudge = 1 if integer else 1e-6
    lo, hi = s.get("minimum"), s.get("maximum")
    if type(s.get("exclusiveMinimum")) in (int, float):  # not the draft-4 boolean form
        lo = max(x for x in (lo, s["exclusiveMinimum"] + nudge) if x is not None)
    if type(s.get("exclusiveMaximum")) in (int, float):
        hi = min(x for x in (hi, s["exclusiveMaximum"] - nudge) if x is not None)
    lo = lo if lo is not None else (1 if hi is None or hi >= 100 else hi - 100)
    hi = max(lo, hi if hi is not None else max(lo + 99, 100))
    step = s.get("multipleOf") or (1 if integer else None)
    if step:
        first, last = -int(-lo // step), int(hi // step)
        value = rng.randint(first, max(first, last)) * step
        return int(value) if integer else value
    value = rng.uniform(lo, hi)
    return round(value, 2) if lo <= round(value, 2) <= hi else value


_MAKERS = {"object": _object, "array": _array, "string": _string,
           "integer": lambda s, rng, root, depth: _numeric(s, rng, True),
           "number": lambda s, rng, root, depth: _numeric(s, rng, False),
           "boolean": lambda s, rng, root, depth: rng.random() < 0.5,
           "null": lambda s, rng, root, depth: None}
