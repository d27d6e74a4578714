"""A compact text of a conversation for the judge: every turn under a `[role]` line, each tool
call under `[assistant calls NAME, id ID]` with its JSON arguments, each tool result under
`[result of NAME, id ID]`, and the tools the assistant had under `[tools]`:

    [tools]
    find_restaurant: Find a restaurant. Parameters: {"type":"object",...}

    [user]
    Book me a table for 2 tonight

    [assistant calls find_restaurant, id call_1]
    {"party":2}

    [result of find_restaurant, id call_1]
    {"name": "Luigi's"}

    [assistant]
    I found Luigi's ...

Texts are inserted verbatim, turns are separated by a blank line."""

from __future__ import annotations

from typing import Any, Sequence

import orjson

from gristmill.dataset.conversation import call_names, text_of, tool_calls_of


def _tool_line(function: dict[str, Any]) -> str:
    line = str(function.get("name") or "")
    if function.get("description"):
        line += f": {function['description']}"
    if function.get("parameters") is not None:
        line += f" Parameters: {orjson.dumps(function['parameters']).decode()}"
    return line


def _turns(message: dict[str, Any], names: dict[str, str]) -> list[str]:
    role = str(message.get("role") or "")
    text = text_of(message.get("content"))
    if role == "tool":
        call_id = str(message.get("tool_call_id") or "")
        name = names.get(call_id) or str(message.get("name") or "?")
        return [f"[result of {name}, id {call_id}]\n{text}"]
    calls = tool_calls_of(message)
    turns = [f"[{role}]\n{text}"] if text or not calls else []
    return turns + [f"[{role} calls {c.name}, id {c.id}]\n{c.arguments}" for c in calls]


def render(messages: list[dict[str, Any]], tools: Sequence[dict[str, Any]] = (),
           names: dict[str, str] | None = None) -> str:
    """`names`: tool call id -> function name over the whole conversation (a result may be
    rendered apart from its call)."""
    names = call_names(messages) if names is None else names
    parts = ["[tools]\n" + "\n".join(_tool_line(f) for f in tools)] if tools else []
    for message in messages:
        parts += _turns(message, names)
    return "\n\n".join(parts)
