"""The mock server's tool calls: a chat request that offers `tools` is answered with a call
when the conversation's last message is the user's (a request the model would act on), and
with text once the tool results are in (the last message is a tool's). `tool_choice: "none"`
always gets text, `"required"` always a call. Deterministic, like every mock answer."""

from __future__ import annotations

import random
from typing import Any

import orjson

from gristmill.backends.mock.json_answers import json_for_schema


class ToolsError(ValueError):
    """The request's `tools` or `tool_choice` break the format (the message is the client's)."""


def wants_call(body: dict[str, Any], messages: list[dict[str, Any]]) -> bool:
    tools = body.get("tools")
    if tools is None:
        return False
    check_tools(tools)
    choice = body.get("tool_choice", "auto")
    if choice == "none":
        return False
    if choice == "required" or isinstance(choice, dict):
        return True
    return messages[-1].get("role") == "user"


def check_tools(tools: Any) -> None:
    if not isinstance(tools, list) or not tools:
        raise ToolsError("'tools' must be a non-empty list")
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ToolsError("each tool must be {\"type\": \"function\", \"function\": "
                             "{\"name\": ..., \"parameters\": {...}}}")


def tool_calls_for(body: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """One call of a tool (the forced one, else one picked by the body's seed), its
    arguments valid against the tool's parameters; its id a function of the seed, so the
    streamed and the whole answer name the same call."""
    rng = random.Random(seed)
    functions = [t["function"] for t in body["tools"]]
    choice = body.get("tool_choice")
    forced = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    function = next((f for f in functions if f["name"] == forced), None) or rng.choice(functions)
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    arguments = json_for_schema(parameters, rng)
    return [{"id": f"call_{seed & 0xFFFFFFFFFFFF:012x}", "type": "function",
             "function": {"name": function["name"], "arguments": orjson.dumps(arguments).decode()}}]
