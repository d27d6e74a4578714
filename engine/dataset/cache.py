"""The response cache: answers already paid for are replayed, never requested again.

The key is everything that changes the answer: the backend's configured name and the model
asked for (not the replica that answered, so a restarted server or a fail-over still hits),
the full messages (system included, tool calls and results too) or prompt, the tools offered,
the sampling parameters, the response format,
and the attempt number (a regeneration after a rejected answer must not replay the bad one).
Templates are part of the key through the text they rendered. API keys never are: they live in
request headers, which are not part of the key or the value."""

from __future__ import annotations

import orjson

from gristmill.protocol import Completion, Request, Usage, request_key

from gristmill.dataset.store import SpendRow, Store


answer_key = request_key  # the cache's name for it


def encode(completion: Completion) -> bytes:
    usage = completion.usage
    fields = [completion.text, completion.finish_reason, usage.prompt_tokens,
              usage.completion_tokens, completion.model, usage.cached_prompt_tokens]
    if completion.tool_calls is not None:  # only then: answers without calls keep 6 fields
        fields.append(completion.tool_calls)
    return orjson.dumps(fields)


def decode(value: bytes) -> Completion:
    # Stores written before cached prompt tokens were kept hold five fields: none cached;
    # a seventh holds the answer's tool calls.
    text, finish, prompt_tokens, completion_tokens, model, *rest = orjson.loads(value)
    return Completion(text, finish, Usage(prompt_tokens, completion_tokens,
                                          rest[0] if rest else 0), model, cached=True,
                      tool_calls=rest[1] if len(rest) > 1 else None)


class AnswerCache:
    def __init__(self, store: Store, backend: str) -> None:
        self.store = store
        self.backend = backend
        self.hits = 0
        self.misses = 0

    def get(self, request: Request) -> tuple[bytes, Completion | None]:
        key = answer_key(self.backend, request)
        value = self.store.get_answer(key)
        if value is None:
            self.misses += 1
            return key, None
        self.hits += 1
        return key, decode(value)

    def put(self, key: bytes, completion: Completion, spent: SpendRow | None = None) -> None:
        """Store the answer; `spent` (its cost) is committed in the same transaction."""
        self.store.put_answer(key, encode(completion), spent)
