"""Tools of a dialogue: the offered list checked, the assistant's calls checked against it,
and the prompted format for models without native tool calls (the tools described in the
system message, the calls asked for as JSON under a response_format, then turned into
OpenAI's `tool_calls`, so records have one shape whichever way the model was asked)."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from gristmill.validation import jsonschema_lite


def checked_tools(raw: Any) -> list[dict[str, Any]]:
    """The offered tools in OpenAI's format; ValueError says what is wrong."""
    if isinstance(raw, str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ValueError(f"tools: not JSON: {raw[:80]!r}") from None
    if not isinstance(raw, list) or not raw:
        raise ValueError("tools: expected a non-empty list of {type: function, function: ...}")
    names = set()
    for tool in raw:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ValueError(f"tools: not a function tool: {str(tool)[:80]}")
        parameters = function.get("parameters", {"type": "object"})
        if not isinstance(parameters, dict):
            raise ValueError(f"tools: {function['name']}: parameters is not a JSON schema")
        if function["name"] in names:
            raise ValueError(f"tools: {function['name']} is offered twice")
        names.add(function["name"])
    return [{"type": "function", "function": t["function"]} for t in raw]


def call_problem(calls: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str | None:
    """Why the calls cannot be run (a tool not offered, arguments that are not a JSON object
    or break the tool's parameters), None when they can."""
    if not tools:
        return "tool calls where no tool was offered"
    functions = {t["function"]["name"]: t["function"] for t in tools}
    for call in calls:
        name = call["function"]["name"]
        if name not in functions:
            return f"call of {name!r}, which is not offered ({', '.join(sorted(functions))})"
        try:
            arguments = orjson.loads(call["function"]["arguments"] or "{}")
        except orjson.JSONDecodeError:
            return f"{name}: arguments are not JSON: {call['function']['arguments'][:80]!r}"
        if not isinstance(arguments, dict):
            return f"{name}: arguments are not a JSON object"
        error = jsonschema_lite.first_error(arguments, functions[name].get("parameters") or {})
        if error is not None:
            return f"{name}: arguments break the parameters at {error[0]}: {error[1][:120]}"
    return None


def tool_of(tools: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(t for t in tools if t["function"]["name"] == name)


# -- the prompted format -------------------------------------------------------------------

def prompted_system(system: str | None, tools: list[dict[str, Any]]) -> str:
    described = "\n".join(orjson.dumps(t["function"]).decode() for t in tools)
    guide = ("You can call these tools (JSON descriptions):\n" + described + "\n\nAnswer "
             "with a JSON object. To call tools: {\"tool_calls\": [{\"name\": ..., "
             "\"arguments\": {...}}], \"answer\": \"\"}. To answer the user: "
             "{\"tool_calls\": [], \"answer\": \"your answer\"}. Tool results come back as "
             "messages that start with 'Tool result'.")
    return f"{system}\n\n{guide}" if system else guide


def prompted_format(tools: list[dict[str, Any]], may_call: bool) -> dict[str, Any]:
    """A schema whose calls can only name offered tools with their parameters; no call at
    all once the assistant must answer."""
    options = [{"type": "object", "additionalProperties": False,
                "required": ["name", "arguments"],
                "properties": {"name": {"const": t["function"]["name"]},
                               "arguments": t["function"].get("parameters") or {"type": "object"}}}
               for t in tools]
    calls: dict[str, Any] = {"type": "array", "items": {"anyOf": options}}
    if not may_call:
        calls["maxItems"] = 0
    schema = {"type": "object", "additionalProperties": False,
              "required": ["tool_calls", "answer"],
              "properties": {"tool_calls": calls, "answer": {"type": "string"}}}
    return {"type": "json_schema", "json_schema": {"name": "turn", "schema": schema}}


def prompted_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation as plain chat: calls as the JSON the model wrote, results as user
    messages (a chat template without a tool role accepts them)."""
    names: dict[str, str] = {}
    plain = []
    for m in messages:
        if m.get("tool_calls"):
            calls = [{"name": c["function"]["name"],
                      "arguments": orjson.loads(c["function"]["arguments"] or "{}")}
                     for c in m["tool_calls"]]
            names.update((c["id"], c["function"]["name"]) for c in m["tool_calls"])
            plain.append({"role": "assistant", "content": orjson.dumps(
                {"tool_calls": calls, "answer": ""}).decode()})
        elif m["role"] == "tool":
            name = names.get(m["tool_call_id"], "tool")
            plain.append({"role": "user", "content": f"Tool result of {name} "
                                                      f"({m['tool_call_id']}): {m['content']}"})
        elif m["role"] == "assistant":
            plain.append({"role": "assistant", "content": orjson.dumps(
                {"tool_calls": [], "answer": m["content"]}).decode()})
        else:
            plain.append(m)
    return plain


def read_prompted(text: str, item_id: str, turn: str) -> tuple[str, list[dict[str, Any]] | None]:
    """(answer text, calls in OpenAI's shape) of a prompted answer; ValueError when it is not
    the JSON asked for. Call ids are made from the item and the turn: the same on a rerun."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ValueError(f"not the JSON asked for: {text[:80]!r}") from None
    if not isinstance(value, dict) or not isinstance(value.get("tool_calls", []), list):
        raise ValueError(f"not the JSON asked for: {text[:80]!r}")
    calls = []
    for index, call in enumerate(value.get("tool_calls") or []):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise ValueError(f"a call without a name: {str(call)[:80]}")
        digest = hashlib.blake2b(f"{item_id}/{turn}/{index}".encode(), digest_size=6).hexdigest()
        calls.append({"id": f"call_{digest}", "type": "function", "function": {
            "name": call["name"], "arguments": orjson.dumps(call.get("arguments", {})).decode()}})
    answer = value.get("answer")
    return (answer if isinstance(answer, str) else ""), calls or None


def transcript(messages: list[dict[str, Any]]) -> str:
    """The conversation as text, for the agents that simulate the user and the tools."""
    lines = []
    for m in messages:
        if m["role"] == "system":
            continue
        if m.get("tool_calls"):
            lines.extend(f"Assistant calls {c['function']['name']}({c['function']['arguments']})"
                         for c in m["tool_calls"])
        elif m["role"] == "tool":
            lines.append(f"Tool result ({m['tool_call_id']}): {m['content']}")
        else:
            lines.append(f"{m['role'].capitalize()}: {m['content']}")
    return "\n\n".join(lines)
