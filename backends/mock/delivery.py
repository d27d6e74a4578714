"""How the mock server sends an admitted completion: after the latency, whole or as SSE events
paced by `--tokens-per-s` or by the simulated GPU's steps, cut half way (the `cut` fault), or in
a broken wire format (`--bad-wire-rate`). What to answer is decided before (`server.MockApp`)."""

from __future__ import annotations

import argparse
import asyncio
import os
import random

import orjson
from aiohttp import web

from gristmill.backends.mock.answers import Answer
from gristmill.backends.mock.faults import Stats
from gristmill.backends.mock.gpu import Seq, wait_tokens
from gristmill.backends.mock.wire import (HTML_PAGE, broken_body, broken_stream, completion_body,
                                          finish_reason, stream_events)

JSON = "application/json"
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


class Sender:
    """The sending side of the aiohttp edge: the latency draws and the answer ids."""

    def __init__(self, config: argparse.Namespace, stats: Stats,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.config, self.stats, self.loop = config, stats, loop
        self.id_prefix, self.next_id = os.urandom(4).hex(), 0
        self.reset()

    def reset(self) -> None:
        """Latency draws from the seed again (apart from the fault draws)."""
        self.latency_rng = random.Random(self.config.seed + 1)

    async def send(self, request: web.BaseRequest, body: dict, chat: bool, answer: Answer,
                   headers: dict[str, str] | None, cut: bool, broken: str | None,
                   seq: Seq | None) -> web.StreamResponse:
        """Timing from the options, or from the simulated GPU when `seq` is given; `broken`
        is the kind of broken wire format to send, if any."""
        st, cfg = self.stats, self.config
        if seq is None and not cfg.latency_ms.is_zero:
            await asyncio.sleep(cfg.latency_ms.sample(self.latency_rng))
        st.prompt_tokens += answer.prompt_tokens
        st.completion_tokens += answer.completion_tokens
        st.status(200)
        self.next_id += 1
        rid = f"cmpl-{self.id_prefix}{self.next_id:08x}"
        if broken == "html":  # what a proxy or a starting server may send in its place
            return web.Response(body=HTML_PAGE, content_type="text/html", headers=headers)
        if body.get("stream"):
            return await self._stream(request, body, chat, answer, rid, headers, cut, broken,
                                      seq)
        if seq is not None:
            await wait_tokens(seq, seq.target)  # that is, until it is done
        elif cfg.tokens_per_s > 0:
            await asyncio.sleep(answer.completion_tokens / cfg.tokens_per_s)
        answer_body = completion_body(chat, answer, rid, body["model"])
        if broken is not None:
            st.tokens_sent += answer.completion_tokens
            return web.Response(body=broken_body(broken, chat, answer_body), content_type=JSON,
                                headers=headers)
        payload = orjson.dumps(answer_body)
        if cut:
            return await self._cut_body(request, payload, answer, headers)
        st.tokens_sent += answer.completion_tokens
        st.finish(finish_reason(answer))
        return web.Response(body=payload, content_type=JSON, headers=headers)

    async def _cut_body(self, request: web.BaseRequest, payload: bytes, answer: Answer,
                        headers: dict[str, str] | None) -> web.StreamResponse:
        """Headers promise the whole body; half of it arrives, then the connection drops."""
        resp = web.StreamResponse(headers=headers)
        resp.content_type, resp.content_length = JSON, len(payload)
        try:
            await resp.prepare(request)
            await resp.write(payload[: len(payload) // 2])
            self.stats.tokens_sent += answer.completion_tokens // 2
        except ConnectionResetError:
            self.stats.disconnects += 1
        abort(request)
        return resp

    async def _stream(self, request: web.BaseRequest, body: dict, chat: bool, answer: Answer,
                      rid: str, headers: dict[str, str] | None, cut: bool, broken: str | None,
                      seq: Seq | None) -> web.StreamResponse:
        instant = self.config.tokens_per_s <= 0 and not cut and seq is None
        options = body.get("stream_options")
        usage = isinstance(options, dict) and bool(options.get("include_usage"))
        events, tail = stream_events(chat, answer, rid, body["model"], usage,
                                     not instant or broken is not None)
        if broken is not None:  # from per-token events, so one event can be singled out
            events, tail = broken_stream(broken, chat, events, tail)
        resp = web.StreamResponse(headers={**SSE_HEADERS, **headers} if headers else SSE_HEADERS)
        try:
            await resp.prepare(request)
            if instant:  # the common benchmark case: one write, no per-event objects
                await resp.write(b"".join(events) + tail)
                self.stats.tokens_sent += answer.completion_tokens
            elif cut:
                await self._write_events(resp, events[: len(events) // 2], b"", seq)
                abort(request)
                return resp
            else:
                await self._write_events(resp, events, tail, seq)
        except ConnectionResetError:  # a write found the socket closed; aiohttp stays quiet
            self.stats.disconnects += 1
            return resp
        if broken is None:
            self.stats.finish(finish_reason(answer))
        return resp

    async def _write_events(self, resp: web.StreamResponse, events: list[bytes], tail: bytes,
                            seq: Seq | None) -> None:
        """One token per event; events due at the same time go out in one write."""
        if seq is not None:
            return await self._write_steps(resp, events, tail, seq)
        st, rate, count = self.stats, self.config.tokens_per_s, len(events)
        if rate <= 0 or not events:
            await resp.write(b"".join(events) + tail)
            st.tokens_sent += count
            return
        loop, sent = self.loop, 0
        start = loop.time()
        while sent < count:
            await asyncio.sleep(start + (sent + 1) / rate - loop.time())
            due = min(count, max(sent + 1, int((loop.time() - start) * rate)))
            sent = await self._write_through(resp, events, tail, sent, due)

    async def _write_steps(self, resp: web.StreamResponse, events: list[bytes], tail: bytes,
                           seq: Seq) -> None:
        """GPU mode: the tokens of a step go out in one write as that step ends."""
        count, sent = len(events), 0
        while True:
            await wait_tokens(seq, sent)
            sent = await self._write_through(resp, events, tail, sent, min(seq.emitted, count))
            if sent == count:
                return

    async def _write_through(self, resp: web.StreamResponse, events: list[bytes], tail: bytes,
                             sent: int, due: int) -> int:
        """Write the events from `sent` up to `due` (with the tail after the last); `due`."""
        chunk = b"".join(events[sent:due])
        await resp.write(chunk + tail if due == len(events) else chunk)
        self.stats.tokens_sent += due - sent
        return due


def abort(request: web.BaseRequest) -> None:
    if request.transport is not None:  # None once the client has gone already
        request.transport.abort()

