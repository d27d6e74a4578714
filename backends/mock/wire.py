"""The OpenAI wire format of a mock `Answer`: a completion body, and SSE events spliced from
prebuilt byte templates (orjson only encodes each token)."""

from __future__ import annotations

import hashlib
import time
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any, Mapping

import orjson

from gristmill.backends.mock.answers import Answer

DONE = b"data: [DONE]\n\n"


def error_object(message: str, code: str, type_: str = "invalid_request_error") -> dict[str, str]:
    return {"message": message, "type": type_, "code": code}


def error_body(message: str, code: str, type_: str = "invalid_request_error") -> bytes:
    return orjson.dumps({"error": error_object(message, code, type_)})


SECRET_HEADERS = frozenset({"authorization", "api-key", "x-api-key"})


def request_summary(method: str, path: str, query: Mapping[str, str],
                    headers: Mapping[str, str]) -> dict[str, Any]:
    """A request as /stats shows it: headers lower-cased, a credential as its fingerprint
    (`sha256:` and 16 hex digits), so /stats tells which key came without showing it."""
    return {"method": method, "path": path, "query": dict(query),
            "headers": {k.lower(): "sha256:" + hashlib.sha256(v.encode()).hexdigest()[:16]
                        if k.lower() in SECRET_HEADERS else v for k, v in headers.items()}}


def stats_body(stats: Any, last_request: dict[str, Any] | None, gpu: dict[str, Any] | None,
               judge_requests: int, batches: dict[str, Any] | None = None) -> bytes:
    """/stats: the counters, the last completion request, the --gpu scheduler's snapshot,
    the Batch API's counters (None on the fast edge, which has no batches)."""
    return orjson.dumps({**stats.as_dict(), "last_request": last_request, "gpu": gpu,
                         "judge_requests": judge_requests, "batches": batches})


def finish_reason(answer: Answer) -> str:
    return "length" if any(c.finish_reason == "length" for c in answer.choices) else "stop"


def completion_body(chat: bool, answer: Answer, rid: str, model: str) -> dict[str, Any]:
    if chat:
        c = answer.choices[0]
        message: dict[str, Any] = {"role": "assistant", "content": c.text}
        if c.tool_calls:
            message = {"role": "assistant", "content": None, "tool_calls": c.tool_calls}
        choices = [{"index": 0, "message": message, "finish_reason": c.finish_reason,
                    "logprobs": None}]
    else:
        choices = [{"index": i, "text": c.text, "finish_reason": c.finish_reason, "logprobs": None}
                   for i, c in enumerate(answer.choices)]
    return {"id": rid, "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": model, "choices": choices,
            "usage": _usage(answer)}


def _usage(answer: Answer) -> dict[str, Any]:
    usage: dict[str, Any] = {"prompt_tokens": answer.prompt_tokens,
                             "completion_tokens": answer.completion_tokens,
                             "total_tokens": answer.prompt_tokens + answer.completion_tokens}
    if answer.cached_tokens:  # as OpenAI reports prompt caching
        usage["prompt_tokens_details"] = {"cached_tokens": answer.cached_tokens}
    return usage


def with_cached_prompt(answer: Answer, fraction: float) -> Answer:
    """`fraction` of the prompt reported as cached, rounded down: deterministic, so a test
    can price the usage it was sent."""
    if fraction > 0:
        answer.cached_tokens = int(answer.prompt_tokens * fraction)
    return answer


def stream_events(chat: bool, answer: Answer, rid: str, model: str, include_usage: bool,
                  per_token: bool = True) -> tuple[list[bytes], bytes]:
    """(one SSE event per token, the bytes after the last token: finish chunks, usage, DONE).

    Token events are spliced from prebuilt byte templates: orjson only encodes the token.
    Without `per_token`, each choice's events come joined into one bytes object."""
    kind = b"chat.completion.chunk" if chat else b"text_completion"
    head = (b'data: {"id":"' + rid.encode() + b'","object":"' + kind + b'","created":'
            + str(int(time.time())).encode() + b',"model":' + orjson.dumps(model)
            + b',"choices":[{"index":')
    dumps, events, finals = orjson.dumps, [], []
    for i, choice in enumerate(answer.choices):
        index = str(i).encode()
        if chat:
            first = head + index + b',"delta":{"role":"assistant","content":'
            prefix, suffix = head + index + b',"delta":{"content":', b'},"finish_reason":null}]}\n\n'
        else:
            first = prefix = head + index + b',"text":'
            suffix = b',"logprobs":null,"finish_reason":null}]}\n\n'
        tokens = choice.tokens
        if chat and choice.tool_calls:
            events.extend(_call_events(head + index, choice.tool_calls))
        if tokens and not per_token:  # str join: holding hundreds of orjson results is slow
            quoted = (suffix + prefix).decode().join(map(encode_basestring, tokens)).encode()
            events.append(first + quoted + suffix)
        elif tokens:
            events.append(first + dumps(tokens[0]) + suffix)
            events.extend(prefix + dumps(tok) + suffix for tok in tokens[1:])
        delta = b',"delta":{},"finish_reason":' if chat else b',"text":"","finish_reason":'
        finals.append(head + index + delta + dumps(choice.finish_reason) + b"}]}\n\n")
    if include_usage:
        finals.append(head[: head.index(b',"choices"')] + b',"choices":[],"usage":'
                      + dumps(_usage(answer)) + b"}\n\n")
    finals.append(DONE)
    return events, b"".join(finals)


def _call_events(head: bytes, calls: list[dict[str, Any]]) -> list[bytes]:
    """A call as OpenAI streams it: its id and name first, then its arguments in pieces."""
    events = []
    for index, call in enumerate(calls):
        first = {"index": index, "id": call["id"], "type": "function",
                 "function": {"name": call["function"]["name"], "arguments": ""}}
        pieces = [first] + [{"index": index, "function": {"arguments": piece}}
                            for piece in _pieces(call["function"]["arguments"], 16)]
        events.extend(head + b',"delta":' + orjson.dumps({"tool_calls": [p]})
                      + b',"finish_reason":null}]}\n\n' for p in pieces)
    return events


def _pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


# -- a broken wire format (`--bad-wire-rate`) ----------------------------------------------
HTML_PAGE = (b"<!DOCTYPE html><html><head><title>Gateway</title></head><body><h1>Please "
             b"wait</h1><p>The service is starting (injected).</p></body></html>")
BAD_EVENT = b"data: {not json\n\n"


def broken_body(kind: str, chat: bool, body: dict[str, Any]) -> bytes:
    """A completion body broken as `kind` says: body-json (not JSON), null-delta (each
    message, or completion text, null), truncated (the first half of the JSON)."""
    if kind == "null-delta":
        for choice in body["choices"]:
            choice["message" if chat else "text"] = None
        return orjson.dumps(body)
    payload = orjson.dumps(body)
    if kind == "truncated":
        return payload[: len(payload) // 2]
    return b"{not json" + payload


def broken_stream(kind: str, chat: bool, events: list[bytes],
                  tail: bytes) -> tuple[list[bytes], bytes]:
    """`stream_events` (one event per token) broken as `kind` says: sse-json (an event that is
    not JSON), null-delta (a chunk whose delta, or completion text, is null), truncated (half
    the tokens, then the stream ends cleanly with no finish and no [DONE]). The count of
    events stays or shrinks, so pacing by tokens still ends."""
    if kind == "truncated":
        return events[: len(events) // 2], b""
    return _splice(events, tail, BAD_EVENT if kind == "sse-json" else _null_event(chat, tail))


def _null_event(chat: bool, tail: bytes) -> bytes:
    """The first finish chunk of `tail`, its delta (or text) and finish_reason made null."""
    chunk = orjson.loads(tail[len(b"data: "): tail.index(b"\n\n")])
    choice = chunk["choices"][0]
    choice["delta" if chat else "text"], choice["finish_reason"] = None, None
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _splice(events: list[bytes], tail: bytes, bad: bytes) -> tuple[list[bytes], bytes]:
    """`bad` sent with the middle token event (with the finish when there is no token)."""
    if not events:
        return events, bad + tail
    middle = len(events) // 2
    return [*events[:middle], bad + events[middle], *events[middle + 1:]], tail
