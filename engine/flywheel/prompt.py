"""The judge prompt: what the judge is shown and the shape of the verdict it must return.

This format is a contract (the mock server's judge mode reads it, see `backends/mock/judge.py`
and docs/judge.md). The user message is, in this order:

    Judge the answer ...                                   (one paragraph of instructions)

    <criteria>
    <criterion name="NAME">QUESTION</criterion>            (one per criterion; yes = pass)
    </criteria>

    <examples>                                             (only when there are examples)
    <example verdict="pass|fail" criterion="NAME">         (criterion="" : overall verdict)
    <instruction>
    TEXT
    </instruction>
    <answer>
    TEXT
    </answer>
    <critique>TEXT</critique>
    </example>
    </examples>

    <record skill="SKILL">
    <instruction>
    TEXT
    </instruction>
    <answer>
    TEXT
    </answer>
    </record>

The record comes last. Texts are inserted verbatim. A conversation (several turns, tool calls
or tools) is shown whole: <instruction> holds the transcript up to its last user turn and
<answer> what the assistant did after it, tool calls and results included, in the notation of
`transcript.py`; the instructions then gain one sentence that explains it. A record of one
instruction and one answer gets the same prompt it always did. The response format is a JSON schema named
`judge_verdict`: {"criteria": {NAME: {"critique": str, "passed": bool}, ...}}, every criterion
required, critique before verdict (the reasoning comes first)."""

from __future__ import annotations

from typing import Any

import orjson

from gristmill.config.pipeline import CriterionConfig
from gristmill.dataset.conversation import (call_names, is_conversation, messages_of, text_of,
                                            tools_of)
from gristmill.errors import InvalidOutput
from gristmill.flywheel import transcript
from gristmill.flywheel.fewshot import Example

SCHEMA_NAME = "judge_verdict"
DEFAULT_SYSTEM = ("You are a strict reviewer of instruction-tuning data. You judge one answer "
                  "at a time against binary criteria and follow the labelled examples, which "
                  "show how the reviewers apply the criteria.")
INSTRUCTIONS = ("Judge the answer to the instruction in <record> against each criterion in "
                "<criteria>. For each criterion write a one-paragraph critique, then decide: "
                "passed is true only if the answer clearly meets the criterion. The examples "
                "are records the reviewers have already judged; judge alike.")
CONVERSATION_NOTE = (" The record is a conversation: <instruction> is the transcript up to the "
                     "last user turn (with the tools the assistant may call) and <answer> is "
                     "everything the assistant did after it, tool calls and their results "
                     "included; judge that, in the light of the earlier turns.")


def render_prompt(criteria: list[CriterionConfig], examples: list[Example], skill: str,
                  instruction: str, answer: str, *, conversation: bool = False) -> str:
    parts = [INSTRUCTIONS + (CONVERSATION_NOTE if conversation else ""), "", "<criteria>"]
    parts += [f'<criterion name="{c.name}">{c.question}</criterion>' for c in criteria]
    parts.append("</criteria>")
    if examples:
        parts += ["", "<examples>"]
        for ex in examples:
            verdict = "pass" if ex.passed else "fail"
            parts += [f'<example verdict="{verdict}" criterion="{ex.criterion}">',
                      *_texts(ex.instruction, ex.answer),
                      f"<critique>{ex.critique}</critique>", "</example>"]
        parts.append("</examples>")
    parts += ["", f'<record skill="{skill}">', *_texts(instruction, answer), "</record>"]
    return "\n".join(parts)


def _texts(instruction: str, answer: str) -> list[str]:
    return ["<instruction>", instruction, "</instruction>", "<answer>", answer, "</answer>"]


def verdict_format(criteria: list[CriterionConfig]) -> dict[str, Any]:
    one = {"type": "object", "additionalProperties": False, "required": ["critique", "passed"],
           "properties": {"critique": {"type": "string", "minLength": 1},
                          "passed": {"type": "boolean"}}}
    names = [c.name for c in criteria]
    schema = {"type": "object", "additionalProperties": False, "required": ["criteria"],
              "properties": {"criteria": {"type": "object", "additionalProperties": False,
                                          "required": names,
                                          "properties": {n: one for n in names}}}}
    return {"type": "json_schema",
            "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": schema}}


def parse_verdict(text: str, criteria: list[CriterionConfig], version: str) -> dict[str, Any]:
    """The verdict stored on the record; InvalidOutput (validator 'judge') when the answer
    does not give every criterion a boolean and a critique."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidOutput(f"judge answer is not JSON: {exc}", text=text,
                            validator="judge") from None
    given = value.get("criteria") if isinstance(value, dict) else None
    if not isinstance(given, dict):
        raise InvalidOutput("judge answer has no 'criteria' object", text=text, validator="judge")
    out: dict[str, dict[str, Any]] = {}
    for criterion in criteria:
        entry = given.get(criterion.name)
        if not isinstance(entry, dict) or not isinstance(entry.get("passed"), bool):
            raise InvalidOutput(f"judge answer lacks a true/false 'passed' for criterion "
                                f"{criterion.name!r}", text=text, validator="judge")
        critique = entry.get("critique")
        out[criterion.name] = {"passed": entry["passed"],
                               "critique": critique.strip() if isinstance(critique, str) else ""}
    return {"passed": all(v["passed"] for v in out.values()), "version": version,
            "criteria": out}


def record_texts(record: dict[str, Any]) -> tuple[str, str]:
    """(instruction, answer) of a record. One instruction and answer: every message before the
    last assistant message (system context and user turns, so the passage is in view), and
    that message. A conversation: its transcript up to the last user turn, and the rest."""
    messages = messages_of(record)
    if is_conversation(record):
        return conversation_texts(record, messages)
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if last is None:
        return "\n\n".join(text_of(m.get("content")) for m in messages), ""
    context = "\n\n".join(text_of(m.get("content")) for m in messages[:last])
    return context, text_of(messages[last].get("content"))


def conversation_texts(record: dict[str, Any],
                       messages: list[dict[str, Any]]) -> tuple[str, str]:
    cut = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1) + 1
    head, tail = messages[:cut], messages[cut:]
    names = call_names(messages)
    if len(tail) == 1 and tail[0].get("role") == "assistant" and not tail[0].get("tool_calls"):
        answer = text_of(tail[0].get("content"))  # the usual end: one reply, shown bare
    else:
        answer = transcript.render(tail, names=names)
    return transcript.render(head, tools_of(record), names), answer
