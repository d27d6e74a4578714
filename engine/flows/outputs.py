"""What a stage asks the model for, and how its answer becomes items.

A 'list' output is requested with a JSON-schema response_format by default; without one (for
endpoints that lack it) a tolerant parser reads JSON anywhere in the text, or else numbered or
bulleted lines. An answer that yields nothing usable raises InvalidOutput with the reason."""

from __future__ import annotations

import re
from typing import Any

import orjson

from gristmill.config.pipeline import OutputConfig
from gristmill.errors import InvalidOutput

_BULLET = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+(.*\S)\s*$")


def response_format(output: OutputConfig) -> dict[str, Any] | None:
    """The response_format of a stage's requests; a `type: json` output with a templated
    `format` has one per item (`json_format` of the rendered schema)."""
    if output.type == "json" and output.json_schema and isinstance(output.format, dict):
        return json_format(output.format)
    if output.type != "list" or not output.json_schema:
        return None
    item: dict[str, Any] = {"type": "string", "minLength": 1}
    if output.max_chars:
        item["maxLength"] = output.max_chars
    schema = {"type": "object", "additionalProperties": False, "required": ["items"],
              "properties": {"items": {"type": "array", "items": item,
                                       "minItems": output.min_items,
                                       "maxItems": output.max_items}}}
    return {"type": "json_schema",
            "json_schema": {"name": "items", "strict": True, "schema": schema}}


def json_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def rendered_schema(text: str) -> dict[str, Any]:
    """A `format` template's output for one item; ValueError when it is not a JSON schema."""
    try:
        schema = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ValueError(f"format rendered text that is not JSON: {text[:120]!r}") from None
    if not isinstance(schema, dict):
        raise ValueError(f"format rendered {type(schema).__name__}, not a JSON schema object")
    return schema


def item_format(template: Any, variables: dict[str, Any]) -> dict[str, Any]:
    """The response format of a `format` template rendered for one item (ValueError when it
    renders no JSON schema)."""
    return json_format(rendered_schema(template.render(variables)))


def parse_output(output: OutputConfig, text: str) -> list[Any]:
    if output.type == "json":
        for candidate in (text, _outermost_json(text)):
            if candidate:
                try:
                    return [orjson.loads(candidate)]
                except orjson.JSONDecodeError:
                    continue
        raise InvalidOutput("unparseable answer: expected JSON", text=text)
    if output.type == "text":
        if not text.strip():
            raise InvalidOutput("empty answer", text=text)
        return [text.strip()]
    items = _json_items(text)
    if items is None and not output.json_schema:
        items = [m.group(1) for line in text.splitlines() if (m := _BULLET.match(line))]
    if not items:
        raise InvalidOutput("unparseable list: expected JSON {\"items\": [strings]}"
                            if output.json_schema else "unparseable list: no JSON list and "
                            "no numbered or bulleted lines", text=text)
    items = [s.strip() for s in items if isinstance(s, str) and s.strip()]
    if len(items) < output.min_items:
        raise InvalidOutput(f"list too short: {len(items)} < min_items {output.min_items}",
                            text=text)
    return items[: output.max_items]


def _json_items(text: str) -> list[Any] | None:
    for candidate in (text, _outermost_json(text)):
        if not candidate:
            continue
        try:
            value = orjson.loads(candidate)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict):
            value = value.get("items")
        if isinstance(value, list):
            return value
    return None


def _outermost_json(text: str) -> str | None:
    """The span from the first '{' or '[' to the last matching closer (prose around JSON)."""
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        return None
    start = min(starts)
    end = text.rfind("}" if text[start] == "{" else "]")
    return text[start:end + 1] if end > start else None
