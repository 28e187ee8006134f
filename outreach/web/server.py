"""The one aiohttp application: unsubscribe (GET page, POST and RFC 8058 one-click), the open pixel, the click
redirect, the ingest API, /healthz and /metrics.

The daemon serves it on Settings `web.listen` beside its loops; `outreach web` serves it alone. Handlers read the
request, call the application layer and write the answer; they decide nothing. Every body is bounded
(MAX_BODY); a request for a link whose token is forged, altered or truncated is answered 404 and changes nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from outreach import store as store_module
from outreach.app import status, tracking
from outreach.rules import model
from outreach.web import metrics as metrics_module
from outreach.web import pages

log = logging.getLogger("outreach")

MAX_BODY = 1024 * 1024  # bytes; a bigger body is answered 413
REQUEST_TIMEOUT = 30.0  # seconds a request may take, its body's upload included; then 408
# A transparent GIF of 1x1 pixel, the smallest image every mail client shows.
PIXEL = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")
NO_CACHE = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0, private", "Pragma": "no-cache",
            "Expires": "0"}  # fmt: skip
PAGE_HEADERS = {
    **NO_CACHE,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex",
}
ONE_CLICK = "List-Unsubscribe=One-Click"


@dataclasses.dataclass
class Health:
    """The loops of the process and when each last did its round: a loop silent for longer than its `within` is
    reported dead by /healthz. The daemon beats for its scheduler and mailboxes; `outreach web` has none."""

    loops: dict[str, tuple[dt.datetime, dt.timedelta]] = dataclasses.field(default_factory=dict)
    watched: dict[str, Callable[[], str | None]] = dataclasses.field(default_factory=dict)

    def watch(self, name: str, problem: Callable[[], str | None]) -> None:
        """A part whose `problem()` says what is wrong with it (None: nothing)."""
        self.watched[name] = problem

    def beat(self, name: str, now: dt.datetime, within: dt.timedelta) -> None:
        self.loops[name] = (now, within)

    def forget(self, name: str) -> None:
        self.loops.pop(name, None)

    def names(self) -> list[str]:
        return sorted({*self.loops, *self.watched})

    def problems(self, now: dt.datetime) -> dict[str, str]:
        found = {name: f"no round for {(now - at).total_seconds():.0f} s (expected within {within.total_seconds():g} s)"
                 for name, (at, within) in self.loops.items() if now - at > within}  # fmt: skip
        for name, problem in self.watched.items():
            why = problem()
            if why is not None:
                found[name] = why
        return found


@dataclasses.dataclass
class Context:
    """What the handlers use. `keys` and `ruleset` are read at each request, so a reload takes effect at once."""

    store: store_module.Store
    keys: Callable[[], tracking.Keys | None]
    ruleset: Callable[[], model.RuleSet]
    clock: Callable[[], dt.datetime]
    api_token: Callable[[], str | None] = lambda: None
    health: Health = dataclasses.field(default_factory=Health)
    metrics: metrics_module.Metrics = dataclasses.field(default_factory=metrics_module.Metrics)


CONTEXT = web.AppKey("context", Context)
TIMEOUT = web.AppKey("timeout", float)


def _context(request: web.Request) -> Context:
    return request.app[CONTEXT]


def _page(text: str, status_code: int = 200) -> web.Response:
    return web.Response(text=text, status=status_code, content_type="text/html", charset="utf-8",
                        headers=PAGE_HEADERS)  # fmt: skip


# --- unsubscribe ---------------------------------------------------------------------------------------------


async def unsubscribe_page(request: web.Request) -> web.Response:
    """GET /u/{token}: the confirmation page with one button. It never unsubscribes (link scanners GET it)."""
    ctx = _context(request)
    try:
        found = await tracking.subscription(ctx.store, ctx.keys(), request.match_info["token"])
    except tracking.BadLink:
        return _page(pages.not_found(), 404)
    if found.unsubscribed:
        return _page(pages.done(found.language, found.email, already=True))
    return _page(pages.confirm(found.language, found.email, request.path))


async def unsubscribe(request: web.Request) -> web.Response:
    """POST /u/{token}: the page's button, or a mail provider's RFC 8058 one-click POST (its body is
    `List-Unsubscribe=One-Click`). Unsubscribes at once; a second POST changes nothing; 200 either way."""
    ctx = _context(request)
    body = await request.read()
    one_click = ONE_CLICK.encode() in body
    try:
        done = await tracking.unsubscribe(ctx.store, ctx.keys(), request.match_info["token"], now=ctx.clock(),
                                          one_click=one_click)  # fmt: skip
    except tracking.BadLink:
        return _page(pages.not_found(), 404)
    if not done.already:
        log.info("unsubscribed %s (%s; %d sequence(s) stopped)", done.email, "one-click" if one_click else "page",
                 done.stopped)  # fmt: skip
    return _page(pages.done(done.language, done.email, already=done.already))


# --- tracking ------------------------------------------------------------------------------------------------


async def pixel(request: web.Request) -> web.Response:
    """GET /o/{token}: the open pixel (never cached, so each open asks again)."""
    ctx = _context(request)
    try:
        await tracking.opened(ctx.store, ctx.keys(), request.match_info["token"], now=ctx.clock(),
                              method=request.method, user_agent=request.headers.get("User-Agent", ""),
                              ruleset=ctx.ruleset())  # fmt: skip
    except tracking.BadLink:
        return web.Response(status=404, text="not found", headers=NO_CACHE)
    return web.Response(body=PIXEL, content_type="image/gif", headers=NO_CACHE)


async def click(request: web.Request) -> web.Response:
    """GET /c/{token}: a redirect to the URL recorded for that link when the message was sent, never to one
    taken from the request."""
    ctx = _context(request)
    try:
        found = await tracking.clicked(ctx.store, ctx.keys(), request.match_info["token"], now=ctx.clock(),
                                       method=request.method, user_agent=request.headers.get("User-Agent", ""),
                                       ruleset=ctx.ruleset())  # fmt: skip
    except tracking.BadLink:
        return web.Response(status=404, text="not found", headers=NO_CACHE)
    assert found.url is not None
    return web.Response(status=302, headers={**NO_CACHE, "Location": found.url, "Referrer-Policy": "no-referrer"})


# --- health and metrics --------------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz: 200 when the database answers and every loop did its round in time; 503 naming what fails."""
    ctx = _context(request)
    problems: dict[str, str] = {}
    database = await status.database_problem(ctx.store)
    if database is not None:
        problems["database"] = database
    problems |= ctx.health.problems(ctx.clock())
    checks = {"database": problems.get("database", "ok"),
              **{name: problems.get(name, "ok") for name in ctx.health.names()}}  # fmt: skip
    body = {"status": "failing" if problems else "ok", "checks": checks}
    return web.json_response(body, status=503 if problems else 200, headers=NO_CACHE)


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus' text format."""
    ctx = _context(request)
    data = await ctx.metrics.render(ctx.store, ctx.clock())
    return web.Response(body=data, headers={**NO_CACHE, "Content-Type": metrics_module.CONTENT_TYPE})


# --- the application -----------------------------------------------------------------------------------------


def _json_error(status_code: int, message: str) -> web.Response:
    return web.Response(text=json.dumps({"error": message}), status=status_code, content_type="application/json")


@web.middleware
async def _errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                  ) -> web.StreamResponse:  # fmt: skip
    """The database down is 503, a body too big 413, a request slower than REQUEST_TIMEOUT (a body trickling in)
    408; under /api/ every error is JSON with a message."""
    api = request.path.startswith("/api/")
    try:
        async with asyncio.timeout(request.app[TIMEOUT]):
            return await handler(request)
    except TimeoutError:
        message = f"the request took longer than {request.app[TIMEOUT]:g} s"
        return _json_error(408, message) if api else web.Response(status=408, text=message, headers=NO_CACHE)
    except web.HTTPException as exc:
        if api and exc.status >= 400:
            answer = _json_error(exc.status, exc.text or exc.reason)
            for name, value in exc.headers.items():  # Allow of a 405, WWW-Authenticate of a 401 ...
                if name.lower() not in ("content-type", "content-length"):
                    answer.headers[name] = value
            return answer
        raise
    except store_module.DatabaseError:
        log.exception("%s %s: the database failed", request.method, request.path)
        if api:
            return _json_error(503, "the database is not available; try again later")
        return web.Response(status=503, text="The service is not available; please try again later.",
                            headers=NO_CACHE)  # fmt: skip


def make_app(ctx: Context, *, routes: Callable[[web.Application], Any] | None = None,
             timeout: float = REQUEST_TIMEOUT) -> web.Application:  # fmt: skip
    """The application over `ctx`. `routes` adds more (the ingest API adds its own)."""
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_errors])
    app[CONTEXT] = ctx
    app[TIMEOUT] = timeout
    app.router.add_get("/u/{token}", unsubscribe_page)
    app.router.add_post("/u/{token}", unsubscribe)
    app.router.add_get("/o/{token}", pixel)
    app.router.add_get("/c/{token}", click)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    if routes is not None:
        routes(app)
    return app


async def start(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Listen on host:port; the runner's cleanup() stops it."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=128, reuse_address=True)
    await site.start()
    for address in runner.addresses:
        log.info("web endpoints on http://%s:%d", *address[:2])
    return runner
