"""`retrieval:` (the BM25 index over the run's seeds) and a stage's `retrieve:` (which
passages and distractors it gets). docs/retrieval.md explains both."""

from __future__ import annotations

from pydantic import model_validator

from gristmill.config.base import Field, Strict


class RetrievalConfig(Strict):
    """The index over every seed of the input, built once per run into RUN/retrieval/. Its
    presence turns retrieval on; `retrieve:` on a stage uses it."""

    k1: float = Field(1.5, answers=True, ge=0, le=10, description="BM25 term-frequency "
                      "saturation: higher lets repeated words count for more.")
    b: float = Field(0.75, answers=True, ge=0, le=1, description="BM25 length normalisation: "
                     "0 ignores a passage's length, 1 normalises fully.")
    max_passage_chars: int = Field(2000, answers=True, ge=1, description="A passage's text as "
                                   "templates see it is cut to this many characters (the "
                                   "whole seed is indexed).")


class RetrieveConfig(Strict):
    """What a stage retrieves before its prompt is rendered: `passages` and `distractors`,
    each a list of {id, text}, join the item's template variables."""

    query: str = Field("{{ seed }}", answers=True, min_length=1, description="Jinja2 template "
                       "of the search query; it sees what the stage's prompt sees.")
    k: int = Field(3, answers=True, ge=1, le=100, description="Supporting passages: the k best "
                   "ranked that share a word with the query (fewer when fewer do).")
    distractors: int = Field(0, answers=True, ge=0, le=100, description="Distractor passages, "
                             "drawn from the ranks just below the supporting ones by a hash of "
                             "the item's id: related, but not the best support.")
    distractor_pool: int = Field(20, answers=True, ge=1, le=1000, description="The ranks "
                                 "k+1 .. k+distractor_pool that distractors are drawn from; at "
                                 "least `distractors`.")
    exclude_self: bool = Field(True, answers=True, description="Leave the item's own seed out "
                               "of the passages and distractors.")

    @model_validator(mode="after")
    def _pool(self) -> "RetrieveConfig":
        if self.distractor_pool < self.distractors:
            raise ValueError(f"distractor_pool ({self.distractor_pool}) must be >= distractors "
                             f"({self.distractors})")
        return self
