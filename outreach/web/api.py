"""The ingest API under /api/v1: records, events and enrollments from another system, and a record with its
sequences (docs/api.md; the OpenAPI document is outreach/web/openapi.py, served at /api/v1/openapi.json).

`add_routes` is what `make_app(ctx, routes=add_routes)` takes. Each handler checks the bearer token first (401
with `WWW-Authenticate: Bearer`, the body unread and nothing recorded), reads the body (over 1 MB: 413, from the
application's `client_max_size`), hands it to outreach/app/ingest.py and answers its JSON. The application layer
decides; here its refusals become statuses: InvalidBody 400, NotFound 404, Conflict 409, Unprocessable 422.
Every 4xx is `{"error": message}`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from outreach import store as store_module
from outreach.app import ingest
from outreach.web import openapi
from outreach.web.server import CONTEXT, NO_CACHE, Context

log = logging.getLogger("outreach")

PREFIX = "/api/v1"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="outreach"'}


def add_routes(app: web.Application) -> None:
    """Register the ingest API's routes (every path and method is in openapi.DOCUMENT, and only those)."""
    app.router.add_post(f"{PREFIX}/records", post_records)
    app.router.add_get(PREFIX + "/records/{id}", get_record, allow_head=False)
    app.router.add_post(f"{PREFIX}/events", post_event)
    app.router.add_post(f"{PREFIX}/enrollments", post_enrollment)
    app.router.add_get(f"{PREFIX}/openapi.json", get_document, allow_head=False)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers={**NO_CACHE, **(headers or {})})


def _unauthorized(ctx: Context, request: web.Request) -> web.Response | None:
    """The 401 of a request without the right bearer token; None when it may go on."""
    try:
        expected = ctx.api_token()
    except ingest.MissingSecret as exc:
        log.warning("ingest API: %s", exc)
        return _error(401, "the ingest API is off: its token cannot be read (the daemon's log says why)", CHALLENGE)
    problem = ingest.token_problem(expected, request.headers.get("Authorization"))
    if problem is None:
        return None
    return _error(401, problem, CHALLENGE)


async def _answer(call: Callable[[], Awaitable[dict[str, Any]]], status: int = 200) -> web.Response:
    try:
        body = await call()
    except ingest.InvalidBody as exc:
        return _error(400, str(exc))
    except store_module.NotFound as exc:
        return _error(404, str(exc))
    except ingest.Unprocessable as exc:
        return _error(422, str(exc))
    except store_module.StoreBusy:
        return _error(503, "the database is busy; try again later")
    except (ingest.Conflict, store_module.StoreError) as exc:
        return _error(409, str(exc))
    return web.json_response(body, status=status, headers=NO_CACHE)


async def _posted(request: web.Request) -> tuple[Context, dt.datetime, Any] | web.Response:
    """The context, now and the parsed body of an authorized POST; or the answer refusing it (401, 400)."""
    ctx: Context = request.app[CONTEXT]
    refused = _unauthorized(ctx, request)
    if refused is not None:
        return refused
    raw = await request.read()  # over client_max_size: HTTPRequestEntityTooLarge, 413 (server.py's middleware)
    try:
        body = ingest.parse_body(raw)
    except ingest.InvalidBody as exc:
        return _error(400, str(exc))
    return ctx, ctx.clock(), body


async def post_records(request: web.Request) -> web.Response:
    """POST /api/v1/records: create or update a record or a list of them, all or nothing."""
    posted = await _posted(request)
    if isinstance(posted, web.Response):
        return posted
    ctx, now, body = posted
    settings = ctx.ruleset().settings

    async def call() -> dict[str, Any]:
        return (await ingest.upsert_records(ctx.store, settings, body, now=now)).json()

    return await _answer(call)


async def post_event(request: web.Request) -> web.Response:
    """POST /api/v1/events: an event on a record, with what it means for its sequences."""
    posted = await _posted(request)
    if isinstance(posted, web.Response):
        return posted
    ctx, now, body = posted
    settings = ctx.ruleset().settings
    return await _answer(lambda: ingest.record_event(ctx.store, settings, body, now=now))


async def post_enrollment(request: web.Request) -> web.Response:
    """POST /api/v1/enrollments: enroll a record in a sequence (201), or the reason it is refused."""
    posted = await _posted(request)
    if isinstance(posted, web.Response):
        return posted
    ctx, now, body = posted
    ruleset = ctx.ruleset()
    return await _answer(lambda: ingest.enroll(ctx.store, ruleset, body, now=now), status=201)


async def get_record(request: web.Request) -> web.Response:
    """GET /api/v1/records/{id}: the record and its sequences widget."""
    ctx: Context = request.app[CONTEXT]
    refused = _unauthorized(ctx, request)
    if refused is not None:
        return refused
    ruleset = ctx.ruleset()
    return await _answer(lambda: ingest.record_view(ctx.store, ruleset, request.match_info["id"]))


async def get_document(request: web.Request) -> web.Response:
    """GET /api/v1/openapi.json: the OpenAPI 3.1 document of this installation's rules (no token needed)."""
    ctx: Context = request.app[CONTEXT]
    return web.json_response(openapi.document(ctx.ruleset().settings))
