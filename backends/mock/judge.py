"""The mock server as an LLM judge whose verdicts depend on the few-shot examples it is shown,
so judge alignment can be tested for real: with good examples, agreement must rise.

A request is a judge request when its response_format is a JSON schema named `judge_verdict`
(the contract of `engine/flywheel/prompt.py`): the user message lists criteria as
`<criterion name="NAME">QUESTION</criterion>`, labelled examples as
`<example verdict="pass|fail" criterion="...">` blocks with `<answer>` sections, and ends with
the `<record>` to judge.

The hidden rule: an answer that contains the trigger word (`--judge-trigger`, default
"budget", whole word, any case) fails. The judge applies it with probability

    p = BASE + PER_EXAMPLE x (fail examples whose answer has the trigger
                              - pass examples whose answer has the trigger)
          + PROMPT_BONUS if a criterion's question names the trigger word

clamped to [0, 1]; otherwise it answers like a lenient judge (fails with NAIVE_FAIL). The rule's
verdict goes to the first criterion whose question names the trigger, else the first
criterion; every other criterion passes. Before any rule, an answer that contradicts a fact of the
record's instruction (`planted.contradiction`: the instruction says "the X is 40", the answer
"the X is 55") fails, always: every criterion asking about the input's facts (its question
names the input, the passage, facts, contradictions, support or grounding), else the rule's. Draws are seeded by the request body, so the same
prompt always gets the same verdict (and a response cache keeps it valid)."""

from __future__ import annotations

import argparse
import random
import re
from typing import Any

from gristmill.backends.mock.answers import (Answer, body_seed, build_answer, capped_choice,
                                             json_tokens, max_tokens_of)
from gristmill.backends.mock.planted import contradiction
from gristmill.backends.mock.proposer import is_proposal_request, proposal_answer
from gristmill.scheduling.tokens import count_messages

SCHEMA_NAME = "judge_verdict"
DEFAULT_TRIGGER = "budget"
BASE, PER_EXAMPLE, PROMPT_BONUS, NAIVE_FAIL = 0.1, 0.2, 0.3, 0.1
CRITERION = re.compile(r'<criterion name="([^"]+)">(.*?)</criterion>', re.DOTALL)
EXAMPLE = re.compile(r'<example verdict="(pass|fail)"[^>]*>(.*?)</example>', re.DOTALL)
ANSWER = re.compile(r"<answer>\n(.*)\n</answer>", re.DOTALL)
FACTUAL = re.compile(r"\b(?:input|passage|facts?|contradict\w*|supported|grounded)\b", re.I)
INSTRUCTION = re.compile(r"<instruction>\n(.*?)\n</instruction>", re.DOTALL)


def is_judge_request(body: dict[str, Any]) -> bool:
    fmt = body.get("response_format")
    return (isinstance(fmt, dict) and isinstance(fmt.get("json_schema"), dict)
            and fmt["json_schema"].get("name") == SCHEMA_NAME
            and isinstance(body.get("messages"), list))


def _user_text(body: dict[str, Any]) -> str:
    users = [m.get("content") for m in body["messages"] if isinstance(m, dict)
             and m.get("role") == "user" and isinstance(m.get("content"), str)]
    return users[-1] if users else ""


def _answer_of(block: str) -> str:
    match = ANSWER.search(block)
    return match.group(1) if match else ""


def reliability(text: str, trigger: str) -> tuple[float, str | None]:
    """(probability of applying the rule, the criterion the rule decides)."""
    has = re.compile(rf"\b{re.escape(trigger)}\b", re.IGNORECASE).search
    head, _, _ = text.rpartition("<record")
    demonstrated = 0
    for verdict, block in EXAMPLE.findall(head):
        if has(_answer_of(block)):
            demonstrated += 1 if verdict == "fail" else -1
    criteria = CRITERION.findall(head)
    named = next((name for name, question in criteria if has(question)), None)
    p = BASE + PER_EXAMPLE * demonstrated + (PROMPT_BONUS if named else 0.0)
    target = named or (criteria[0][0] if criteria else None)
    return min(1.0, max(0.0, p)), target


def factual_criteria(text: str, names: list[str]) -> set[str]:
    """The criteria whose question asks about the input's facts."""
    head = text.rpartition("<record")[0]
    return {name for name, question in CRITERION.findall(head)
            if name in names and FACTUAL.search(question)}


def judge_answer(body: dict[str, Any], trigger: str = DEFAULT_TRIGGER) -> Answer:
    text = _user_text(body)
    schema = body["response_format"]["json_schema"].get("schema") or {}
    names = list(((schema.get("properties") or {}).get("criteria") or {})
                 .get("properties") or {}) or ["overall"]
    p, target = reliability(text, trigger)
    target = target if target in names else names[0]
    rng = random.Random(body_seed(body))
    shown = text.rpartition("<record")[2]
    record = _answer_of(shown)
    instruction = INSTRUCTION.search(shown)
    contradicted = contradiction(instruction.group(1) if instruction else "", record)
    decided = {target}  # the criteria the verdict below decides; the others pass
    if contradicted is not None:  # read against the input, as an LLM judge would
        subject, given, said = contradicted
        failed, decided = True, factual_criteria(text, names) or decided
        why = f"The answer says the {subject} is {said}, but the input says it is {given}."
    elif rng.random() < p:
        failed = re.search(rf"\b{re.escape(trigger)}\b", record, re.IGNORECASE) is not None
        why = (f"The answer talks about {trigger}, which the reviewers' examples fail."
               if failed else "The answer avoids what the reviewers' examples fail.")
    else:
        failed = rng.random() < NAIVE_FAIL
        why = "The answer seems weak on this point." if failed else "The answer looks fine."
    verdicts = {n: {"critique": why if n in decided else "The answer meets this criterion.",
                    "passed": not failed if n in decided else True} for n in names}
    choice = capped_choice(json_tokens({"criteria": verdicts}), max_tokens_of(body))
    messages = [m for m in body["messages"] if isinstance(m, dict)]
    return Answer([choice], count_messages(messages), len(choice.tokens))


def answer_for(body: Any, chat: bool, length: tuple[int, int],
               trigger: str = DEFAULT_TRIGGER) -> tuple[Answer, bool]:
    """The mock's answer to a completion body (raises BadRequest): the generator's, or the
    judge's verdict for a judge request; the flag says which (for `judge_requests`)."""
    answer = build_answer(body, chat, length)  # validates the body, judge requests too
    if is_judge_request(body):
        return judge_answer(body, trigger), True
    if is_proposal_request(body):  # `assertions suggest --llm`, answered by the judge's model
        return proposal_answer(body), True
    return answer, False


def add_judge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--judge-trigger", default=DEFAULT_TRIGGER, metavar="WORD",
                        help="judge mode: answers containing WORD break the hidden rule "
                        f"(default {DEFAULT_TRIGGER!r})")
