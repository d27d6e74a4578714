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
import os
import secrets
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from gristmill.errors import ConfigError
from gristmill.flywheel.labels import LabelStore
from gristmill.flywheel.review_index import RecordIndex, RecordMeta
from gristmill.flywheel.review_record import (LabelInput, label_json, record_criteria,
                                              record_detail, run_judge)
from gristmill.flywheel.review_sampling import LabelView, Query, facets, next_record, progress

STATIC = Path(__file__).parent / "static"
PAGE_FILES = {"review.js": "text/javascript", "review-marks.js": "text/javascript",
              "review.css": "text/css"}
TOKEN_ENV = "GRISTMILL_REVIEW_TOKEN"
TOKEN_COOKIE = "gristmill_review"
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
                 seed: int = 0, reviewer: str = "",
                 say: Callable[[str], None] = lambda line: None) -> None:
        self.index = RecordIndex(run_dir, records, seed)
        self.labels = LabelStore(run_dir / "run.sqlite")
        self.judge = run_judge(run_dir, say)
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
        try:
            given = LabelInput.parse(body, self.index.pool.by_id, self.criteria_of)
        except ValueError as exc:
            return _error(400, str(exc))
        label = self.labels.add(given.record_id, given.passed, given.critique,
                                criterion=given.criterion, reviewer=self.reviewer)
        return web.json_response({"label": label_json(label)})

    def criteria_of(self, record_id: str) -> list[str]:
        """Names of the criteria a record may be labelled on."""
        record = self.index.record(self.index.pool.by_id[record_id])
        return [c["name"] for c in record_criteria(record, self.judge)]

    def detail(self, meta: RecordMeta) -> dict[str, Any]:
        """What the page shows of one record; every text goes out as JSON strings."""
        record = self.index.record(meta)
        seed_id = record.get("seed_id")
        return {"id": meta.id, "skill": meta.skill, "type": meta.type,
                **record_detail(record, record_criteria(record, self.judge),
                                self.labels.history(meta.id)),
                "seed": self.index.seed_excerpt(seed_id),
                "judge": record["judge"] if meta.judge is not None else None,
                "in_dataset": meta.in_dataset,
                "seed_rejects": self.index.seed_rejects(seed_id)}

    def close(self) -> None:
        self.labels.close()


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
