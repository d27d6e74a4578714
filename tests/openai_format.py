"""The rules of OpenAI's chat fine-tuning format, checked line by line, written apart from the
exporter so the exporter's output is judged by an independent reading of the format."""

from __future__ import annotations

import json
from typing import Any

LINE_KEYS = {"messages", "tools", "parallel_tool_calls"}
MESSAGE_KEYS = {"role", "content", "name", "tool_calls", "tool_call_id", "weight"}
ROLES = {"system", "user", "assistant", "tool"}


def _is_json(text: Any) -> bool:
    try:
        json.loads(text)
    except (TypeError, ValueError):
        return False
    return True


def _tool_names(tools: Any) -> tuple[set[str], list[str]]:
    errors, names = [], set()
    if not isinstance(tools, list) or not tools:
        return names, ["tools: must be a non-empty list"]
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type") != "function" or not isinstance(function, dict):
            errors.append(f"tools[{i}]: must be {{type: function, function: {{...}}}}")
        elif not function.get("name") or not isinstance(function.get("parameters"), dict):
            errors.append(f"tools[{i}]: a function needs a name and a parameters object")
        else:
            names.add(function["name"])
    return names, errors


def _calls(i: int, message: dict[str, Any], tools: set[str] | None, open_calls: set[str],
           seen: set[str]) -> list[str]:
    calls = message["tool_calls"]
    if message["role"] != "assistant" or not isinstance(calls, list) or not calls:
        return [f"messages[{i}]: tool_calls must be a non-empty list on an assistant message"]
    errors = []
    for call in calls:
        function = call.get("function") or {}
        if call.get("type") != "function" or not isinstance(call.get("id"), str) \
                or call["id"] in seen:
            errors.append(f"messages[{i}]: a tool call needs type function and a new id")
        if not function.get("name") or (tools is not None and function["name"] not in tools):
            errors.append(f"messages[{i}]: a tool call names no declared function")
        if not isinstance(function.get("arguments"), str) or not _is_json(function["arguments"]):
            errors.append(f"messages[{i}]: arguments must be a JSON string")
        seen.add(call.get("id"))
        open_calls.add(call.get("id"))
    return errors


def format_errors(line: dict[str, Any]) -> list[str]:
    """Every rule a line breaks; [] for a valid training example."""
    errors = [f"unexpected key {k!r}" for k in set(line) - LINE_KEYS]
    messages = line.get("messages")
    if not isinstance(messages, list) or not messages:
        return errors + ["messages: must be a non-empty list"]
    tools = None
    if "tools" in line:
        tools, tool_errors = _tool_names(line["tools"])
        errors += tool_errors
    open_calls: set[str] = set()
    seen: set[str] = set()
    for i, m in enumerate(messages):
        errors += [f"messages[{i}]: unexpected key {k!r}" for k in set(m) - MESSAGE_KEYS]
        if m.get("role") not in ROLES:
            errors.append(f"messages[{i}]: role {m.get('role')!r}")
            continue
        content = m.get("content")
        if m.get("tool_calls") is not None:
            errors += _calls(i, m, tools, open_calls, seen)
        elif not isinstance(content, str):
            errors.append(f"messages[{i}]: content must be text unless the message calls tools")
        if m["role"] == "tool":
            if m.get("tool_call_id") not in open_calls:
                errors.append(f"messages[{i}]: tool_call_id answers no earlier open call")
            open_calls.discard(m.get("tool_call_id"))
        elif "tool_call_id" in m:
            errors.append(f"messages[{i}]: tool_call_id on a {m['role']} message")
    if messages[-1].get("role") != "assistant" or messages[-1].get("tool_calls"):
        errors.append("the conversation must end with an assistant answer")
    return errors
