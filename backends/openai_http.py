"""The OpenAI-compatible HTTP backend (hosted APIs, `vllm serve`, llama.cpp's server, the mock).

One aiohttp session per base URL (keep-alive, connector limit = the in-flight cap); requests go
to the endpoint with the fewest outstanding requests. Library errors are mapped to gristmill's
exception hierarchy here, at the edge, with the phase a timeout happened in."""

from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

import aiohttp
import orjson

from engine.config import BackendConfig
from engine.errors import (BackendError, BadRequest, ConnectionReset, ConnectTimeout,
                           FirstTokenTimeout, RateLimited, ServerError, TotalTimeout)
from engine.permits import ON_SENT

from .protocol import Completion, Delta, Request, Usage
from .ratelimit_headers import RateHints, parse_rate_headers, parse_retry_after
from .sse import DONE, SSEDecoder

HintsCallback = Callable[[RateHints], None]


class Endpoint:
    __slots__ = ("url", "session", "outstanding")

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.session = session
        self.outstanding = 0


def build_body(request: Request) -> bytes:
    body: dict[str, Any] = {"model": request.model}
    if request.messages is not None:
        body["messages"] = request.messages
    else:
        body["prompt"] = request.prompt
    body.update(request.params)
    if request.response_format is not None:
        body["response_format"] = request.response_format
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


async def _headers_sent(session: Any, context: Any, params: Any) -> None:
    if (on_sent := ON_SENT.get()) is not None:
        on_sent()  # the request is on the wire: its rate-window entries start to expire


def send_tracing() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(_headers_sent)
    return trace


def error_for_status(status: int, headers: Any, text: str) -> BackendError:
    message = f"HTTP {status}: {text[:300]}"
    if status == 429 or status == 503:  # both mean "slow down": AIMD and Retry-After apply
        return RateLimited(message, status=status, retry_after=parse_retry_after(headers))
    if status >= 500 or status == 408:
        return ServerError(message, status=status)
    return BadRequest(message, status=status)


def usage_of(data: dict[str, Any] | None) -> Usage:
    if not data:
        return Usage()
    return Usage(data.get("prompt_tokens") or 0, data.get("completion_tokens") or 0)


class Failures:
    """Around one request: counts it against its endpoint, and maps library errors to
    gristmill's exceptions, with the phase a timeout happened in."""

    __slots__ = ("endpoint", "timeouts", "deadline")

    def __init__(self, endpoint: Endpoint, config: BackendConfig, deadline: float) -> None:
        self.endpoint, self.timeouts, self.deadline = endpoint, config.timeouts, deadline

    def __enter__(self) -> None:
        self.endpoint.outstanding += 1

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: Any) -> bool:
        self.endpoint.outstanding -= 1
        if kind is None:
            return False
        if issubclass(kind, aiohttp.ConnectionTimeoutError):
            raise ConnectTimeout(f"no connection within {self.timeouts.connect}s") from None
        if issubclass(kind, TimeoutError):
            if asyncio.get_running_loop().time() < self.deadline - 0.001:  # before the total
                raise FirstTokenTimeout(f"no answer within {self.timeouts.first_token}s") \
                    from None
            raise TotalTimeout(f"request took over {self.timeouts.total}s") from None
        if issubclass(kind, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
            raise ConnectionReset(f"{kind.__name__}: {exc}") from None
        return False


class OpenAIHTTPBackend:
    def __init__(self, name: str, config: BackendConfig,
                 on_rate_hints: HintsCallback | None = None) -> None:
        self.name = name
        self.config = config
        self.on_rate_hints = on_rate_hints
        self.path = "/chat/completions" if config.api == "chat" else "/completions"
        self._headers = dict(config.headers)
        if config.api_key_env:
            key = os.environ.get(config.api_key_env)
            if key:
                self._headers["Authorization"] = f"Bearer {key}"
        self._endpoints: list[Endpoint] | None = None
        # Rate windows count a request from its send, which only aiohttp's tracing sees; it
        # costs a little per request, so only backends with configured limits pay for it.
        self.reports_sends = bool(config.rpm or config.tpm)

    # -- sessions -------------------------------------------------------------------------
    def _open(self) -> list[Endpoint]:
        if self._endpoints is None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.config.timeouts.connect)
            self._endpoints = [
                Endpoint(url, aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=self.config.max_in_flight,
                                                   limit_per_host=0, keepalive_timeout=60),
                    timeout=timeout, headers={**self._headers, "Content-Type": "application/json"},
                    skip_auto_headers=("User-Agent",),
                    trace_configs=[send_tracing()] if self.reports_sends else None,
                    json_serialize=lambda o: orjson.dumps(o).decode()))
                for url in self.config.base_urls]
        return self._endpoints

    @property
    def in_flight(self) -> int:
        return sum(e.outstanding for e in self._endpoints or ())

    def outstanding(self, url: str) -> int:
        return sum(e.outstanding for e in self._endpoints or () if e.url == url)

    def pick_endpoint(self) -> Endpoint:
        return min(self._open(), key=lambda e: e.outstanding)

    async def aclose(self) -> None:
        endpoints, self._endpoints = self._endpoints, None
        for endpoint in endpoints or ():
            await endpoint.session.close()

    # -- requests -------------------------------------------------------------------------
    def _deadlines(self, stream: bool) -> tuple[float, float]:
        """(the deadline to start with, the total deadline). A stream must start within the
        first-token deadline, which the caller moves to the total deadline once it has; a
        non-streamed answer arrives whole, so only the total deadline applies to it."""
        timeouts, now = self.config.timeouts, asyncio.get_running_loop().time()
        deadline = now + timeouts.total
        return (now + min(timeouts.first_token, timeouts.total) if stream else deadline), deadline

    def _send(self, endpoint: Endpoint, request: Request) -> Any:
        return endpoint.session.post(endpoint.url + self.path, data=build_body(request),
                                     params=self.config.query or None)

    @asynccontextmanager
    async def _post(self, request: Request) -> AsyncIterator[tuple[aiohttp.ClientResponse, asyncio.Timeout, float]]:
        """POST a streamed request and yield the 200 response inside its deadline."""
        endpoint = self.pick_endpoint()
        first, deadline = self._deadlines(True)
        with Failures(endpoint, self.config, deadline):
            async with asyncio.timeout_at(first) as cm:
                async with self._send(endpoint, request) as resp:
                    if not self._accept(resp):
                        raise await self._refusal(resp)
                    try:
                        yield resp, cm, deadline
                    except BaseException:
                        resp.close()  # never reuse a half-read connection; the server stops
                        raise

    def _accept(self, resp: aiohttp.ClientResponse) -> bool:
        """True for a 200; the server's rate hints are learned from every answer."""
        self._hints(resp.headers)
        return resp.status == 200

    @staticmethod
    async def _refusal(resp: aiohttp.ClientResponse) -> BackendError:
        return error_for_status(resp.status, resp.headers, await resp.text())

    def _hints(self, headers: Any) -> None:
        if self.on_rate_hints is not None:
            hints = parse_rate_headers(headers)
            if hints is not None:
                self.on_rate_hints(hints)

    async def complete_body(self, request: Request) -> dict[str, Any]:
        """The parsed JSON answer (several choices when `request.prompt` is a list)."""
        endpoint = self.pick_endpoint()
        _, deadline = self._deadlines(False)
        with Failures(endpoint, self.config, deadline):  # a class, not a generator: cheaper
            async with asyncio.timeout_at(deadline):
                async with self._send(endpoint, request) as resp:
                    if not self._accept(resp):
                        raise await self._refusal(resp)
                    raw = await resp.read()
        try:
            data = orjson.loads(raw)
            if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
                raise TypeError("no choices list")
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise ServerError(f"malformed response body ({type(exc).__name__}): {raw[:200]!r}") from None
        return data

    async def complete(self, request: Request) -> Completion:
        data = await self.complete_body(request)
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] if "message" in choice else choice["text"]
        except (KeyError, IndexError, TypeError) as exc:
            raise ServerError(f"malformed response body ({type(exc).__name__}): "
                              f"{str(data)[:200]}") from None
        return Completion(text or "", choice.get("finish_reason"), usage_of(data.get("usage")),
                          data.get("model", request.model))

    async def stream(self, request: Request) -> AsyncIterator[Delta]:
        """Deltas coalesced per network read: a slow consumer gets bigger deltas, and the
        reader never falls behind by more than aiohttp's buffer."""
        if not request.stream:
            request.stream = True
        decoder = SSEDecoder()
        chat = request.messages is not None
        async with self._post(request) as (resp, cm, deadline):
            started = False
            async for chunk in resp.content.iter_any():
                if not started:
                    cm.reschedule(deadline)
                    started = True
                parts, finish, usage, done = [], None, None, False
                for event in decoder.feed(chunk):
                    if event is DONE:
                        done = True
                        break
                    for choice in event.get("choices") or ():
                        piece = choice["delta"].get("content") if chat else choice.get("text")
                        if piece:
                            parts.append(piece)
                        finish = choice.get("finish_reason") or finish
                    if event.get("usage"):
                        usage = usage_of(event["usage"])
                if parts or finish or usage:
                    yield Delta("".join(parts), finish, usage)
                if done:
                    return
            raise ConnectionReset("stream ended before [DONE]")
