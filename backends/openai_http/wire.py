"""What an OpenAI-compatible answer must look like, checked where it is read.

A body is a JSON object with a `choices` list; a chat choice carries a `message` object, a
completions choice a `text` string; a streamed chunk's chat choices carry a `delta` object.
Anything else raises `MalformedAnswer` (never a library exception), so one broken answer
costs one item a retry, not the run."""

from __future__ import annotations

from typing import Any

import orjson

from gristmill.errors import MalformedAnswer, ServerError
from gristmill.protocol import Usage
from gristmill.tool_calls import fragment, tool_calls_of


def malformed(what: str, sample: Any = None) -> MalformedAnswer:
    """The error for an answer that broke the format, with the start of what came."""
    shown = "" if sample is None else f": {str(sample)[:200]}"
    return MalformedAnswer(f"malformed answer: {what}{shown}", status=200)


def usage_of(data: Any) -> Usage:
    if not data:
        return Usage()
    if not isinstance(data, dict):
        raise malformed("usage is not an object", data)
    prompt, completion = data.get("prompt_tokens") or 0, data.get("completion_tokens") or 0
    if not isinstance(prompt, int) or not isinstance(completion, int):
        raise malformed("usage token counts are not integers", data)
    return Usage(prompt, completion, cached_tokens_of(data))


def cached_tokens_of(usage: dict[str, Any]) -> int:
    """`prompt_tokens_details.cached_tokens` (OpenAI's prompt caching; vLLM may send null
    details): priced at the cached-input rate. Absent or not a count: none cached."""
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return cached if isinstance(cached, int) and cached > 0 else 0


def finish_of(choice: dict[str, Any]) -> str | None:
    finish = choice.get("finish_reason")
    if finish is not None and not isinstance(finish, str):
        raise malformed("finish_reason is not a string", choice)
    return finish


def model_of(data: dict[str, Any], default: str) -> str:
    model = data.get("model")
    return model if isinstance(model, str) and model else default


def body_of(raw: bytes, content_type: str) -> dict[str, Any]:
    """The JSON object of a non-streamed answer, with its `choices` list (not yet checked)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise malformed(f"the body is not JSON (content type {content_type})", raw) from None
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise malformed("the body has no choices list", raw)
    return data


def text_of(choice: Any, chat: bool) -> str:
    """The text of one choice of a body; a chat message's content may be null (no text)."""
    if not isinstance(choice, dict):
        raise malformed("a choice is not an object", choice)
    if chat:
        text = _message(choice).get("content")
        if text is None:
            return ""
    else:
        text = choice.get("text")
    if not isinstance(text, str):
        raise malformed("a choice's text is not a string", choice)
    return text


def _message(choice: dict[str, Any]) -> dict[str, Any]:
    message = choice.get("message")
    if not isinstance(message, dict):
        raise malformed("a choice has no message object", choice)
    return message


def first_answer(data: dict[str, Any], chat: bool
                 ) -> tuple[str, str | None, list[dict[str, Any]] | None]:
    """(text, finish_reason, tool calls) of the first choice of a body from `body_of`."""
    choices = data["choices"]
    if not choices:
        raise malformed("the choices list is empty", data)
    text = text_of(choices[0], chat)
    calls = None
    if chat:
        try:
            calls = tool_calls_of(_message(choices[0]).get("tool_calls"))
        except ValueError as error:
            raise malformed(str(error), choices[0]) from None
    return text, finish_of(choices[0]), calls


def read_chunk(event: Any, chat: bool, parts: list[str],
               calls: list[dict[str, Any]]) -> tuple[str | None, Usage | None]:
    """Add the text of one streamed chunk to `parts` and its tool-call fragments to `calls`;
    its (finish_reason, usage), None when it has none. A usage-only chunk may leave `choices`
    out."""
    if not isinstance(event, dict):
        raise malformed("an SSE event is not a JSON object", event)
    choices, usage = event.get("choices"), event.get("usage")
    if not isinstance(choices, list):
        if "error" in event:  # vLLM reports a failure mid-stream this way, then [DONE]
            raise ServerError(f"error event in the stream: {str(event['error'])[:300]}")
        if choices is None and usage:
            return None, usage_of(usage)
        raise malformed("an SSE chunk has no choices list", event)
    finish = None
    for choice in choices:
        if not isinstance(choice, dict):
            raise malformed("a chunk's choice is not an object", event)
        if chat:
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                raise malformed("a chunk's delta is missing or null", event)
            piece = delta.get("content")
            if delta.get("tool_calls"):
                calls.extend(_fragments(delta["tool_calls"], event))
        else:
            piece = choice.get("text")
            if piece is None:
                raise malformed("a chunk's text is missing or null", event)
        if piece:
            if not isinstance(piece, str):
                raise malformed("a chunk's text is not a string", event)
            parts.append(piece)
        finish = finish_of(choice) or finish
    return finish, usage_of(usage) if usage else None


def _fragments(raw: Any, event: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise malformed("a chunk's tool_calls is not a list", event)
    try:
        return [fragment(piece, position) for position, piece in enumerate(raw)]
    except ValueError as error:
        raise malformed(str(error), event) from None
