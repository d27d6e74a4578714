"""Reading a record's `messages` in the OpenAI chat shape, whatever it holds: several
user/assistant turns, assistant tool calls with `content: null`, `tool` results that answer a
call by its id, and the record's `tools` list. Every reader of records (export, dedup, the judge
prompt, the review page) goes through these, so none assumes `content` is a string."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # a JSON string, as the OpenAI format carries it


def messages_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    messages = record.get("messages")
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def text_of(content: Any) -> str:
    """A message's text: "" for null (an assistant turn that only calls tools), the text parts
    of a content-part list, JSON for anything else."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        return "".join(p["text"] for p in content
                       if isinstance(p, dict) and isinstance(p.get("text"), str))
    return orjson.dumps(content).decode()


def json_text(value: Any) -> str:
    """`arguments` and tool results are JSON strings in the format; a record that holds them
    as objects is written out as compact JSON."""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def tool_calls_of(message: dict[str, Any]) -> list[ToolCall]:
    calls = message.get("tool_calls")
    out = []
    for call in calls if isinstance(calls, list) else []:
        if not isinstance(call, dict):
            continue
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        out.append(ToolCall(str(call.get("id") or ""), str(function.get("name") or ""),
                            json_text(function.get("arguments", "{}"))))
    return out


def call_names(messages: list[dict[str, Any]]) -> dict[str, str]:
    """Tool call id -> function name, so a tool result can be shown with the call it answers."""
    return {c.id: c.name for m in messages for c in tool_calls_of(m)}


def tools_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The functions of the record's `tools` ({"type": "function", "function": {...}} each)."""
    tools = record.get("tools")
    out = []
    for tool in tools if isinstance(tools, list) else []:
        if isinstance(tool, dict):
            function = tool.get("function")
            out.append(function if isinstance(function, dict) else tool)
    return out


def is_conversation(record: dict[str, Any]) -> bool:
    """More than one instruction and its answer: tools, tool calls or results, or an assistant
    turn before the last one. Readers show these whole; the others keep their plain shape."""
    if record.get("tools"):
        return True
    messages = messages_of(record)
    assistants = 0
    for message in messages:
        if message.get("role") == "tool" or message.get("tool_calls"):
            return True
        assistants += message.get("role") == "assistant"
    return assistants > 1

