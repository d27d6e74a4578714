"""Token counting for TPM limits and estimates.

With a local tokenizer (a `tokenizer.json` named in the backend config) counts are exact.
Without one, gristmill uses a documented estimate: one token per 4 characters of text,
rounded up, plus 4 tokens of framing per chat message. English BPE vocabularies average
close to 4 characters per token, so the estimate errs a little high on prose, which is the
safe side for a rate limit; actual usage reported by the server corrects it afterwards.
The mock server counts prompts with the same function, so tests compare like with like.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Iterable, Mapping

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4

Counter = Callable[[str], int]


def estimate_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def count_messages(messages: Iterable[Mapping[str, Any]], count: Counter = estimate_tokens) -> int:
    return sum(count(m.get("content") or "") + MESSAGE_OVERHEAD
               + (_calls_tokens(m["tool_calls"], count) if m.get("tool_calls") else 0)
               for m in messages)


def _calls_tokens(calls: Any, count: Counter) -> int:
    """An assistant message's tool calls: their names and arguments are prompt text too."""
    return sum(count(c["function"]["name"]) + count(c["function"]["arguments"])
               for c in calls if isinstance(c, dict) and isinstance(c.get("function"), dict))


@lru_cache(maxsize=8)
def tokenizer_counter(path: str) -> Counter:
    """Exact counts from a local Hugging Face `tokenizer.json` (needs `tokenizers`)."""
    from tokenizers import Tokenizer  # heavy, optional: imported only when configured

    tok = Tokenizer.from_file(path)
    return lambda text: len(tok.encode(text, add_special_tokens=False).ids)


def counter_for(tokenizer_path: str | None) -> Counter:
    return tokenizer_counter(tokenizer_path) if tokenizer_path else estimate_tokens
