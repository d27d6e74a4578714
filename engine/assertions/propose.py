"""`suggest --llm`: the judge's model reads failed records with the reviewers' critiques (and
the run's stage prompts) and proposes assertions as JSON in the fixed vocabulary, which are
parsed into vocabulary models (a malformed one is counted and skipped: the model never writes
code that runs). Its `llm` proposals are judged on the labelled records by the same judge, so
they are evaluated and chosen like the mined ones. Asking the model and the judge is above this
layer (`gristmill.flywheel.assertion_llm`); the command line hands it to `suggest`.

The request's response_format is a JSON schema named `assertion_proposals`: an object with an
`assertions` list of objects, each with a `kind` from the vocabulary and its parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import orjson
from pydantic import ValidationError

from gristmill.assertions.evaluate import Evaluation
from gristmill.assertions.miner import Labelled
from gristmill.assertions.vocabulary import KINDS, Assertion, LlmCriterion, parse_assertion

SCHEMA_NAME = "assertion_proposals"
MAX_SHOWN = 24  # failed records shown to the proposer
MAX_CHARS = 1500  # of each instruction and answer shown
VOCABULARY = """kinds and their parameters (an answer passes when ...):
- regex: pattern (Python regex), must_match (default false), target: answer|instruction
- length: unit: chars|words, min, max
- json_path: path (e.g. steps.0.name), type, present (default true)
- language: language (ISO 639-1), min_stopword_rate
- overlap: min, max (share of the answer's words found in the instruction)
- terms: terms (list), mode: required|forbidden
- items: min, max (list items or bullet lines)
- llm: name (identifier), question (yes = pass): for what only reading the input shows"""
INSTRUCTIONS = ("Reviewers failed the records below; each has their critique. Propose checks "
                "that fail records like these and pass good ones, as JSON: "
                '{"assertions": [{"kind": ..., parameters...}, ...]}. Use only these ')


def proposal_format() -> dict[str, Any]:
    item = {"type": "object", "required": ["kind"], "additionalProperties": True,
            "properties": {"kind": {"type": "string", "enum": list(KINDS)}}}
    schema = {"type": "object", "additionalProperties": False, "required": ["assertions"],
              "properties": {"assertions": {"type": "array", "items": item}}}
    return {"type": "json_schema", "json_schema": {"name": SCHEMA_NAME, "schema": schema}}


DELTA_NOTE = ("<prompt_changes> shows how the prompts were changed (a unified diff): what a "
              "change asks for is a check worth proposing. Read each change by SPADE's "
              "categories: an inclusion (the answer must contain something: terms, regex), an "
              "exclusion (must not: terms, regex), a format or structure (json_path, items, "
              "length), a count (items, length), a qualitative demand (tone, grounding: an llm "
              "question), and a workflow step (what the answer must do first: regex).")
MAX_DELTA_CHARS = 6000


def proposal_prompt(failed: Sequence[Labelled], critiques: dict[str, str],
                    prompts: Sequence[str] = (), delta: str = "") -> str:
    """The request: failures with their critiques, the run's prompts, and the prompt changes
    (SPADE proposes assertions from prompt deltas) when the run has more than one version."""
    parts = [INSTRUCTIONS + VOCABULARY, ""]
    if prompts:
        parts += ["<prompts>", *prompts, "</prompts>", ""]
    if delta:
        parts += [DELTA_NOTE, "<prompt_changes>", delta[:MAX_DELTA_CHARS], "</prompt_changes>", ""]
    for x in failed[:MAX_SHOWN]:
        parts += ["<failure>", "<instruction>", x.texts.instruction[:MAX_CHARS], "</instruction>",
                  "<answer>", x.texts.answer[:MAX_CHARS], "</answer>",
                  f"<critique>{critiques.get(x.record_id, '')}</critique>", "</failure>"]
    return "\n".join(parts)


@dataclass
class Proposals:
    assertions: list[Assertion]
    invalid: list[str]  # why each skipped proposal was refused


def parse_proposals(text: str) -> Proposals:
    """The valid proposals, in order and once each; the others' reasons."""
    try:
        items = orjson.loads(text).get("assertions")
    except (orjson.JSONDecodeError, AttributeError):
        return Proposals([], ["the answer is not a JSON object"])
    found, invalid = {}, []
    for item in items if isinstance(items, list) else []:
        try:
            assertion = parse_assertion(item)
        except ValidationError as exc:
            invalid.append(f"{str(item)[:80]}: {exc.errors()[0]['msg']}")
            continue
        found.setdefault(assertion.id, assertion)
    return Proposals(list(found.values()), invalid)


def evaluate_judged(criterion: LlmCriterion, labelled: Sequence[Labelled],
                    passed: dict[str, dict[str, bool]]) -> Evaluation:
    """Like `evaluate`, from the judge's verdicts (a record without one is not failed)."""
    failed = {x.record_id for x in labelled
              if passed.get(x.record_id, {}).get(criterion.name, True) is False}
    return Evaluation(criterion,
                      frozenset(x.record_id for x in labelled if not x.passed) & failed,
                      frozenset(x.record_id for x in labelled if x.passed) & failed,
                      sum(not x.passed for x in labelled), sum(x.passed for x in labelled))
