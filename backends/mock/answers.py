"""Answers of the mock server: pure, deterministic functions of a request body.

The same body (minus `stream`/`stream_options`) always yields the same answer, so tests can
compare streamed and non-streamed runs, and reruns of a pipeline reproduce their data. A mock
"token" is one word with its following space or punctuation; prompts are counted with
`gristmill.scheduling.tokens` so client-side estimates and server-side usage agree. The words come from
`mock_prose`, structured answers from `mock_json`.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from typing import Any

import orjson

from gristmill.backends.mock.json_answers import json_for_schema
from gristmill.backends.mock.prose import prose_tokens, sentence
from gristmill.backends.mock.tools import ToolsError, tool_calls_for, wants_call
from gristmill.scheduling.tokens import count_messages, estimate_tokens

SEED_EXCLUDED = ("stream", "stream_options")


class BadRequest(ValueError):
    """The body is not a valid completion request; the message goes to the client."""


@dataclass(slots=True)
class Choice:
    tokens: list[str]  # concatenated they are the text; one SSE event each when streaming
    finish_reason: str  # "stop", or "length" when max_tokens cut the answer; "tool_calls"
    tool_calls: list[dict[str, Any]] | None = None  # a chat answer that calls tools

    @property
    def text(self) -> str:
        return "".join(self.tokens)


@dataclass(slots=True)
class Answer:
    choices: list[Choice]
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # of prompt_tokens, "served from a prompt cache" (--cached-prompt-fraction)


def body_seed(body: dict[str, Any]) -> int:
    """Seed from the canonical body, so key order and streaming flags do not matter."""
    canon = {k: v for k, v in body.items() if k not in SEED_EXCLUDED}
    key = orjson.dumps(canon, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


def build_answer(body: Any, chat: bool, length: tuple[int, int]) -> Answer:
    """Validate a chat or text-completion body and produce its answer."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a non-empty string")
    cap = max_tokens_of(body)
    if chat:
        messages = _messages(body)
        try:
            call = wants_call(body, messages)
        except ToolsError as error:
            raise BadRequest(str(error)) from None
        if call:
            calls = tool_calls_for(body, body_seed(body))
            choice = Choice([], "tool_calls", calls)
            completion_tokens = estimate_tokens(orjson.dumps(calls).decode())
        else:
            choice = _answer_choice(body, length, cap)
            completion_tokens = len(choice.tokens)
        return Answer([choice], count_messages(messages), completion_tokens)
    prompts = _prompts(body)
    if len(prompts) == 1 and isinstance(body["prompt"], str):
        choices = [_answer_choice(body, length, cap)]
    else:
        # Each element answers as if sent alone, so batching never changes the data.
        choices = [_answer_choice({**body, "prompt": p}, length, cap) for p in prompts]
    prompt_tokens = sum(estimate_tokens(p) for p in prompts)
    return Answer(choices, prompt_tokens, sum(len(c.tokens) for c in choices))


def max_tokens_of(body: dict[str, Any]) -> int | None:
    cap = body.get("max_completion_tokens")
    cap = body.get("max_tokens") if cap is None else cap
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
        raise BadRequest("'max_tokens' must be a non-negative integer")
    return cap


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' is required and must be a non-empty list")
    out = []
    for m in messages:
        if not isinstance(m, dict) or "role" not in m:
            raise BadRequest("each message must be an object with a 'role'")
        content = m.get("content")
        if isinstance(content, list):  # content parts (multimodal style): count their text
            text = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            m = {"role": m["role"], "content": text}
        elif content is not None and not isinstance(content, str):
            raise BadRequest("message 'content' must be a string or a list of parts")
        out.append(m)
    return out


def _prompts(body: dict[str, Any]) -> list[str]:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return prompt
    raise BadRequest("'prompt' is required: a string or a non-empty list of strings")


def _answer_choice(body: dict[str, Any], length: tuple[int, int], cap: int | None) -> Choice:
    rng = random.Random(body_seed(body))
    return capped_choice(_answer_tokens(body, rng, length), cap)


def capped_choice(tokens: list[str], cap: int | None) -> Choice:
    """The answer as sent: cut at max_tokens (finish_reason 'length') when longer."""
    if cap is None or len(tokens) <= cap:
        return Choice(tokens, "stop")
    tokens = tokens[:cap]
    if tokens:
        tokens[-1] = tokens[-1].rstrip()
    return Choice(tokens, "length")


def _answer_tokens(body: dict[str, Any], rng: random.Random, length: tuple[int, int]) -> list[str]:
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        kind = fmt.get("type")
        if kind == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema")
            if not isinstance(schema, dict):
                raise BadRequest("response_format.json_schema.schema must be an object")
            return json_tokens(json_for_schema(schema, rng))
        if kind == "json_object":
            return json_tokens({"text": sentence(rng)})
    n = rng.randint(*length)
    return prose_tokens(rng, n)


def json_tokens(value: Any) -> list[str]:
    """Serialize with spaces after separators, then split at spaces: JSON read as words."""
    words = json.dumps(value, ensure_ascii=False).split(" ")
    tokens = [w + " " for w in words]
    tokens[-1] = words[-1]
    return tokens
