"""`gristmill review RUN`: the review page's server, a small aiohttp app with a JSON API.

Model output is untrusted: the page sets it with textContent only, every answer is JSON with its
content type, and a strict Content-Security-Policy forbids inline and foreign scripts. On
loopback the Host header must name the loopback address (no DNS rebinding) and a POST must be
JSON (a cross-site form cannot send it without a CORS preflight, which is never answered). Any
other address needs --allow-remote and a token, checked on every request."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import os
import secrets
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from gristmill.dataset.conversation import (call_names, is_conversation, messages_of, text_of,
                                            tool_calls_of, tools_of)
from gristmill.errors import ConfigError
from gristmill.flywheel.labels import LabelStore
from gristmill.flywheel.review_index import RecordIndex, RecordMeta
from gristmill.flywheel.review_sampling import LabelView, Query, facets, next_record, progress

STATIC = Path(__file__).parent / "static"
PAGE_FILES = {"review.js": "text/javascript", "review.css": "text/css"}
TOKEN_ENV = "GRISTMILL_REVIEW_TOKEN"
TOKEN_COOKIE = "gristmill_review"
MAX_CRITIQUE_CHARS = 20_000
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self'; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def binding_token(host: str, allow_remote: bool) -> str | None:
    """The token requests must carry: none on loopback (unless one is set in the environment);
    a non-loopback address is refused without --allow-remote, and then always has one."""
    token = os.environ.get(TOKEN_ENV) or None
    if is_loopback(host):
        return token
    if not allow_remote:
        raise ConfigError(f"--host {host} would expose the review page beyond this machine; "
                          "add --allow-remote (requests then need a token, printed in the URL, "
                          f"or set {TOKEN_ENV})")
    return token or secrets.token_urlsafe(24)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=SECURITY_HEADERS)


class ReviewApp:
    def __init__(self, run_dir: Path, *, token: str | None = None, records: Path | None = None,
                 seed: int = 0, reviewer: str = "") -> None:
        self.index = RecordIndex(run_dir, records, seed)
        self.labels = LabelStore(run_dir / "run.sqlite")
        self.token = token
        self.reviewer = reviewer
        self.allowed_hosts: set[str] | None = None  # set once bound on loopback

    def build(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=1 << 20)
        app.router.add_get("/", self.page)
        app.router.add_get("/static/{name}", self.static)
        app.router.add_get("/favicon.ico", self.no_icon)
        app.router.add_get("/api/next", self.next)
        app.router.add_get("/api/record/{id}", self.one)
        app.router.add_post("/api/label", self.label)
        return app

    @web.middleware
    async def _guard(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        if self.allowed_hosts is not None and request.host not in self.allowed_hosts:
            return _error(421, f"unexpected Host header {request.host!r}")
        from_query = request.query.get("token")
        if self.token is not None:
            given = (request.headers.get("X-Review-Token") or from_query
                     or request.cookies.get(TOKEN_COOKIE) or "")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return _error(403, "a valid token is required: open the URL the review "
                                   "command printed (it ends in ?token=...)")
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # the router's 404 / 405
            return _error(exc.status, exc.reason)
        response.headers.update(SECURITY_HEADERS)
        if self.token is not None and from_query:
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="Strict")
        return response

    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "review.html",
                                headers={"Content-Type": "text/html; charset=utf-8"})

    async def no_icon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in PAGE_FILES:
            return _error(404, "no such file")
        return web.FileResponse(STATIC / name,
                                headers={"Content-Type": f"{PAGE_FILES[name]}; charset=utf-8"})

    def _state(self, query: Query, meta: RecordMeta | None, view: LabelView) -> dict[str, Any]:
        pool = self.index.pool
        return {"record": None if meta is None else self.detail(meta),
                "progress": progress(pool, query, view), "facets": facets(pool)}

    async def next(self, request: web.Request) -> web.Response:
        try:
            query = Query.parse(request.query)
        except ValueError as exc:
            return _error(400, str(exc))
        self.index.refresh()
        view = LabelView.of(self.labels.history())
        meta = next_record(self.index.pool, query, view)
        return web.json_response(self._state(query, meta, view))

    async def one(self, request: web.Request) -> web.Response:
        self.index.refresh()
        meta = self.index.pool.by_id.get(request.match_info["id"])
        if meta is None:
            return _error(404, "no record with this id")
        try:
            query = Query.parse(request.query)
        except ValueError as exc:
            return _error(400, str(exc))
        return web.json_response(self._state(query, meta, LabelView.of(self.labels.history())))

    async def label(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return _error(415, "send the label as application/json")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object")
        record_id, passed = body.get("record_id"), body.get("passed")
        critique = body.get("critique", "")
        if not isinstance(record_id, str) or record_id not in self.index.pool.by_id:
            return _error(400, "record_id: no record with this id in the run")
        if not isinstance(passed, bool):
            return _error(400, "passed: must be true or false")
        if not isinstance(critique, str) or len(critique) > MAX_CRITIQUE_CHARS:
            return _error(400, f"critique: must be text of at most {MAX_CRITIQUE_CHARS} chars")
        label = self.labels.add(record_id, passed, critique.strip(), reviewer=self.reviewer)
        return web.json_response({"label": {"record_id": label.record_id,
                                            "passed": label.passed,
                                            "labeled_at": label.labeled_at}})

    def detail(self, meta: RecordMeta) -> dict[str, Any]:
        """What the page shows of one record; every text goes out as JSON strings."""
        record = self.index.record(meta)
        messages = [{"role": str(m.get("role", "")), "content": text_of(m.get("content"))}
                    for m in messages_of(record)]
        answer = _last(messages, "assistant")
        instruction = _last(messages, "user")
        context = [m for m in messages if m is not answer and m is not instruction]
        history = [{"passed": lab.passed, "critique": lab.critique, "reviewer": lab.reviewer,
                    "labeled_at": lab.labeled_at}
                   for lab in self.labels.history() if lab.record_id == meta.id
                   and lab.criterion == ""]
        seed_id = record.get("seed_id")
        return {"id": meta.id, "skill": meta.skill, "type": meta.type,
                "agent": record.get("agent"), "model": record.get("model"),
                "usage": record.get("usage"),
                "instruction": instruction["content"] if instruction else "",
                "answer": answer["content"] if answer else "", "context": context,
                **conversation_view(record),
                "seed": self.index.seed_excerpt(seed_id), "lineage": record.get("lineage") or [],
                "judge": record["judge"] if meta.judge is not None else None,
                "in_dataset": meta.in_dataset,
                "seed_rejects": self.index.seed_rejects(seed_id), "labels": history}

    def close(self) -> None:
        self.labels.close()


def conversation_view(record: dict[str, Any]) -> dict[str, Any]:
    """A conversation's every turn (null for one instruction and answer, which the page shows
    as such), each tool call and the call a tool result answers, and the record's tools."""
    if not is_conversation(record):
        return {"conversation": None, "tools": []}
    messages = messages_of(record)
    names = call_names(messages)
    turns = [{"role": str(m.get("role") or ""), "content": text_of(m.get("content")),
              "tool_calls": [{"id": c.id, "name": c.name, "arguments": _pretty(c.arguments)}
                             for c in tool_calls_of(m)],
              "tool_call_id": str(m.get("tool_call_id") or ""),
              "tool_name": names.get(str(m.get("tool_call_id") or ""), "")}
             for m in messages]
    tools = [{"name": str(f.get("name") or ""), "description": text_of(f.get("description")),
              "parameters": _pretty(f.get("parameters", {}))} for f in tools_of(record)]
    return {"conversation": turns, "tools": tools}


def _pretty(value: Any) -> str:
    """JSON (or a JSON string) indented for reading; other text as it is."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, ensure_ascii=False)


def _last(messages: list[dict[str, str]], role: str) -> dict[str, str] | None:
    return next((m for m in reversed(messages) if m["role"] == role), None)


async def serve(app: ReviewApp, host: str, port: int, stop: asyncio.Event,
                on_ready: Callable[[str], None]) -> None:
    """Serve until `stop` is set; `on_ready` gets the page's URL once the port is bound."""
    runner = web.AppRunner(app.build(), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        if is_loopback(host):
            app.allowed_hosts = {f"{name}:{bound}" for name in ("127.0.0.1", "localhost",
                                                                 "[::1]")}
        shown = f"[{host}]" if ":" in host else host
        on_ready(f"http://{shown}:{bound}/" + (f"?token={app.token}" if app.token else ""))
        await stop.wait()
    finally:
        await runner.cleanup()
        app.close()
