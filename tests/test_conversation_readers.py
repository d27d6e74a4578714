"""Every reader of records takes dialogues, tool calls with null content, tool results, content
given as parts, and damaged shapes without crashing: dedup, the judge texts, the review view and
each export shape."""

from __future__ import annotations

import orjson
import pytest

from gristmill.dataset.conversation import is_conversation, text_of, tool_calls_of
from gristmill.dataset.dedup import dedup_run, instruction_text
from gristmill.dataset.export.shapes import to_openai, to_row, to_sharegpt
from gristmill.flywheel.prompt import record_texts
from gristmill.flywheel.review_record import conversation_view

from .conversation_records import dialogue, plain, tool_use

DAMAGED = {"id": "damaged", "tools": ["not a tool", {"type": "function"}], "messages": [
    "not a message", {"role": "user", "content": 42},
    {"role": "assistant", "content": None, "tool_calls": [
        "junk", {"id": "c1"}, {"id": "c2", "function": {"name": "f", "arguments": {"a": 1}}}]},
    {"role": "tool", "content": None},
    {"role": "assistant", "tool_calls": "not a list"}]}


def test_text_of_every_content_shape():
    assert text_of(None) == "" and text_of("x") == "x" and text_of(42) == "42"
    assert text_of([{"type": "text", "text": "a"}, {"type": "image_url"},
                    {"type": "text", "text": "b"}]) == "ab"
    assert [c.arguments for c in tool_calls_of(DAMAGED["messages"][2])] == ["{}", '{"a":1}']


def test_what_is_a_conversation():
    assert not is_conversation(plain()) and not is_conversation({**plain(), "tools": []})
    assert is_conversation(dialogue()) and is_conversation(tool_use())
    tool_only = plain()
    tool_only["messages"].insert(1, {"role": "tool", "tool_call_id": "x", "content": "r"})
    assert is_conversation(tool_only)


def test_dedup_reads_dialogues_tool_calls_and_null_content(tmp_path):
    parts = plain("parts")
    parts["messages"][0]["content"] = [{"type": "text", "text": "A question in parts"}]
    nulled = plain("nulled")
    nulled["messages"][0]["content"] = None
    copy = tool_use("tools-2")  # the same last user turn: a duplicate of tools-1
    records = [tool_use("tools-1"), copy, dialogue(), parts, nulled, DAMAGED,
               {"id": "no-messages"}]
    assert instruction_text(tool_use()) == "Great, and a taxi there and back?"
    assert instruction_text(parts) == "A question in parts"
    assert instruction_text(nulled) == "" and instruction_text(DAMAGED) == "42"
    (tmp_path / "output.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    stats = dedup_run(tmp_path)
    assert stats["input"] == 7 and stats["skipped_lines"] == 0
    kept = [orjson.loads(line)["id"] for line in (tmp_path / "dataset.jsonl").read_bytes()
            .splitlines()]
    # tools-2 repeats tools-1's last user turn; two empty instructions are one text
    assert kept == ["damaged", "dialogue-1", "no-messages", "parts", "tools-1"]


@pytest.mark.parametrize("record", [plain(), dialogue(), tool_use(), DAMAGED, {"id": "empty"}],
                         ids=["plain", "dialogue", "tools", "damaged", "empty"])
def test_every_reader_takes_any_record(record):
    instruction, answer = record_texts(record)
    assert isinstance(instruction, str) and isinstance(answer, str)
    view = conversation_view(record)
    assert (view["conversation"] is None) == (not is_conversation(record))
    assert to_openai(record)["messages"] is not None
    assert isinstance(to_sharegpt(record)["conversations"], list)
    for tools in (False, True):
        assert isinstance(to_row(record, tools)["messages"], list)


def test_damaged_tool_calls_are_read_as_far_as_they_go():
    view = conversation_view(DAMAGED)
    assert [t["role"] for t in view["conversation"]] == ["user", "assistant", "tool", "assistant"]
    assert [c["name"] for c in view["conversation"][1]["tool_calls"]] == ["", "f"]
    assert view["tools"][0]["name"] == ""  # {"type": "function"} with no function
    instruction, answer = record_texts(DAMAGED)
    assert instruction.endswith("[user]\n42")
    assert '[assistant calls f, id c2]\n{"a":1}' in answer and "[result of ?, id ]" in answer
    turns = to_sharegpt(DAMAGED)["conversations"]
    assert [t["from"] for t in turns] == ["human", "function_call", "observation", "gpt"]
