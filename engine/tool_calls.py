"""Tool calls in OpenAI's shape, `{"id", "type": "function", "function": {"name", "arguments"}}`
with `arguments` a JSON string: read from an answer body, assembled from streamed fragments.

A call that breaks the shape raises ValueError with what is wrong; the backend turns it into
a malformed answer (a retry), so a broken call never reaches a record."""

from __future__ import annotations

from typing import Any

import orjson


def tool_call(raw: Any) -> dict[str, Any]:
    """One call of a non-streamed message. `arguments` sent as an object (some servers do)
    becomes the JSON string the format asks for."""
    if not isinstance(raw, dict):
        raise ValueError("a tool call is not an object")
    function = raw.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) \
            or not function["name"]:
        raise ValueError("a tool call has no function name")
    call_id = raw.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise ValueError("a tool call has no id")
    return {"id": call_id, "type": "function",
            "function": {"name": function["name"], "arguments": _arguments(function)}}


def tool_calls_of(raw: Any) -> list[dict[str, Any]] | None:
    """A message's `tool_calls` (None when it has none)."""
    if raw is None or raw == []:
        return None
    if not isinstance(raw, list):
        raise ValueError("tool_calls is not a list")
    return [tool_call(c) for c in raw]


def _arguments(function: dict[str, Any]) -> str:
    arguments = function.get("arguments", "")
    if isinstance(arguments, dict):
        return orjson.dumps(arguments).decode()
    if not isinstance(arguments, str):
        raise ValueError("a tool call's arguments are neither a JSON string nor an object")
    return arguments


def fragment(raw: Any, position: int) -> dict[str, Any]:
    """One streamed piece of a call: `index` says which call it continues; the first piece of
    a call carries its id and name, every piece may carry more of the arguments."""
    if not isinstance(raw, dict):
        raise ValueError("a streamed tool call is not an object")
    index = raw.get("index", position)
    function = raw.get("function") or {}
    if not isinstance(index, int) or not isinstance(function, dict):
        raise ValueError("a streamed tool call has a bad index or function")
    piece = {"index": index, "id": raw.get("id"), "name": function.get("name"),
             "arguments": function.get("arguments")}
    for key in ("id", "name", "arguments"):
        if piece[key] is not None and not isinstance(piece[key], str):
            raise ValueError(f"a streamed tool call's {key} is not a string")
    return piece


class ToolCallParts:
    """The calls of one streamed answer, put together from their fragments in order."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}

    def add(self, fragments: list[dict[str, Any]]) -> None:
        for piece in fragments:
            call = self._calls.setdefault(piece["index"], {"id": None, "name": None,
                                                           "arguments": []})
            call["id"] = call["id"] or piece["id"]
            call["name"] = call["name"] or piece["name"]
            if piece["arguments"]:
                call["arguments"].append(piece["arguments"])

    def calls(self) -> list[dict[str, Any]] | None:
        """The whole calls (None when none came); ValueError when one never got its id or
        name."""
        if not self._calls:
            return None
        return [tool_call({"id": c["id"], "function": {"name": c["name"],
                                                       "arguments": "".join(c["arguments"])}})
                for _, c in sorted(self._calls.items())]
