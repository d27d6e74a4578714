"""The mock server's fast edge (`--fast`): HTTP/1.1 on a raw asyncio protocol, for benchmarks
that must measure the client, not the server.

aiohttp's server spends enough of its core per request and per new connection that at
concurrency 1024 its own accept and parse work sets the pace of a wave (measured in
benchmarks/RESULTS.md). Here a request is parsed in `data_received` and answered by one loop timer
at arrival + latency: no task, no request object. Answers, wire format and /stats are the
aiohttp edge's (`mock_answers`, `mock_wire`, `mock_faults.Stats`); what needs per-request
coroutines (faults, rate limits, bad answers, a broken wire format, paced tokens, --gpu,
--vary) is refused at start-up by `check_fast_args`.

One request per connection at a time: a pipelined request waits in the buffer until the
answer before it is written, so answers leave in order."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
from typing import Any, Awaitable, Callable

import orjson

from gristmill.backends.mock.account import Account
from gristmill.backends.mock.answers import Answer, BadRequest
from gristmill.backends.mock.batches import batch_options_set
from gristmill.backends.mock.faults import Stats
from gristmill.backends.mock.gpu import METRICS_TYPE, metric_values, render_metrics
from gristmill.backends.mock.judge import answer_for
from gristmill.backends.mock.wire import (completion_body, error_body, finish_reason,
                                          request_summary, stats_body, stream_events,
                                          with_cached_prompt)
from gristmill.errors import ConfigError

MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024
REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 411: b"Length Required",
           413: b"Payload Too Large", 431: b"Request Header Fields Too Large"}
SSE_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")


def check_fast_args(args: argparse.Namespace) -> None:
    """The options the fast edge cannot honour, named; nothing when --fast is off."""
    if not args.fast:
        return
    refused = [name for name, on in (
        ("--gpu", args.gpu), ("--tokens-per-s", args.tokens_per_s > 0),
        ("--rate-429/500/reset/cut/hang", any(args.fault_rates.values())),
        ("--bad-rate", args.bad_rate > 0), ("--bad-wire-rate", args.bad_wire_rate > 0),
        ("--plant-rate", args.plant_rate > 0),
        ("--rpm/--tpm", args.rpm or args.tpm),
        ("--vary", args.vary),
        ("--unauthorized-after/--quota-after",
         args.unauthorized_after is not None or args.quota_after is not None)) if on]
    refused += batch_options_set(args)  # no Files or Batch API here: its routes are 404
    if refused:
        raise ConfigError(f"--fast serves plain answers after --latency-ms only; drop "
                          f"{', '.join(refused)} or --fast")


class FastApp:
    """What every connection shares: the options, the counters, the answer ids."""

    def __init__(self, config: argparse.Namespace, loop: asyncio.AbstractEventLoop) -> None:
        self.config, self.loop = config, loop
        self.stats = Stats(config.rate_window_s, config.record_arrivals)
        self.t0 = self.stats.arrivals_origin = loop.time()
        self.latency_rng = random.Random(config.seed + 1)  # as the aiohttp edge draws it
        self.id_prefix, self.next_id = os.urandom(4).hex(), 0
        self.judge_requests = 0
        self.last: tuple[bytes, bytes, bytes] | None = None  # method, target, header block
        self.account = Account.from_args(config)
        self.models = self.account.models_body()
        self.connections: set[FastConnection] = set()

    def reset(self) -> None:
        self.stats.reset()
        self.judge_requests = 0
        self.latency_rng = random.Random(self.config.seed + 1)

    def stats_body(self) -> bytes:
        return stats_body(self.stats, self._last_request(), None, self.judge_requests)

    def _last_request(self) -> dict[str, Any] | None:
        if self.last is None:
            return None
        method, target, head = self.last
        path, _, query = target.decode("latin-1").partition("?")
        pairs = (p.partition("=") for p in query.split("&") if p)
        return request_summary(method.decode(), path, {k: v for k, _, v in pairs},
                               dict(_header_pairs(head)))


class FastConnection(asyncio.Protocol):
    def __init__(self, app: FastApp) -> None:
        self.app = app
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.busy = False  # an answer is due: later requests wait in the buffer
        self.keep_alive = True
        self._draining = False

    # -- the connection ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.app.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.app.connections.discard(self)
        if self.busy:
            self.app.stats.disconnects += 1
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._drain()

    # -- requests -------------------------------------------------------------------------
    def _drain(self) -> None:
        """Serve the buffered requests one after another (a loop, not a recursion: instant
        answers to a pipelining client would otherwise nest)."""
        if self._draining:
            return
        self._draining = True
        try:
            while not self.busy and self.transport is not None and self._take_request():
                pass
        finally:
            self._draining = False

    def _take_request(self) -> bool:
        """Start on the next whole request in the buffer; False if there is none yet."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD:
                self._fail(431, "request headers too large")
            return False
        head = self.buffer[:end]
        line, _, fields = head.partition(b"\r\n")
        parts = line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return self._fail(400, "malformed request line")
        headers = b"\r\n" + fields.lower()
        if b"\r\ntransfer-encoding:" in headers:
            return self._fail(411, "send the body with a Content-Length")
        try:
            length = int(_header(headers, b"content-length") or 0)
        except ValueError:
            return self._fail(400, "malformed Content-Length")
        if length > MAX_BODY:
            return self._fail(413, "request body too large")
        if len(self.buffer) < end + 4 + length:
            return False  # the body is still arriving
        body = self.buffer[end + 4:end + 4 + length]
        self.buffer = self.buffer[end + 4 + length:]
        connection = _header(headers, b"connection")
        self.keep_alive = connection != b"close" and (parts[2] != b"HTTP/1.0"
                                                      or connection == b"keep-alive")
        self.busy = True
        self._route(parts[0], parts[1], head, body)
        return True

    def _route(self, method: bytes, target: bytes, head: bytes, body: bytes) -> None:
        app, path = self.app, target.partition(b"?")[0]
        if method == b"POST" and path in (b"/v1/chat/completions", b"/v1/completions"):
            app.last = (method, target, head)
            return self._complete(path == b"/v1/chat/completions", body)
        if method == b"POST" and path == b"/stats/reset":
            app.reset()
            return self._send(200, b'{"ok":true}')
        if method == b"GET" and path == b"/v1/models":
            return self._send(200, app.models)
        if method == b"GET" and path == b"/health":
            return self._send(200, b'{"status":"ok"}')
        if method == b"GET" and path == b"/stats":
            return self._send(200, app.stats_body())
        if method == b"GET" and path == b"/metrics":
            text = render_metrics("mock", metric_values(None, app.stats), app.stats.finished)
            return self._send(200, text.encode(), METRICS_TYPE.encode())
        self._error(404, f"no route for {method.decode()} {path.decode('latin-1')}",
                    "not_found")

    def _complete(self, chat: bool, raw: bytes) -> None:
        app, st = self.app, self.app.stats
        now = app.loop.time()
        st.requests += 1
        if st.record_arrivals:
            st.arrivals.append(round(now - app.t0, 6))
        try:
            body = orjson.loads(raw)
            answer, judged = answer_for(body, chat, app.config.output_tokens,
                                        app.config.judge_trigger)
            app.judge_requests += judged
        except orjson.JSONDecodeError as exc:
            st.window.add(now, 0)
            return self._error(400, f"invalid JSON body: {exc}", "invalid_json")
        except BadRequest as exc:
            st.window.add(now, 0)
            return self._error(400, str(exc), "invalid_request")
        refused = app.account.refusal(st.requests, body.get("model"))
        if refused is not None:  # only --model applies here (check_fast_args)
            st.window.add(now, 0)
            status, message, _, code = refused
            return self._error(status, message, code)
        answer = with_cached_prompt(answer, app.config.cached_prompt_fraction)
        st.window.add(now, answer.prompt_tokens + answer.completion_tokens)
        st.in_flight += 1
        st.peak_in_flight = max(st.peak_in_flight, st.in_flight)
        latency = app.config.latency_ms
        if latency.is_zero:
            return self._answer(chat, body, answer)
        app.loop.call_at(now + latency.sample(app.latency_rng), self._answer, chat, body, answer)

    def _answer(self, chat: bool, body: dict[str, Any], answer: Answer) -> None:
        app, st = self.app, self.app.stats
        st.in_flight -= 1
        if self.transport is None:
            return  # the client went away while it waited (counted in connection_lost)
        st.prompt_tokens += answer.prompt_tokens
        st.completion_tokens += answer.completion_tokens
        st.tokens_sent += answer.completion_tokens
        st.finish(finish_reason(answer))
        app.next_id += 1
        rid = f"cmpl-{app.id_prefix}{app.next_id:08x}"
        st.status(200)
        if not body.get("stream"):
            return self._send(200, orjson.dumps(completion_body(chat, answer, rid, body["model"])))
        options = body.get("stream_options")
        usage = isinstance(options, dict) and bool(options.get("include_usage"))
        events, tail = stream_events(chat, answer, rid, body["model"], usage, False)
        payload = b"".join(events) + tail
        self._write(SSE_HEAD + b"%x\r\n" % len(payload) + payload + b"\r\n0\r\n\r\n")

    # -- answers --------------------------------------------------------------------------
    def _error(self, status: int, message: str, code: str) -> None:
        self.app.stats.status(status)  # as the aiohttp edge: errors and answers, not admin
        self._send(status, error_body(message, code))

    def _fail(self, status: int, message: str) -> bool:
        """A request that cannot be framed: answer it and close, the stream is lost."""
        self.keep_alive = False
        self.busy = True
        self._error(status, message, "bad_http")
        return False

    def _send(self, status: int, body: bytes, content_type: bytes = b"application/json") -> None:
        self._write(b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n" % (
            status, REASONS.get(status, b"OK"), content_type, len(body),
            b"" if self.keep_alive else b"Connection: close\r\n") + body)

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        transport.write(data)
        self.busy = False
        if not self.keep_alive:
            transport.close()
        elif self.buffer:
            self._drain()


def _header(headers: bytes, name: bytes) -> bytes | None:
    """The value of `name` in a lower-cased header block, or None."""
    at = headers.find(b"\r\n" + name + b":")
    if at < 0:
        return None
    start = at + len(name) + 3
    stop = headers.find(b"\r\n", start)
    return headers[start:stop if stop >= 0 else None].strip()


def _header_pairs(head: bytes) -> list[tuple[str, str]]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return [(k.strip().lower(), v.strip()) for k, _, v in (h.partition(":") for h in lines)]


Shutdown = Callable[[], Awaitable[None]]


async def fast_edge(config: argparse.Namespace,
                    backlog: int) -> tuple[asyncio.AbstractServer, Shutdown]:
    """The fast edge's server and its shutdown (answers still due are dropped)."""
    loop = asyncio.get_running_loop()
    app = FastApp(config, loop)
    server = await loop.create_server(lambda: FastConnection(app), config.host, config.port,
                                      backlog=backlog, reuse_address=True)

    async def shutdown() -> None:
        for connection in list(app.connections):
            if connection.transport is not None:
                connection.transport.close()
    return server, shutdown
