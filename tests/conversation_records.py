"""Records in the OpenAI chat shape beyond one instruction and answer: a multi-turn dialogue
and a tool-use record (two tool rounds, one of them two parallel calls, null content on the
calling turns), as a run's output.jsonl holds them."""

from __future__ import annotations

import copy
import json
from typing import Any

HTML = '<img src=x onerror=window.__pwned=3>'  # unquoted: JSON keeps it as it is

FIND = {"type": "function", "function": {
    "name": "find_restaurant", "description": "Find a restaurant with a free table.",
    "parameters": {"type": "object", "properties": {"party": {"type": "integer"},
                                                    "cuisine": {"type": "string"}},
                   "required": ["party"]}}}
TAXI = {"type": "function", "function": {
    "name": "book_taxi", "description": "Book a taxi to an address.",
    "parameters": {"type": "object", "properties": {"to": {"type": "string"},
                                                    "at": {"type": "string",
                                                           "format": "date-time"}},
                   "required": ["to"]}}}


def call(call_id: str, name: str, **arguments: Any) -> dict[str, Any]:
    return {"id": call_id, "type": "function",
            "function": {"name": name,
                         "arguments": json.dumps(arguments, separators=(",", ":"))}}


def base(rid: str, skill: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": rid, "messages": messages, "skill": skill, "agent": "dialogue",
            "type": "booking", "seed_id": f"seed-{rid}",
            "lineage": [{"id": f"seed-{rid}", "stage": "seed"}], "model": "mock-model",
            "usage": {"prompt_tokens": 40, "completion_tokens": 12}}


def dialogue(rid: str = "dialogue-1") -> dict[str, Any]:
    """Three user/assistant turns, no tools; the second answer holds an HTML payload."""
    return base(rid, "multi_turn", [
        {"role": "system", "content": "You are a concise travel assistant."},
        {"role": "user", "content": "Which river runs through Lyon?"},
        {"role": "assistant", "content": "Two: the Rhône and the Saône."},
        {"role": "user", "content": "Which one is longer?"},
        {"role": "assistant", "content": f"The Rhône. {HTML}"},
        {"role": "user", "content": "Thanks, and where do they meet?"},
        {"role": "assistant", "content": "At the Confluence, south of the Presqu'île."}])


def tool_use(rid: str = "tools-1") -> dict[str, Any]:
    """Two user turns and two tool rounds (the second with two parallel calls)."""
    record = base(rid, "tool_use", [
        {"role": "system", "content": "You book things for the user."},
        {"role": "user", "content": "Book me a table for 2 tonight"},
        {"role": "assistant", "content": None,
         "tool_calls": [call("call_1", "find_restaurant", party=2)]},
        {"role": "tool", "tool_call_id": "call_1", "content": json.dumps({"name": "Luigi's"})},
        {"role": "assistant", "content": "I found Luigi's, a table for 2 at 8pm."},
        {"role": "user", "content": "Great, and a taxi there and back?"},
        {"role": "assistant", "content": None, "tool_calls": [
            call("call_2", "book_taxi", to="Luigi's", at="2030-01-01T19:40"),
            call("call_3", "book_taxi", to="home", at="2030-01-01T22:30")]},
        {"role": "tool", "tool_call_id": "call_2", "content": json.dumps({"taxi": "T-17"})},
        {"role": "tool", "tool_call_id": "call_3", "content": json.dumps({"taxi": "T-42"})},
        {"role": "assistant", "content": "Taxis T-17 (7:40pm) and T-42 (10:30pm) are booked."}])
    record["tools"] = copy.deepcopy([FIND, TAXI])  # callers may change theirs
    return record


def plain(rid: str = "plain-1", skill: str = "open_domain_qa") -> dict[str, Any]:
    return base(rid, skill, [{"role": "user", "content": "What is a mill race?"},
                             {"role": "assistant", "content": "The channel feeding a mill."}])
