"""Output records of a staged pipeline: `messages` from the config's `record` templates."""

from __future__ import annotations

from typing import Any, Callable

from gristmill.config.pipeline import PipelineConfig
from gristmill.flows.items import Item, child_id
from gristmill.flows.templates import compile_template

RecordMaker = Callable[[Item], dict[str, Any]]


def output_record(item: Item, messages: list[dict[str, Any]],
                  **fields: Any) -> dict[str, Any]:
    """The one shape of a line of output.jsonl: the id, the chat `messages`, what the flow
    adds (`fields`: skill, agent, type, ...), then where it came from and what it cost."""
    return {"id": item.id, "messages": messages, **fields, "seed_id": item.seed_id,
            "lineage": [{"id": i, "stage": s} for i, s in item.lineage],
            "model": item.model,
            "usage": {"prompt_tokens": item.usage[0], "completion_tokens": item.usage[1]}}


def reject_record(item: Item, stage: str, variant: int, cause: dict[str, str], reason: str,
                  attempt: int, text: str, **fields: Any) -> dict[str, Any]:
    """The one shape of a line of rejects.jsonl: `cause` is {"error": type} for a failed
    request or {"validator": name} for a rejected answer; its id is a function of the item
    and the stage, so a resumed run writes it once."""
    return {"id": child_id(item.id, f"{stage}:{variant}:reject"), "item_id": item.id,
            "seed_id": item.seed_id, "stage": stage, "variant": variant, **cause,
            "reason": reason, "attempt": attempt, "text": text, **fields}


def template_record(config: PipelineConfig) -> RecordMaker:
    last = config.stages[-1]
    if config.record is None and last.dialogue is not None:
        return conversation_record(last.name)
    if config.record is None:  # the second-to-last stage asks, the last answers
        names = [s.name for s in config.stages]
        user = names[-2] if len(names) > 1 else "seed"
        messages = [("user", compile_template("{{ %s }}" % user)),
                    ("assistant", compile_template("{{ %s }}" % names[-1]))]
    else:
        messages = [(m.role, compile_template(m.content)) for m in config.record]

    def record(item: Item) -> dict[str, Any]:
        variables = {**item.values, "id": item.id, "seed_id": item.seed_id}
        return output_record(item, [{"role": role, "content": t.render(variables)}
                                    for role, t in messages])
    return record


def conversation_record(stage: str) -> RecordMaker:
    """The record of a dialogue stage: its whole conversation, the tools it offered, and as
    its `instruction` (what deduplication compares) every user turn, so two dialogues that
    end with the same "thanks!" are not taken for copies."""
    def record(item: Item) -> dict[str, Any]:
        talk = item.values[stage]
        asked = "\n".join(m["content"] for m in talk["messages"] if m["role"] == "user")
        return output_record(item, talk["messages"],
                             **({"tools": talk["tools"]} if talk.get("tools") else {}),
                             instruction=asked)
    return record
