"""The mock server as the assertion proposer of `gristmill assertions suggest --llm`: a request
whose response_format is a JSON schema named `assertion_proposals` gets proposals read from
the `<critique>` blocks of its prompt, deterministically, so the proposer can be tested end to
end. Per distinct critique: a must-not-match regex for each phrase it quotes ('...'), and an
`llm` criterion asking whether the answer is free of the problem (the mock judge fails a
contradiction of the input on it, since the question names the input). One malformed proposal
(a regex that does not compile) comes last, as a model sometimes writes one."""

from __future__ import annotations

import re
from typing import Any

from gristmill.backends.mock.answers import Answer, capped_choice, json_tokens, max_tokens_of
from gristmill.scheduling.tokens import count_messages

SCHEMA_NAME = "assertion_proposals"
CRITIQUE = re.compile(r"<critique>(.*?)</critique>", re.DOTALL)
QUOTED = re.compile(r"'([^']{3,80})'")
MALFORMED = {"kind": "regex", "pattern": "(unclosed"}


def is_proposal_request(body: dict[str, Any]) -> bool:
    fmt = body.get("response_format")
    return (isinstance(fmt, dict) and isinstance(fmt.get("json_schema"), dict)
            and fmt["json_schema"].get("name") == SCHEMA_NAME
            and isinstance(body.get("messages"), list))


def proposals(prompt: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    critiques = list(dict.fromkeys(c.strip() for c in CRITIQUE.findall(prompt) if c.strip()))
    for n, critique in enumerate(critiques):
        out += [{"kind": "regex", "pattern": r"\b" + re.escape(q) + r"\b"}
                for q in QUOTED.findall(critique)]
        out.append({"kind": "llm", "name": f"reviewers_{n + 1}",
                    "question": f"Is the answer free of this problem: {critique}"})
    return [*out, MALFORMED]


def proposal_answer(body: dict[str, Any]) -> Answer:
    messages = [m for m in body["messages"] if isinstance(m, dict)]
    prompt = "\n".join(m.get("content") for m in messages if m.get("role") == "user"
                       and isinstance(m.get("content"), str))
    choice = capped_choice(json_tokens({"assertions": proposals(prompt)}), max_tokens_of(body))
    return Answer([choice], count_messages(messages), len(choice.tokens))
