"""Output records of a staged pipeline: `messages` from the config's `record` templates."""

from __future__ import annotations

from typing import Any, Callable

from gristmill.config.pipeline import PipelineConfig
from gristmill.flows.items import Item
from gristmill.flows.templates import compile_template

RecordMaker = Callable[[Item], dict[str, Any]]


def base_record(item: Item) -> dict[str, Any]:
    return {"id": item.id, "seed_id": item.seed_id,
            "lineage": [{"id": i, "stage": s} for i, s in item.lineage],
            "model": item.model,
            "usage": {"prompt_tokens": item.usage[0], "completion_tokens": item.usage[1]}}


def template_record(config: PipelineConfig) -> RecordMaker:
    if config.record is None:  # the second-to-last stage asks, the last answers
        names = [s.name for s in config.stages]
        user = names[-2] if len(names) > 1 else "seed"
        messages = [("user", compile_template("{{ %s }}" % user)),
                    ("assistant", compile_template("{{ %s }}" % names[-1]))]
    else:
        messages = [(m.role, compile_template(m.content)) for m in config.record]

    def record(item: Item) -> dict[str, Any]:
        variables = {**item.values, "id": item.id, "seed_id": item.seed_id}
        out = base_record(item)
        out["messages"] = [{"role": role, "content": t.render(variables)} for role, t in messages]
        return out
    return record
