"""The judge as a pipeline stage: after the last stage of a staged pipeline or of the
AgentInstruct flow, each record is judged against binary criteria (per skill), with few-shot
examples retrieved from human labels, and the verdict is stored on the record.

The stage is a `ModelStage`: the request goes through the same client (permits, retries,
the response cache, keyed by the full prompt), and the answer through validators: the JSON
schema of the verdict is checked, an unparseable verdict is regenerated (a new request with
its attempt number) and, after `max_regenerations`, the record becomes a reject with the
reason. The item is passed on unchanged (same id) with `values["judge"]` set; a failed record
is rejected with its full record (so it can still be reviewed and re-judged), or kept, per
`on_fail`."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from gristmill.dataset.conversation import is_conversation
from gristmill.protocol import Request

from gristmill.scheduling.client import ModelClient
from gristmill.config.pipeline import CriterionConfig, JudgeConfig, ValidatorsConfig
from gristmill.errors import InvalidOutput
from gristmill.flows.items import Item
from gristmill.flows.stage import ModelStage, RejectSink
from gristmill.flows.stats import StageStats
from gristmill.validation.stage import StageValidation, ValidationStats
from gristmill.flywheel.fewshot import Example, Retriever
from gristmill.flywheel.prompt import (DEFAULT_SYSTEM, parse_verdict, record_texts, render_prompt,
                                       verdict_format)

log = logging.getLogger("gristmill.judge")
RecordView = Callable[[Item], dict[str, Any]]


@dataclass
class JudgeCounts:
    judged: int = 0
    passed: int = 0
    failed: int = 0
    failed_by_criterion: Counter[str] = field(default_factory=Counter)

    def count(self, verdict: dict[str, Any]) -> None:
        self.judged += 1
        if verdict["passed"]:
            self.passed += 1
        else:
            self.failed += 1
        for name, one in verdict["criteria"].items():
            if not one["passed"]:
                self.failed_by_criterion[name] += 1

    def as_dict(self) -> dict[str, Any]:
        return {"judged": self.judged, "passed": self.passed, "failed": self.failed,
                "failed_by_criterion": dict(sorted(self.failed_by_criterion.items()))}


class JudgeStage(ModelStage):
    def __init__(self, config: JudgeConfig, depth: int, client: ModelClient, model: str,
                 api: str, stats: StageStats, reject: RejectSink,
                 validation_stats: ValidationStats, view: RecordView, pool: list[Example],
                 on_fail: str | None = None) -> None:
        checks = ValidatorsConfig(defaults=False, final=["schema"],
                                  max_regenerations=config.max_regenerations)
        super().__init__("judge", depth, client, model, api, stats, reject,
                         sampling=config.sampling, stream=False, workers=config.workers,
                         queue_size=config.queue_size,
                         validation=StageValidation(checks, "judge", validation_stats,
                                                    question=None))
        self.config = config
        self.view = view
        self.on_fail = on_fail or config.on_fail
        self.system = config.system or DEFAULT_SYSTEM
        few = config.few_shot
        self.retriever = Retriever(pool, few.k, few.disagreement_bonus, few.recency_bonus)
        self.counts = JudgeCounts()

    def build_request(self, record: dict[str, Any]) -> tuple[Request, list[CriterionConfig]]:
        skill = str(record.get("skill") or "")
        criteria = self.config.criteria_for(skill)
        instruction, answer = record_texts(record)
        examples = self.retriever.select(str(record.get("id")), instruction, answer)
        prompt = render_prompt(criteria, examples, skill, instruction, answer,
                               conversation=is_conversation(record))
        return self.request(self.system, prompt, verdict_format(criteria)), criteria

    async def process(self, item: Item, variant: int) -> list[Item]:
        record = self.view(item)
        request, criteria = self.build_request(record)
        completion = await self.ask(item, variant, request)
        if completion is None:  # a backend error or an unparseable verdict: a reject already
            log.warning("judge: no verdict for %s (see rejects.jsonl)", item.id)
            return []
        try:
            verdict = parse_verdict(completion.text, criteria, self.config.version)
        except InvalidOutput as error:
            self.reject_item(item, variant, {"validator": "judge"}, error.reason, 1,
                             completion.text)
            log.warning("judge: unusable verdict for %s: %s", item.id, error.reason)
            return []
        item.values["judge"] = verdict
        self.counts.count(verdict)
        if not verdict["passed"] and self.on_fail == "reject":
            self._reject_failed(item, record, verdict)
            return []
        self.stats.emitted += 1
        return [item]

    def _reject_failed(self, item: Item, record: dict[str, Any], verdict: dict[str, Any]) -> None:
        failed = {n: v for n, v in verdict["criteria"].items() if not v["passed"]}
        first = next(iter(failed.values()))["critique"]
        self.reject_item(item, 0, {"validator": "judge"}, f"failed {', '.join(failed)}: {first}",
                         1, record_texts(record)[1], judge=verdict,
                         record={**record, "judge": verdict})


def with_verdict(make_record: RecordView) -> RecordView:
    """The record maker of a run with a judge: the verdict goes on the record."""
    def record(item: Item) -> dict[str, Any]:
        out = make_record(item)
        if "judge" in item.values:
            out["judge"] = item.values["judge"]
        return out
    return record
