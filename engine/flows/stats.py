"""Run counters, updated in place by the stages and read by the progress display and summary."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from gristmill.validation.stage import ValidationStats


@dataclass(slots=True)
class StageStats:
    name: str
    done: int = 0  # inputs finished (accepted or not)
    failed: int = 0  # inputs that produced a reject
    in_flight: int = 0
    emitted: int = 0  # items passed on
    prompt_tokens: int = 0
    completion_tokens: int = 0
    answers: int = 0  # answers received (replayed ones too): tokens per answer, for --like

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "done": self.done, "failed": self.failed,
                "in_flight": self.in_flight, "emitted": self.emitted,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "answers": self.answers}


@dataclass
class RunStats:
    stages: list[StageStats]
    started: float = field(default_factory=time.monotonic)
    seeds_admitted: int = 0
    seeds_expected: int | None = None  # known with --limit or a countable source; for the ETA
    first_fan_out: int = 1
    records: int = 0
    rejects: Counter[str] = field(default_factory=Counter)  # "stage: reason" -> count
    finished: float | None = None
    resumed_records: int = 0  # already in output.jsonl when this run started
    already_written: int = 0  # records and rejects a resumed run did not write again
    validation: ValidationStats = field(default_factory=ValidationStats)
    by_skill: Counter[str] = field(default_factory=Counter)
    by_agent: Counter[str] = field(default_factory=Counter)  # "skill/agent"
    by_type: Counter[str] = field(default_factory=Counter)  # "skill/type"
    covered_before: dict[str, dict[str, int]] = field(default_factory=dict)  # earlier sessions

    def count_record(self, record: dict[str, Any]) -> None:
        self.records += 1
        skill = record.get("skill")
        if skill is not None:
            self.by_skill[skill] += 1
            self.by_agent[f"{skill}/{record.get('agent')}"] += 1
            self.by_type[f"{skill}/{record.get('type')}"] += 1

    def coverage(self) -> dict[str, dict[str, int]]:
        """Records per skill and per skill/type over the whole run: what the earlier sessions
        left in their state (`covered_before`) and this session's."""
        skills = Counter(self.covered_before.get("by_skill", {})) + self.by_skill
        types = Counter(self.covered_before.get("by_type", {})) + self.by_type
        return {"by_skill": dict(sorted(skills.items())), "by_type": dict(sorted(types.items()))}

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def tokens(self) -> int:
        return sum(s.prompt_tokens + s.completion_tokens for s in self.stages)

    def eta_s(self) -> float | None:
        """Seconds left, from the share of expected seeds the first stage has finished."""
        first = self.stages[0]
        if not self.seeds_expected or not first.done or self.finished:
            return None
        share = min(1.0, first.done / (self.seeds_expected * self.first_fan_out))
        return self.elapsed * (1 - share) / share

    def summary(self) -> dict[str, Any]:
        elapsed = self.elapsed
        return {
            "seeds": self.seeds_admitted,
            "records": self.records,
            "rejects": sum(self.rejects.values()),
            "rejects_by_reason": dict(self.rejects.most_common()),
            "resumed_records": self.resumed_records,
            "already_written": self.already_written,
            "elapsed_s": round(elapsed, 3),
            "tokens": self.tokens,
            "records_per_s": round(self.records / elapsed, 3) if elapsed else 0.0,
            "tokens_per_s": round(self.tokens / elapsed, 1) if elapsed else 0.0,
            "stages": [s.as_dict() for s in self.stages],
            "validation": self.validation.as_dict(),
            **({"by_skill": dict(sorted(self.by_skill.items())),
                "by_agent": dict(sorted(self.by_agent.items())),
                "by_type": dict(sorted(self.by_type.items()))} if self.by_skill else {}),
            **({"coverage": self.coverage()} if self.by_skill or self.covered_before else {}),
        }
