"""The one protocol every backend speaks, and the request/answer value types.

Plain slotted dataclasses: these are created once per request on the hot path. What a backend
can do beyond answering is declared in its `capabilities` (`gristmill.capabilities`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Protocol

import orjson

if TYPE_CHECKING:
    from gristmill.capabilities import Capabilities

SentCallback = Callable[[], None]
"""Called by a backend that reports sends, once the request is on the wire."""


@dataclass(slots=True)
class Request:
    """A model call. `messages` for chat, `prompt` for text completions; `tools` (OpenAI's
    function tools) lets a chat answer call them."""

    model: str
    messages: list[dict[str, Any]] | None = None
    prompt: str | list[str] | None = None  # a list: one batch of prompts (completions only)
    params: dict[str, Any] = field(default_factory=dict)  # temperature, max_tokens, ...
    response_format: dict[str, Any] | None = None
    stream: bool = False
    attempt: int = 0  # a regeneration after a rejected answer is a new request (never sent)
    sample: int = 0  # which of a fan-out's samples of the same prompt this is (never sent)
    tools: list[dict[str, Any]] | None = None

    @property
    def is_chat(self) -> bool:
        return self.messages is not None


def request_key(backend: str, request: Request) -> bytes:
    """The durable identity of a request: everything that changes its answer, with the name
    of the backend it is asked of. The answer cache stores answers under it; a hosted batch
    names each line by it (custom_id), never by a row number."""
    identity = {"backend": backend, "model": request.model, "messages": request.messages,
                "prompt": request.prompt, "params": request.params,
                "response_format": request.response_format, "attempt": request.attempt,
                "sample": request.sample}
    if request.tools is not None:  # absent otherwise: keys of tool-less requests never moved
        identity["tools"] = request.tools
    return hashlib.blake2b(orjson.dumps(identity, option=orjson.OPT_SORT_KEYS),
                           digest_size=16).digest()


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0  # of prompt_tokens, served from the server's prompt cache

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class Completion:
    text: str
    finish_reason: str | None
    usage: Usage
    model: str = ""
    cached: bool = False  # replayed from the response cache, not generated now
    tool_calls: list[dict[str, Any]] | None = None  # OpenAI's shape: id, type, function


@dataclass(slots=True)
class Delta:
    """New text since the previous delta (several SSE events may be merged into one), and
    the tool-call fragments that came with it (`gristmill.tool_calls.ToolCallParts`)."""

    text: str
    finish_reason: str | None = None
    usage: Usage | None = None
    tool_calls: list[dict[str, Any]] | None = None


@dataclass(slots=True, frozen=True)
class RateHints:
    """Limits a server announces (OpenAI's `x-ratelimit-*` headers)."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None


class Backend(Protocol):
    """`complete` and `stream` raise only gristmill's errors (`gristmill.errors`): a backend
    maps its library's and its server's failures at its edge. `sent` is called when the
    request goes on the wire if `capabilities.reports_sends`; other backends ignore it."""

    name: str
    capabilities: Capabilities

    async def complete(self, request: Request, sent: SentCallback | None = None) -> Completion: ...

    def stream(self, request: Request, sent: SentCallback | None = None) -> AsyncIterator[Delta]: ...

    async def aclose(self) -> None: ...
