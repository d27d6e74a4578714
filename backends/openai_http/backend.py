"""The OpenAI-compatible HTTP backend (hosted APIs, `vllm serve`, llama.cpp's server, the mock).

One aiohttp session per base URL (keep-alive, connector limit = the in-flight cap); requests go
to the endpoint with the most room, and failing endpoints leave the rotation (`endpoints.py`). Library errors are mapped to gristmill's
exception hierarchy here, at the edge, with the phase a timeout happened in; an answer that
breaks the wire format is a `MalformedAnswer` (`wire.py`)."""

from __future__ import annotations

import asyncio
import logging
import os
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Collection

import aiohttp
import orjson

from gristmill.config.keys import api_key, auth_headers
from gristmill.config.pipeline import BackendConfig
from gristmill.errors import (BackendError, ConnectionReset, FatalUpstream, FirstTokenTimeout,
                              TotalTimeout, Unreachable)
from gristmill.capabilities import Capabilities
from gristmill.protocol import Completion, Delta, RateHints, Request, SentCallback

from gristmill.backends.openai_http.endpoints import Endpoint, EndpointSet
from gristmill.backends.openai_http.ratelimit_headers import parse_rate_headers
from gristmill.backends.openai_http.refusals import Where, preflight_verdict, refusal
from gristmill.backends.openai_http.sse import DONE, SSEDecoder
from gristmill.backends.openai_http.wire import (body_of, first_answer, malformed, model_of,
                                                 read_chunk, usage_of)

HintsCallback = Callable[[RateHints], None]
log = logging.getLogger("gristmill.backend")


def build_body(request: Request) -> bytes:
    body: dict[str, Any] = {"model": request.model}
    if request.messages is not None:
        body["messages"] = request.messages
    else:
        body["prompt"] = request.prompt
    body.update(request.params)
    if request.tools is not None:
        body["tools"] = request.tools
    if request.response_format is not None:
        body["response_format"] = request.response_format
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


async def _headers_sent(session: Any, context: Any, params: Any) -> None:
    if (sent := context.trace_request_ctx) is not None:
        sent()  # the request is on the wire: its rate-window entries start to expire


def send_tracing() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(_headers_sent)
    return trace


class Failures:
    """Around one request: counts it against its endpoint, maps library errors to gristmill's
    exceptions (with the phase a timeout happened in), and tells the endpoint set about
    connection failures (which may eject the endpoint)."""

    __slots__ = ("backend", "endpoints", "endpoint", "config", "deadline")

    def __init__(self, backend: str, endpoints: EndpointSet, endpoint: Endpoint,
                 config: BackendConfig, deadline: float) -> None:
        self.backend, self.endpoints, self.endpoint = backend, endpoints, endpoint
        self.config, self.deadline = config, deadline

    def __enter__(self) -> None:
        self.endpoint.outstanding += 1

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: Any) -> bool:
        self.endpoint.outstanding -= 1
        if kind is None:
            return False
        timeouts = self.config.timeouts
        if issubclass(kind, (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError)):
            self.unreachable(f"{kind.__name__}: {exc}" if exc is not None else kind.__name__)
        if issubclass(kind, TimeoutError):
            if asyncio.get_running_loop().time() < self.deadline - 0.001:  # before the total
                raise FirstTokenTimeout(f"no answer within {timeouts.first_token}s") \
                    from None
            raise TotalTimeout(f"request took over {timeouts.total}s") from None
        if issubclass(kind, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
            self.endpoints.failed(self.endpoint)
            raise ConnectionReset(f"{kind.__name__}: {exc}") from None
        return False

    def unreachable(self, why: str) -> None:
        """No connection (refused, no route, connect timeout): the request never reached a
        server. Retried freely until no endpoint has answered for `unreachable_after_s`."""
        down_s = self.endpoints.not_connected(self.endpoint)
        if down_s > self.config.unreachable_after_s:
            urls = ", ".join(e.url for e in self.endpoints.endpoints)
            raise FatalUpstream(
                f"backend {self.backend!r}: no endpoint could be connected to for "
                f"{down_s:.0f}s ({urls}; last: {why}); start the server or fix base_urls, "
                "then `gristmill resume`") from None
        raise Unreachable(f"{self.endpoint.url}: {why}") from None


class OpenAIHTTPBackend:
    def __init__(self, name: str, config: BackendConfig,
                 on_rate_hints: HintsCallback | None = None, fleet: Any = None) -> None:
        self.name = name
        self.config = config
        self.on_rate_hints = on_rate_hints
        self.path = "/chat/completions" if config.api == "chat" else "/completions"
        key = api_key(name, config.api_key_env, config.base_urls, os.environ)
        self.key_variable = key.variable if key.value is not None else None  # for messages
        self.headers = {**config.headers, **auth_headers(key, config.auth_header)}  # key inside
        self.endpoints = EndpointSet([Endpoint(url, cap=config.max_in_flight)
                                      for url in config.base_urls])
        # Rate windows count a request from its send, which only aiohttp's tracing sees; it
        # costs a little per request, so only backends with configured limits pay for it.
        self.reports_sends = bool(config.rpm or config.tpm)
        self.capabilities = Capabilities(
            endpoints=self.endpoints, reports_sends=self.reports_sends,
            rate_hints=on_rate_hints is not None,
            scrape_metrics_s=config.metrics_interval_s if config.scrape_metrics else None,
            fleet=fleet, preflight=self.preflight if config.preflight else None)

    # -- sessions -------------------------------------------------------------------------
    def _session(self) -> aiohttp.ClientSession:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.config.timeouts.connect)
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.config.max_in_flight,
                                           limit_per_host=0, keepalive_timeout=60),
            timeout=timeout, headers={**self.headers, "Content-Type": "application/json"},
            skip_auto_headers=("User-Agent",),
            trace_configs=[send_tracing()] if self.reports_sends else None,
            json_serialize=lambda o: orjson.dumps(o).decode())

    @property
    def in_flight(self) -> int:
        return sum(e.outstanding for e in self.endpoints.endpoints)

    async def pick_endpoint(self) -> Endpoint:
        endpoint = await self.endpoints.pick()
        if endpoint.session is None:
            endpoint.session = self._session()
        return endpoint

    async def aclose(self) -> None:
        for endpoint in self.endpoints.endpoints:
            session, endpoint.session = endpoint.session, None
            if session is not None:
                await session.close()

    async def preflight(self, models: Collection[str]) -> None:
        """GET /models of each endpoint with the backend's key, one after the other (a few
        round trips, once): raises FatalUpstream for a refused key, a base URL without /v1 or
        a model not listed. An endpoint that does not answer is left to the run: its server
        may still be coming up, and `unreachable_after_s` bounds the wait."""
        timeout = aiohttp.ClientTimeout(total=self.config.timeouts.connect + 10)
        async with aiohttp.ClientSession(timeout=timeout, headers=self.headers) as session:
            for endpoint in self.endpoints.endpoints:
                try:
                    async with session.get(endpoint.url + "/models",
                                           params=self.config.query or None) as resp:
                        status, text = resp.status, await resp.text(errors="replace")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    log.info("%s: preflight of %s got no answer (%s)", self.name, endpoint.url,
                             exc)
                    continue
                verdict = preflight_verdict(status, text, endpoint.url, models, self.name,
                                            self.key_variable)
                if verdict is not None:
                    raise verdict

    # -- requests -------------------------------------------------------------------------
    def _deadlines(self, stream: bool) -> tuple[float, float]:
        """(the deadline to start with, the total deadline). A stream must start within the
        first-token deadline, which the caller moves to the total deadline once it has; a
        non-streamed answer arrives whole, so only the total deadline applies to it."""
        timeouts, now = self.config.timeouts, asyncio.get_running_loop().time()
        deadline = now + timeouts.total
        return (now + min(timeouts.first_token, timeouts.total) if stream else deadline), deadline

    def _send(self, endpoint: Endpoint, request: Request, sent: SentCallback | None) -> Any:
        return endpoint.session.post(endpoint.url + self.path, data=build_body(request),
                                     params=self.config.query or None, trace_request_ctx=sent)

    @asynccontextmanager
    async def _post(self, request: Request, sent: SentCallback | None
                    ) -> AsyncIterator[tuple[aiohttp.ClientResponse, asyncio.Timeout, float]]:
        """POST a streamed request and yield the 200 response inside its deadline."""
        endpoint = await self.pick_endpoint()
        first, deadline = self._deadlines(True)
        with Failures(self.name, self.endpoints, endpoint, self.config, deadline):
            async with asyncio.timeout_at(first) as cm:
                async with self._send(endpoint, request, sent) as resp:
                    if not self._accept(endpoint, resp):
                        raise await self._refusal(endpoint, resp, request.model)
                    try:
                        yield resp, cm, deadline
                    except BaseException:
                        resp.close()  # never reuse a half-read connection; the server stops
                        raise

    def _accept(self, endpoint: Endpoint, resp: aiohttp.ClientResponse) -> bool:
        """True for a 200; the server's rate hints are learned from every answer, and a
        broken server (500/502/504, not 429/503's "slow down") counts towards ejection."""
        self._hints(resp.headers)
        self.endpoints.answered()
        if resp.status == 200:
            self.endpoints.succeeded(endpoint)
            return True
        if resp.status in (500, 502, 504):
            self.endpoints.failed(endpoint)
        return False

    async def _refusal(self, endpoint: Endpoint, resp: aiohttp.ClientResponse,
                       model: str) -> BackendError | FatalUpstream:
        # an error page in a broken charset is still an error page, not a crash
        return refusal(resp.status, resp.headers, await resp.text(errors="replace"),
                       endpoint.url, Where(self.name, model, self.key_variable))

    def _hints(self, headers: Any) -> None:
        if self.on_rate_hints is not None:
            hints = parse_rate_headers(headers)
            if hints is not None:
                self.on_rate_hints(hints)

    async def complete_body(self, request: Request,
                            sent: SentCallback | None = None) -> dict[str, Any]:
        """The parsed JSON answer (several choices when `request.prompt` is a list)."""
        endpoint = await self.pick_endpoint()
        _, deadline = self._deadlines(False)
        with Failures(self.name, self.endpoints, endpoint, self.config, deadline):  # a class: cheaper
            async with asyncio.timeout_at(deadline):
                async with self._send(endpoint, request, sent) as resp:
                    if not self._accept(endpoint, resp):
                        raise await self._refusal(endpoint, resp, request.model)
                    raw = await resp.read()
        return body_of(raw, resp.content_type)

    async def complete(self, request: Request, sent: SentCallback | None = None) -> Completion:
        data = await self.complete_body(request, sent)
        text, finish, calls = first_answer(data, request.messages is not None)
        return Completion(text, finish, usage_of(data.get("usage")),
                          model_of(data, request.model), tool_calls=calls)

    async def stream(self, request: Request,
                     sent: SentCallback | None = None) -> AsyncIterator[Delta]:
        """Deltas coalesced per network read: a slow consumer gets bigger deltas, and the
        reader never falls behind by more than aiohttp's buffer."""
        if not request.stream:
            request.stream = True
        decoder = SSEDecoder()
        chat = request.messages is not None
        async with self._post(request, sent) as (resp, cm, deadline):
            if resp.content_type != "text/event-stream":  # e.g. a proxy's HTML page
                raise malformed(f"a stream came as {resp.content_type}",
                                await resp.content.read(200))
            started = finished = False
            async for chunk in resp.content.iter_any():
                if not started:
                    cm.reschedule(deadline)
                    started = True
                parts, calls, finish, usage, done = [], [], None, None, False
                for event in decoder.feed(chunk):
                    if event is DONE:
                        done = True
                        break
                    got_finish, got_usage = read_chunk(event, chat, parts, calls)
                    finish = got_finish or finish
                    usage = got_usage or usage
                if parts or calls or finish or usage:
                    yield Delta("".join(parts), finish, usage, calls or None)
                if done:
                    return
                finished = finished or finish is not None
            # A cut connection raised above; a stream that closed cleanly after its finish
            # (some servers send no [DONE]) is whole, one that closed before it is broken.
            if not finished:
                raise malformed("the stream ended without a finish_reason or [DONE]",
                                decoder.tail)
