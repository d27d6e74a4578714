"""Validation of a Batch API input file, fed one line at a time so the file is streamed: the
errors OpenAI reports when a batch fails validation (code, message, 1-based line, param),
the request count, the one model and the tokens the batch enqueues. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from gristmill.scheduling.tokens import estimate_tokens

ENDPOINTS = {"/v1/chat/completions": True, "/v1/completions": False}  # path -> chat
MAX_ERRORS = 100  # a file with a bad line on every row reports the first ones


@dataclass(slots=True)
class Limits:
    max_requests: int
    max_bytes: int
    default_output_tokens: int  # a line without max_tokens enqueues this many


@dataclass(slots=True)
class Request:
    custom_id: str
    body: dict[str, Any]


def parse_line(raw: bytes) -> Request:
    """A line that validation accepted, read again while processing."""
    line = orjson.loads(raw)
    return Request(line["custom_id"], line["body"])


def error(code: str, message: str, line: int | None = None,
          param: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "line": line, "param": param}


@dataclass
class InputCheck:
    endpoint: str
    limits: Limits
    total: int = 0
    model: str | None = None
    tokens: int = 0  # enqueued: prompt length / 4 + max_tokens, summed
    errors: list[dict[str, Any]] = field(default_factory=list)
    over_limit: bool = False  # stop reading: the file is refused whatever follows
    _seen: set[str] = field(default_factory=set)  # custom_ids, to find duplicates

    def check_size(self, size: int) -> None:
        if size > self.limits.max_bytes:
            self._fail(error("file_too_large", f"The batch input file is {size} bytes; the "
                             f"limit is {self.limits.max_bytes} bytes.", None, "input_file_id"))
            self.over_limit = True

    def feed(self, lineno: int, raw: bytes) -> None:
        if not raw.strip():
            return  # blank lines (a trailing newline) are no requests
        self.total += 1
        if self.total > self.limits.max_requests:
            self.over_limit = True
            return self._fail(error("too_many_requests", "The batch input file has more than "
                                    f"{self.limits.max_requests} requests.", lineno))
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return self._fail(error("invalid_json_line", "This line is not parseable as "
                                    "valid JSON.", lineno))
        problem = self._line_problem(line, lineno)
        if problem is not None:
            return self._fail(problem)
        body, custom_id = line["body"], line["custom_id"]
        self._seen.add(custom_id)
        self.model = self.model or body["model"]
        self.tokens += request_tokens(body, self.limits.default_output_tokens)

    def _line_problem(self, line: Any, lineno: int) -> dict[str, Any] | None:
        if not isinstance(line, dict):
            return error("invalid_json_line", "This line is not a JSON object.", lineno)
        custom_id, body = line.get("custom_id"), line.get("body")
        if not isinstance(custom_id, str) or not custom_id:
            return error("missing_required_parameter", "Each request needs a custom_id "
                         "string.", lineno, "custom_id")
        if custom_id in self._seen:
            return error("duplicate_custom_id", "The custom_id for this request is a duplicate "
                         "of another request. The custom_id parameter must be unique for each "
                         "request in a batch.", lineno, "custom_id")
        if line.get("method") != "POST":
            return error("invalid_method", "The method of a batch request must be POST.",
                         lineno, "method")
        if line.get("url") != self.endpoint:
            return error("invalid_url", "The URL provided for this request does not match "
                         f"the batch endpoint {self.endpoint}.", lineno, "url")
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return error("missing_required_parameter", "Each request needs a body with a "
                         "model.", lineno, "body.model")
        if self.model is not None and body["model"] != self.model:
            return error("mismatched_model", "The model of this request differs from the "
                         f"batch's model {self.model}: a batch serves one model.", lineno,
                         "body.model")
        return None

    def check_total(self) -> None:
        if self.total == 0 and not self.errors:
            self._fail(error("empty_file", "The batch input file has no requests."))

    def _fail(self, problem: dict[str, Any]) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(problem)


def request_tokens(body: dict[str, Any], default_output: int) -> int:
    """Tokens a request enqueues, as OpenAI estimates them: the prompt's length in
    characters / 4, plus max_tokens (else the mock's longest answer)."""
    prompt = body.get("messages", body.get("prompt", ""))
    text = prompt if isinstance(prompt, str) else orjson.dumps(prompt).decode()
    cap = body.get("max_completion_tokens", body.get("max_tokens"))
    output = cap if isinstance(cap, int) and not isinstance(cap, bool) else default_output
    return estimate_tokens(text) + max(0, output)
