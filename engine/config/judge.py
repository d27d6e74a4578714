"""`judge:`: the LLM judge's criteria, few-shot examples and sampling."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from gristmill.config.base import NAME_PATTERN, Field, Strict
from gristmill.config.sampling import Sampling


class CriterionConfig(Strict):
    """One binary criterion of the judge: pass or fail, with a one-paragraph critique."""

    name: str = Field(answers=True, pattern=NAME_PATTERN, description="Identifier, e.g. 'faithful'.")
    question: str = Field(answers=True, min_length=1, description="What a passing answer does, asked as a "
                          "yes/no question (yes = pass).")
    alternatives: list[str] = Field(answers=True, default_factory=list, description="Other phrasings of the "
                                    "question: `gristmill judge align` picks, per criterion, the "
                                    "one that agrees best with the human labels.")


DEFAULT_CRITERIA = [
    {"name": "follows_instruction", "question": "Does the answer do what the instruction asks, "
     "completely, in the requested form?"},
    {"name": "faithful", "question": "Is every claim in the answer supported by the instruction "
     "and its passage or by common knowledge, with nothing invented?"},
    {"name": "well_written", "question": "Is the answer clear, well organised and free of "
     "filler, repetition and leftover template text?"},
]


class FewShotConfig(Strict):
    k: int = Field(4, answers=True, ge=0, le=32, description="Labelled examples in each judge prompt, "
                   "retrieved per record by word overlap (0: zero-shot).")
    from_labels: bool = Field(False, answers=True, description="Draw examples from all the run's human labels "
                              "(read when the judge starts), besides `examples`.")
    disagreement_bonus: float = Field(0.3, answers=True, ge=0, le=10, description="Score added to an example "
                                      "the judge got wrong (judge and human disagreed).")
    recency_bonus: float = Field(0.2, answers=True, ge=0, le=10, description="Score added to the newest "
                                 "label, falling linearly to 0 for the oldest.")
    max_chars: int = Field(1500, answers=True, ge=100, description="Each example's instruction and answer are "
                           "cut to this many characters.")


class JudgeExample(Strict):
    """A human-labelled record shown to the judge (aligned judges list theirs)."""

    record_id: str = Field(answers=True, description="Id of the labelled record (a record never sees its "
                           "own label).")
    instruction: str = Field(answers=True, description="The record's instruction.")
    answer: str = Field(answers=True, description="The record's answer.")
    passed: bool = Field(answers=True, description="The human's verdict: true = pass.")
    critique: str = Field("", answers=True, description="Why, in the labeller's words.")
    criterion: str = Field("", answers=True, description="'' for the overall verdict.")
    labeled_at: float = Field(0.0, answers=True, description="When the label was given (Unix time); newer "
                              "labels get the recency bonus.")
    disagreed: bool = Field(False, answers=True, description="The judge's verdict differed from the human's.")


class JudgeConfig(Strict):
    """An LLM judge after the last stage: binary criteria, JSON-schema structured verdicts."""

    enabled: bool = Field(True, answers=True, description="Judge the records; false keeps the section but "
                          "runs no judge.")
    version: str = Field("judge-v0", answers=True, pattern=r"^[A-Za-z0-9_.-]+$", description="Stored with "
                         "every verdict; aligned judges are judge-v1, judge-v2, ...")
    backend: str = Field("default", answers=True, description="Key in `backends`.")
    model: str | None = Field(None, answers=True, description="Overrides the backend's model.")
    mode: Literal["online", "batch"] | None = Field(None, answers=False, description="Send these "
        "requests online or through the provider's Batch API; default: the backend's `mode`.")
    system: str | None = Field(None, answers=True, description="System message; default: a strict reviewer.")
    criteria: list[CriterionConfig] = Field(answers=True,
        default_factory=lambda: [CriterionConfig(**c) for c in DEFAULT_CRITERIA],
        min_length=1, description="Criteria for every record.")
    skills: dict[str, list[CriterionConfig]] = Field(answers=True, default_factory=dict, description="Extra "
                                                     "criteria per skill (a record's `skill`).")
    on_fail: Literal["reject", "flag"] = Field("reject", answers=True, description="'reject': a failed record "
                                               "goes to rejects.jsonl (with the record); 'flag': "
                                               "it stays in the output with its verdict.")
    few_shot: FewShotConfig = Field(answers=True, default_factory=FewShotConfig, description="How "
                                    "labelled examples are picked for each judge prompt.")
    examples: list[JudgeExample] = Field(answers=True, default_factory=list, description="Labelled examples "
                                         "to retrieve from (written by `judge align`).")
    sampling: Sampling = Field(answers=True, default_factory=lambda: Sampling(temperature=0.0, max_tokens=800),
                               description="Sampling of the judge's requests (default: "
                               "temperature 0, max_tokens 800).")
    max_regenerations: int = Field(2, answers=True, ge=0, le=20, description="New requests after an "
                                   "unparseable verdict before the record becomes a reject.")
    workers: int | None = Field(None, answers=False, ge=1, le=100_000, description="Records judged at once; "
                                "default: the backend's max_in_flight.")
    queue_size: int | None = Field(None, answers=False, ge=1, description="Records waiting for the judge; "
                                   "default: 2 x workers.")

    def criteria_for(self, skill: str | None) -> list[CriterionConfig]:
        return [*self.criteria, *self.skills.get(skill or "", [])]

    @model_validator(mode="after")
    def _unique_criteria(self) -> "JudgeConfig":
        for skill in ["", *self.skills]:
            names = [c.name for c in self.criteria_for(skill)]
            if len(names) != len(set(names)):
                where = f"judge.skills.{skill}" if skill else "judge.criteria"
                raise ValueError(f"{where}: criterion names must be unique, got {names}")
        return self
