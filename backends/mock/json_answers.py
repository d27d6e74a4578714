"""JSON of the mock server's structured answers: a value that validates against a (practical
subset of) JSON Schema."""

from __future__ import annotations

import random
import re
from typing import Any

from gristmill.backends.mock.prose import sentence

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
    extra = s.get("additionalProperties", True)
    if not props and not out and isinstance(extra, dict):
        # a map (e.g. a tool's parameters): named entries; one deep down, so recursion is linear
        for _ in range(rng.randint(1, 3) if depth <= OPTIONAL_DEPTH else 1):
            out["_".join(re.findall(r"[a-z]+", sentence(rng).lower())[:2])] = \
                _value(extra, rng, root, depth)
    if not props and not out and extra is not False:
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
    if isinstance(s.get("pattern"), str):  # identifiers, the common case: snake_case words
        words = re.findall(r"[a-z]+", text.lower())  # three of them, so names rarely repeat
        name = "_".join(words[i] for i in sorted(rng.sample(range(len(words)), min(3, len(words)))))
        if re.fullmatch(s["pattern"], name):
            return name
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
