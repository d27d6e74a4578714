"""A small JSON Schema validator for when `jsonschema` is not installed (it is a dev
dependency only). It covers the keywords structured-output schemas use: type, enum, const,
properties, required, additionalProperties, items, min/maxItems, uniqueItems,
min/maxLength, pattern, minimum/maximum (inclusive and exclusive), multipleOf, anyOf, oneOf,
allOf, not, and local $refs. Unknown keywords are ignored, as the spec says.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def first_error(instance: Any, schema: Any) -> tuple[str, str] | None:
    """(JSON path, message) of the first violation, or None when valid."""
    return _check(instance, schema, schema, "$")


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _resolve(schema: Any, root: Any) -> Any:
    for _ in range(32):
        ref = schema.get("$ref") if isinstance(schema, dict) else None
        if not isinstance(ref, str) or not ref.startswith("#"):
            return schema
        target = root
        for part in filter(None, ref[1:].split("/")):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _check(value: Any, schema: Any, root: Any, path: str) -> tuple[str, str] | None:
    if schema is True or schema == {}:
        return None
    if schema is False:
        return path, "no value is allowed here"
    schema = _resolve(schema, root)
    for check in (_check_type, _check_values, _check_combinators):
        if (error := check(value, schema, root, path)) is not None:
            return error
    if isinstance(value, dict):
        return _check_object(value, schema, root, path)
    if isinstance(value, list):
        return _check_array(value, schema, root, path)
    return None


def _check_type(value: Any, schema: dict, root: Any, path: str) -> tuple[str, str] | None:
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind else []
    if kinds and not any(_TYPES.get(k, lambda v: True)(value) for k in kinds):
        return path, f"{_short(value)} is not of type {' or '.join(map(repr, kinds))}"
    return None


def _check_values(value: Any, schema: dict, root: Any, path: str) -> tuple[str, str] | None:
    if "const" in schema and value != schema["const"]:
        return path, f"{_short(value)} is not {schema['const']!r}"
    if "enum" in schema and value not in schema["enum"]:
        return path, f"{_short(value)} is not one of {schema['enum']!r}"
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return path, f"{_short(value)} is shorter than {schema['minLength']}"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return path, f"{_short(value)} is longer than {schema['maxLength']}"
        if "pattern" in schema and not _regex(schema["pattern"]).search(value):
            return path, f"{_short(value)} does not match {schema['pattern']!r}"
    if _TYPES["number"](value):
        return _check_number(value, schema, path)
    return None


def _check_number(value: float, schema: dict, path: str) -> tuple[str, str] | None:
    bounds = (("minimum", lambda b: value < b, "less than"),
              ("maximum", lambda b: value > b, "greater than"),
              ("exclusiveMinimum", lambda b: value <= b, "less than or equal to"),
              ("exclusiveMaximum", lambda b: value >= b, "greater than or equal to"))
    for key, broken, words in bounds:
        bound = schema.get(key)
        if type(bound) in (int, float) and broken(bound):
            return path, f"{value!r} is {words} the {key} {bound!r}"
    step = schema.get("multipleOf")
    if step and abs(value / step - round(value / step)) > 1e-9:
        return path, f"{value!r} is not a multiple of {step!r}"
    return None


def _check_combinators(value: Any, schema: dict, root: Any,
                       path: str) -> tuple[str, str] | None:
    for part in schema.get("allOf") or ():
        if (error := _check(value, part, root, path)) is not None:
            return error
    if "anyOf" in schema:
        if all(_check(value, part, root, path) for part in schema["anyOf"]):
            return path, f"{_short(value)} matches none of the anyOf schemas"
    if "oneOf" in schema:
        matches = sum(_check(value, part, root, path) is None for part in schema["oneOf"])
        if matches != 1:
            return path, f"{_short(value)} matches {matches} of the oneOf schemas, not exactly 1"
    if "not" in schema and _check(value, schema["not"], root, path) is None:
        return path, f"{_short(value)} should not match the 'not' schema"
    return None


def _check_object(value: dict, schema: dict, root: Any, path: str) -> tuple[str, str] | None:
    props = schema.get("properties") or {}
    for key in schema.get("required") or ():
        if key not in value:
            return path, f"{key!r} is a required property"
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        sub = f"{path}.{key}"
        if key in props:
            if (error := _check(item, props[key], root, sub)) is not None:
                return error
        elif extra is False:
            return path, f"additional property {key!r} is not allowed"
        elif isinstance(extra, dict) and (error := _check(item, extra, root, sub)) is not None:
            return error
    return None


def _check_array(value: list, schema: dict, root: Any, path: str) -> tuple[str, str] | None:
    if len(value) < schema.get("minItems", 0):
        return path, f"has {len(value)} items, fewer than minItems {schema['minItems']}"
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        return path, f"has {len(value)} items, more than maxItems {schema['maxItems']}"
    if schema.get("uniqueItems"):
        seen: list[Any] = []
        for item in value:
            if item in seen:
                return path, f"has non-unique item {_short(item)}"
            seen.append(item)
    items = schema.get("items")
    if isinstance(items, (dict, bool)):
        for index, item in enumerate(value):
            if (error := _check(item, items, root, f"{path}[{index}]")) is not None:
                return error
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"
