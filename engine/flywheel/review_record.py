"""What the review page shows of one record, and what a label of it may name.

A record is labelled overall and per judge criterion: the criteria of its judge verdict, or,
when it has none, those of the run's judge for its skill (the newest aligned judge, else the
run's config, else the default criteria: the judge `gristmill judge align` would align)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from gristmill.config.pipeline import JudgeConfig
from gristmill.dataset.conversation import (call_names, is_conversation, messages_of, text_of,
                                            tool_calls_of, tools_of)
from gristmill.errors import ConfigError
from gristmill.flywheel.labels import Label

MAX_CRITIQUE_CHARS = 20_000


def run_judge(run_dir: Path, say: Callable[[str], None]) -> JudgeConfig:
    """The judge whose criteria an unjudged record is labelled against."""
    from gristmill.flywheel.session import current_judge, run_config

    try:
        return current_judge(run_dir, run_config(run_dir))
    except ConfigError as exc:
        say(f"the run's judge is unknown ({exc}); unjudged records get the default criteria")
        return JudgeConfig()


def record_criteria(record: dict[str, Any], judge: JudgeConfig) -> list[dict[str, Any]]:
    """[{name, question, judge: {passed, critique} or None}] in the verdict's order."""
    questions = {c.name: c.question for c in judge.criteria_for(record.get("skill"))}
    verdict = record.get("judge")
    given = verdict.get("criteria") if isinstance(verdict, dict) else None
    if not isinstance(given, dict):
        return [{"name": name, "question": q, "judge": None} for name, q in questions.items()]
    return [{"name": str(name), "question": questions.get(name, ""),
             "judge": {"passed": one.get("passed"), "critique": text_of(one.get("critique"))}
             if isinstance(one, dict) else None} for name, one in given.items()]


@dataclass(frozen=True, slots=True)
class LabelInput:
    record_id: str
    criterion: str  # "" = overall
    passed: bool
    critique: str

    @classmethod
    def parse(cls, body: Any, records: Mapping[str, Any],
              criteria_of: Callable[[str], list[str]]) -> "LabelInput":
        """From the JSON body of POST /api/label; ValueError names the field at fault."""
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        record_id, passed = body.get("record_id"), body.get("passed")
        criterion, critique = body.get("criterion"), body.get("critique", "")
        if not isinstance(record_id, str) or record_id not in records:
            raise ValueError("record_id: no record with this id in the run")
        if not isinstance(passed, bool):
            raise ValueError("passed: must be true or false")
        if not isinstance(critique, str) or len(critique) > MAX_CRITIQUE_CHARS:
            raise ValueError(f"critique: must be text of at most {MAX_CRITIQUE_CHARS} chars")
        if criterion is not None:
            names = criteria_of(record_id)
            if criterion not in names:
                raise ValueError(f"criterion: {criterion!r} is not a criterion of this record "
                                 f"(its criteria: {', '.join(names) or 'none'}; null labels "
                                 "the record as a whole)")
        return cls(record_id, criterion or "", passed, critique.strip())


def label_json(label: Label) -> dict[str, Any]:
    return {"record_id": label.record_id, "criterion": label.criterion or None,
            "passed": label.passed, "critique": label.critique, "reviewer": label.reviewer,
            "labeled_at": label.labeled_at}


def record_detail(record: dict[str, Any], criteria: list[dict[str, Any]],
                  history: list[Label]) -> dict[str, Any]:
    """The record's texts, its criteria with the labels in force, and every label given
    (`history`: the record's labels, oldest first)."""
    messages = [{"role": str(m.get("role", "")), "content": text_of(m.get("content"))}
                for m in messages_of(record)]
    answer = _last(messages, "assistant")
    instruction = _last(messages, "user")
    newest = {lab.criterion: lab for lab in history}  # history is oldest first
    labelled = [{**c, "label": _shown(newest.get(c["name"]))} for c in criteria]
    return {"agent": record.get("agent"), "model": record.get("model"),
            "usage": record.get("usage"),
            "instruction": instruction["content"] if instruction else "",
            "answer": answer["content"] if answer else "",
            "context": [m for m in messages if m is not answer and m is not instruction],
            **conversation_view(record), "lineage": record.get("lineage") or [],
            "criteria": labelled, "labels": [label_json(lab) for lab in history]}


def _shown(label: Label | None) -> dict[str, Any] | None:
    return None if label is None else label_json(label)


def conversation_view(record: dict[str, Any]) -> dict[str, Any]:
    """A conversation's every turn (null for one instruction and answer, which the page shows
    as such), each tool call and the call a tool result answers, and the record's tools."""
    if not is_conversation(record):
        return {"conversation": None, "tools": []}
    messages = messages_of(record)
    names = call_names(messages)
    turns = [{"role": str(m.get("role") or ""), "content": text_of(m.get("content")),
              "tool_calls": [{"id": c.id, "name": c.name, "arguments": _pretty(c.arguments)}
                             for c in tool_calls_of(m)],
              "tool_call_id": str(m.get("tool_call_id") or ""),
              "tool_name": names.get(str(m.get("tool_call_id") or ""), "")}
             for m in messages]
    tools = [{"name": str(f.get("name") or ""), "description": text_of(f.get("description")),
              "parameters": _pretty(f.get("parameters", {}))} for f in tools_of(record)]
    return {"conversation": turns, "tools": tools}


def _pretty(value: Any) -> str:
    """JSON (or a JSON string) indented for reading; other text as it is."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, ensure_ascii=False)


def _last(messages: list[dict[str, str]], role: str) -> dict[str, str] | None:
    return next((m for m in reversed(messages) if m["role"] == role), None)
