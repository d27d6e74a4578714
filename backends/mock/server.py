"""Mock OpenAI-compatible server: a real process to rehearse runs, test clients and benchmark.

`python -m gristmill.backends.mock.server --port 0` prints `listening on http://HOST:PORT` once bound.
Answers come from `mock_answers` (pure, deterministic), faults, rate limits and options from
`mock_faults` (pure, seeded), `--gpu` batching and `/metrics` from `mock_gpu`, the Files and
Batch API from `batch_http` (its edge) and `batches` (its tasks); this module is
only the HTTP edge: low-level aiohttp server, orjson, no per-request logging. It decides what
to answer; `delivery` sends it (latency, pacing, cuts, broken wire formats), with the bodies
and SSE events of `wire`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any, Callable

import orjson
from aiohttp import web

from gristmill.backends.mock.account import Account
from gristmill.backends.mock.answers import Answer, BadRequest
from gristmill.backends.mock.bad import BadDrawer, bad_answer
from gristmill.backends.mock.batch_http import PREFIXES as BATCH_PREFIXES, BatchApi
from gristmill.backends.mock.batches import Batches, add_batch_arguments, check_batch_args
from gristmill.backends.mock.delivery import JSON, Sender, abort
from gristmill.backends.mock.fast import Shutdown, check_fast_args, fast_edge
from gristmill.backends.mock.files import FileStore
from gristmill.backends.mock.faults import (FaultDrawer, RateLimiter, Stats, WireDrawer,
                                            add_arguments, check_args, retry_after_value)
from gristmill.backends.mock.gpu import (METRICS_TYPE, GpuRunner, GpuScheduler,
                                         add_gpu_arguments, check_gpu_args, metric_values,
                                         render_metrics)
from gristmill.backends.mock.judge import add_judge_arguments, answer_for
from gristmill.backends.mock.planted import GOOD, plant, planted_kind
from gristmill.backends.mock.wire import (error_body, request_summary, stats_body,
                                          with_cached_prompt)
from gristmill.errors import ConfigError

BACKLOG = 4096
MAX_BODY = 64 * 1024 * 1024  # long-document prompts; aiohttp's default cap is 1 MiB
SHUTDOWN_GRACE_S = 0.5  # hung and paced requests are cut after this on SIGTERM


class MockApp:
    """Request handling. Hooks for later modes (bad answers, judge, simulated GPU batching)
    belong in `_answer` (what to say) and `_deliver` (when/how to send, with `delivery`),
    not in the edge."""

    def __init__(self, config: argparse.Namespace, loop: asyncio.AbstractEventLoop) -> None:
        self._arrival = 0  # --vary: answers differ per arrival
        self.config, self.loop = config, loop
        self.t0 = loop.time()
        self.stats = Stats(config.rate_window_s, config.record_arrivals)
        self.stats.arrivals_origin = self.t0
        self.limiter = RateLimiter(config.rpm, config.tpm, config.rate_window_s)
        self.gpu = GpuRunner(GpuScheduler.from_args(config), loop) if config.gpu else None
        self.account = Account.from_args(config)
        self.models_body = self.account.models_body()
        self.files = FileStore(config.files_dir)  # removed by the shutdown of aiohttp_edge
        self.batches = Batches(config, self.files, self.compose, self.account)
        self.batch_api = BatchApi(self.files, self.batches)
        self.sender = Sender(config, self.stats, loop)
        self.reset()
        self.retry_after = retry_after_value(config.retry_after)

    def reset(self) -> None:
        """A fresh run: zeroed stats, empty limit windows, fault and latency draws from the
        seed again (so a rerun after /stats/reset sees the same fault sequence)."""
        self.stats.reset()
        self.judge_requests = 0  # answered by the judge mode (mock_judge)
        self.batches.reset()
        self.limiter.reset()
        if self.gpu is not None:
            self.gpu.scheduler.reset_counters()
        self.last: web.BaseRequest | None = None
        self.faults = FaultDrawer(self.config.fault_rates, self.config.seed)
        self.bad = BadDrawer(self.config.bad_rate, self.config.bad_kinds, self.config.seed)
        self.wire = WireDrawer(self.config.bad_wire_rate, self.config.bad_wire_kinds,
                               self.config.seed)
        self.sender.reset()

    # -- routing --------------------------------------------------------------------------
    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path, method = request.path, request.method
        if path.startswith(BATCH_PREFIXES):  # the Files and Batch API
            if (revoked := self.account.revoked(self.stats.requests)) is not None:
                return self._error(*revoked)
            return await self.batch_api.handle(request)
        if method == "POST":
            if path == "/v1/chat/completions":
                return await self._complete(request, True)
            if path == "/v1/completions":
                return await self._complete(request, False)
            if path == "/stats/reset":
                self.reset()
                return web.Response(body=b'{"ok":true}', content_type=JSON)
        elif method == "GET":
            if path == "/v1/models":
                if (revoked := self.account.revoked(self.stats.requests)) is not None:
                    return self._error(*revoked)
                return web.Response(body=self.models_body, content_type=JSON)
            if path == "/health":
                return web.Response(body=b'{"status":"ok"}', content_type=JSON)
            if path == "/stats":
                gpu = self.gpu.scheduler.snapshot() if self.gpu else None
                body = stats_body(self.stats, self._last_request(), gpu, self.judge_requests,
                                  self.batches.stats())
                return web.Response(body=body, content_type=JSON)
            if path == "/metrics":
                values = metric_values(self.gpu and self.gpu.scheduler, self.stats)
                text = render_metrics("mock", values, self.stats.finished)
                return web.Response(body=text, headers={"Content-Type": METRICS_TYPE})
        return self._error(404, f"no route for {method} {path}", "invalid_request_error",
                           "not_found")

    def _error(self, status: int, message: str, type_: str, code: str,
               headers: dict[str, str] | None = None) -> web.Response:
        self.stats.status(status)
        return web.Response(status=status, body=error_body(message, code, type_),
                            content_type=JSON, headers=headers)

    def _limit_headers(self, now: float) -> dict[str, str] | None:
        return self.limiter.headers(now) if self.limiter.enforced else None

    def _last_request(self) -> dict[str, Any] | None:
        """Method, path, query and headers (lower-cased; a credential as its fingerprint) of
        the last completion request."""
        r = self.last  # a request is a (possibly empty) mapping: test against None
        return None if r is None else request_summary(r.method, r.path, r.query, r.headers)

    # -- completions ----------------------------------------------------------------------
    async def _complete(self, request: web.BaseRequest, chat: bool) -> web.StreamResponse:
        st, now = self.stats, self.loop.time()
        st.requests += 1
        self.last = request  # only a reference: /stats renders it
        if st.record_arrivals:
            st.arrivals.append(round(now - self.t0, 6))
        fault = self.faults.draw()  # per arrival, whatever the body: a stable fault sequence
        bad = self.bad.draw()  # likewise, so a regenerated request may be answered well
        wire = self.wire.draw()  # likewise, so a retried request may come out whole
        st.in_flight += 1
        st.peak_in_flight = max(st.peak_in_flight, st.in_flight)
        try:
            return await self._answer(request, chat, now, fault, bad, wire)
        except asyncio.CancelledError:
            st.disconnects += 1  # the client went away: aiohttp cancels the handler
            raise
        finally:
            st.in_flight -= 1

    async def _answer(self, request: web.BaseRequest, chat: bool, now: float,
                      fault: str | None, bad: float | None,
                      wire: float | None) -> web.StreamResponse:
        st = self.stats
        try:
            body = orjson.loads(await request.read())
            answer = self.compose(body, chat)
        except (orjson.JSONDecodeError, BadRequest) as exc:
            st.window.add(now, 0)  # still an arrival: the window maxima count every request
            bad_json = not isinstance(exc, BadRequest)
            return self._error(400, f"invalid JSON body: {exc}" if bad_json else str(exc),
                               "invalid_request_error", "invalid_json" if bad_json
                               else "invalid_request", self._limit_headers(now))
        refused = self.account.refusal(st.requests, body.get("model"))
        if refused is not None:
            st.window.add(now, 0)
            return self._error(*refused)
        kind = self._bad_kind(body, bad)
        if kind is not None:  # a long bad answer in place of the good one
            answer = bad_answer(answer, body, kind, self.config.bad_tokens)
        answer = with_cached_prompt(answer, self.config.cached_prompt_fraction)
        tokens = answer.prompt_tokens + answer.completion_tokens  # known at arrival
        st.window.add(now, tokens)
        wait = self.limiter.admit(now, tokens) if self.limiter.enforced else 0.0
        headers = self._limit_headers(now)
        if wait > 0.0:
            st.rate_limited += 1
            return self._error(429, "Rate limit reached for requests or tokens",
                               "rate_limit_error", "rate_limit_exceeded",
                               {**(headers or {}), "Retry-After": retry_after_value(wait)})
        if fault is not None:
            st.faults[fault] = st.faults.get(fault, 0) + 1
            early = await self._early_fault(request, fault, headers)
            if early is not None:
                return early
        if kind is not None:  # counted once it is being sent
            st.bad_answers += 1
            st.bad_kinds[kind] = st.bad_kinds.get(kind, 0) + 1
        broken = None if wire is None or fault == "cut" else self.wire.kind(
            wire, bool(body.get("stream")))  # a cut connection already breaks the answer
        if broken is not None:
            st.wire_faults[broken] = st.wire_faults.get(broken, 0) + 1
        return await self._deliver(request, body, chat, answer, headers, fault == "cut",
                                   broken)

    def compose(self, body: Any, chat: bool) -> Answer:
        """The answer to a completion body, online or a batch's line (raises BadRequest)."""
        if self.config.vary and isinstance(body, dict):  # like a sampling model
            self._arrival += 1
            body["__arrival__"] = self._arrival
        answer, judged = answer_for(body, chat, self.config.output_tokens,
                                    self.config.judge_trigger)
        self.judge_requests += judged  # a verdict that depends on the prompt's examples
        kind = None if judged else planted_kind(body, self.config.plant_rate, self.config.plant)
        if kind is not None:
            answer = plant(answer, body, kind)
            if kind != GOOD:  # a restated fact is a good answer, not a plant
                self.stats.planted[kind] = self.stats.planted.get(kind, 0) + 1
        return answer

    def _bad_kind(self, body: dict, pick: float | None) -> str | None:
        if pick is None:
            return None
        fmt = body.get("response_format")
        structured = isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object")
        return self.bad.kind(pick, structured)  # None: no allowed kind fits this request

    async def _early_fault(self, request: web.BaseRequest, fault: str,
                           headers: dict[str, str] | None) -> web.StreamResponse | None:
        """Faults that replace the answer; None for 'cut', which happens while delivering."""
        if fault == "429":
            retry = {**(headers or {}), "Retry-After": self.retry_after}
            return self._error(429, "Rate limit reached (injected)", "rate_limit_error",
                               "rate_limit_exceeded", retry)
        if fault == "500":
            return self._error(500, "The server had an error (injected)", "server_error",
                               "internal_error", headers)
        if fault == "reset":
            abort(request)
            return web.Response()  # never sent: aiohttp sees the closed transport
        if fault == "hang":
            await self.loop.create_future()  # until aiohttp cancels us on disconnect
        return None

    async def _deliver(self, request: web.BaseRequest, body: dict, chat: bool, answer: Answer,
                       headers: dict[str, str] | None, cut: bool,
                       broken: str | None) -> web.StreamResponse:
        if self.gpu is None:
            return await self.sender.send(request, body, chat, answer, headers, cut, broken,
                                          None)
        seq = self.gpu.submit(answer.prompt_tokens, answer.completion_tokens)
        try:
            return await self.sender.send(request, body, chat, answer, headers, cut, broken,
                                          seq)
        finally:
            self.gpu.cancel(seq)  # a no-op once done; frees the slot of a client that left


# -- process ------------------------------------------------------------------------------
async def aiohttp_edge(config: argparse.Namespace) -> tuple[asyncio.AbstractServer, Shutdown]:
    """The full mock on aiohttp's low-level server; returns the server and its shutdown."""
    loop = asyncio.get_running_loop()
    app = MockApp(config, loop)
    server = web.Server(app.handle, handler_cancellation=True, access_log=None,
                        request_factory=lambda *a: web.BaseRequest(*a, loop,
                                                                   client_max_size=MAX_BODY))
    srv = await loop.create_server(server, config.host, config.port, backlog=BACKLOG,
                                   reuse_address=True)
    if app.gpu is not None:
        app.gpu.start()

    async def shutdown() -> None:
        await server.shutdown(SHUTDOWN_GRACE_S)  # the GPU keeps stepping for the grace
        if app.gpu is not None:
            await app.gpu.stop()
        await app.batches.close()
        app.files.close()
    return srv, shutdown


async def serve(config: argparse.Namespace, announce: Callable[[str], None] | None = None) -> None:
    """Serve until SIGTERM/SIGINT. `announce` gets the URL once the socket is bound."""
    loop = asyncio.get_running_loop()
    srv, shutdown = await (fast_edge(config, BACKLOG) if config.fast else aiohttp_edge(config))
    port = srv.sockets[0].getsockname()[1]
    host = f"[{config.host}]" if ":" in config.host else config.host
    url = f"http://{host}:{port}"
    if announce is None:
        print(f"listening on {url}", flush=True)
    else:
        announce(url)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        srv.close()
        await shutdown()
        await srv.wait_closed()


def run(args: argparse.Namespace) -> int:
    """Serve with parsed arguments (shared with `gristmill mock-server`)."""
    args = check_args(args)
    check_gpu_args(args)
    check_batch_args(args)
    check_fast_args(args)
    try:
        import uvloop
        loop_factory = None if args.no_uvloop else uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve(args))
    except OSError as exc:  # port taken, bad host: one line, not a traceback
        print(f"mock server: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gristmill.backends.mock.server",
                                     description="Mock OpenAI-compatible server.")
    add_arguments(parser)
    add_gpu_arguments(parser)
    add_judge_arguments(parser)
    add_batch_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)  # checks the options before it binds anything
    except ConfigError as exc:
        parser.error(str(exc))  # exits with status 2
        return 2


if __name__ == "__main__":
    sys.exit(main())
