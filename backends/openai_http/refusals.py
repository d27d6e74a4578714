"""What an error answer means: retry the request, fail this item, or stop the run.

- retryable: 429 rate limits and 503 ("slow down"), other 5xx, 408;
- item-level (`BadRequest`): a 400/422 about this request (context too long, content filter);
- fatal for the backend (`FatalUpstream`): 401 and 403 (the key), 404 (a model the server does
  not know, or no such path: a base URL without /v1), 429 with the code `insufficient_quota`
  (an exhausted quota is not a rate limit: waiting does not refill it).

A fatal error's message is one line: what the server said, the backend and URL, which key
variable was used (never the key), and what to change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection

import orjson

from gristmill.errors import BackendError, BadRequest, FatalUpstream, RateLimited, ServerError

from gristmill.backends.openai_http.ratelimit_headers import parse_retry_after

QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})


@dataclass(frozen=True, slots=True)
class Where:
    """What a fatal message names: the backend, the model asked for, where the key came from."""

    backend: str
    model: str
    key_variable: str | None  # None: no key is sent


def server_said(text: str) -> tuple[str | None, str]:
    """(code, message) from an OpenAI-style `{"error": {...}}` body or vLLM's flat one; the
    text itself (cut short) when it is not JSON."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None, " ".join(text.split())[:200]
    error = data.get("error") if isinstance(data, dict) else None
    fields = error if isinstance(error, dict) else data if isinstance(data, dict) else {}
    code = fields.get("code") or fields.get("type")
    message = fields.get("message") or fields.get("detail") or text
    return (str(code) if code is not None else None), " ".join(str(message).split())[:200]


def key_advice(where: Where) -> str:
    if where.key_variable is None:
        return ("no key was sent: set $GRISTMILL_API_KEY, or name the variable that holds "
                "it with `api_key_env:`")
    return f"the key came from ${where.key_variable}: put a valid key there"


def fatal(status: int, code: str | None, said: str, url: str, where: Where,
          asked: str = "") -> FatalUpstream:
    """`asked`: what was asked beyond the base URL when it was not a completion."""
    heard = f"{asked}{url}{'/models' if asked else ''} answered HTTP {status}" \
            f"{f' {code}' if code else ''}: {said!r}"
    if status in (401, 403):
        fix = key_advice(where) if status == 401 else \
            f"{key_advice(where)}, one with access to model {where.model!r}"
    elif status == 404:
        fix = f"check `model: {where.model}` against GET {url}/models"
        if not url.rstrip("/").endswith("/v1"):
            fix = f"the base URL does not end in /v1 (try {url.rstrip('/')}/v1), or {fix}"
    else:
        fix = "add credit to the account or use another key"
    return FatalUpstream(f"backend {where.backend!r}: {heard}; {fix}, then `gristmill resume`")


def refusal(status: int, headers: Any, text: str, url: str, where: Where) -> BackendError | FatalUpstream:
    """The error a non-200 answer raises."""
    code, said = server_said(text)
    if status in (401, 403, 404) or (status == 429 and code in QUOTA_CODES):
        return fatal(status, code, said, url, where)
    message = f"HTTP {status}: {text[:300]}"
    if status in (429, 503):  # both mean "slow down": AIMD and Retry-After apply
        return RateLimited(message, status=status, retry_after=parse_retry_after(headers))
    if status >= 500 or status == 408:
        return ServerError(message, status=status)
    return BadRequest(message, status=status)


def listed_models(text: str) -> set[str]:
    """The ids of a /models answer; empty when it lists none or is not one."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return set()
    items = data.get("data") if isinstance(data, dict) else None
    return {m["id"] for m in items or () if isinstance(m, dict) and isinstance(m.get("id"), str)}


def preflight_verdict(status: int, text: str, url: str, models: Collection[str],
                      backend: str, key_variable: str | None) -> FatalUpstream | None:
    """What GET <url>/models says before the run: a refused key, a base URL without /v1, or a
    model the server does not list is fatal; anything else is left to the run's requests (a
    server whose /models is missing or lists nothing, as proxies and the mock do, proves
    nothing)."""
    model = sorted(models)[0]
    if status in (401, 403) or (status == 404 and not url.rstrip("/").endswith("/v1")):
        code, said = server_said(text)
        return fatal(status, code, said, url, Where(backend, model, key_variable),
                     asked="before the run, GET ")
    if status != 200:
        return None
    listed = listed_models(text)
    missing = sorted(m for m in models if m not in listed)
    if not listed or not missing:
        return None
    shown = ", ".join(sorted(listed)[:8]) + (", ..." if len(listed) > 8 else "")
    return FatalUpstream(
        f"backend {backend!r}: {url}/models does not list model {', '.join(missing)} (it "
        f"lists {shown}); set `model:` to one it serves (or `preflight: false` if it serves "
        "more than it lists), then `gristmill resume`")
