"""Server-sent events from an OpenAI-compatible stream, parsed with orjson.

`SSEDecoder.feed(chunk)` takes one network read and returns the JSON payloads of the complete
events in it; a partial line waits for the next read. Work is proportional to the bytes read.
An event that is not JSON is the server's fault: `MalformedAnswer`, like any wire error."""

from __future__ import annotations

from typing import Any

import orjson

from gristmill.errors import MalformedAnswer

DONE = object()


class SSEDecoder:
    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b""

    @property
    def tail(self) -> bytes:
        """The start of an event still waiting for its end."""
        return self._tail

    def feed(self, chunk: bytes) -> list[Any]:
        data = self._tail + chunk if self._tail else chunk
        lines = data.split(b"\n")
        self._tail = lines.pop()  # b"" when the chunk ended on a newline
        events: list[Any] = []
        for line in lines:
            if line.startswith(b"data:"):
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    events.append(DONE)
                elif payload:
                    try:
                        events.append(orjson.loads(payload))
                    except orjson.JSONDecodeError:
                        raise MalformedAnswer("malformed answer: bad JSON in an SSE event: "
                                              f"{payload[:200]!r}", status=200) from None
        return events
