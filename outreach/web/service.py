"""The web application with all its routes, and `outreach web`: the endpoints served alone, without the daemon's
loops, for a deployment that runs them apart (on the same database)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import signal
from collections.abc import Callable

from aiohttp import web

from outreach import store as store_module
from outreach.app import ingest, sending, tracking
from outreach.app import rules as app_rules
from outreach.app.ingest import MissingSecret
from outreach.rules import model
from outreach.web import api, server


def build(ctx: server.Context) -> web.Application:
    """The one application: links, health, metrics and the ingest API."""
    return server.make_app(ctx, routes=api.add_routes)


def listen_address(settings: model.Settings, override: str | None) -> tuple[str, int]:
    """(host, port) from --listen HOST:PORT, else Settings web.listen."""
    if override is None:
        return settings.web.host_port
    host, sep, port = override.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"--listen {override!r}: give HOST:PORT, e.g. 127.0.0.1:8025")
    return host.strip("[]") or "127.0.0.1", int(port)


def api_token(settings: model.Settings) -> str | None:
    """The ingest API's bearer token, or None (the API answers 401 to everything) when Settings names none or the
    one it names is not set: the rest of the endpoints serve anyway, and the operator is told."""
    try:
        return ingest.api_token(settings)
    except (MissingSecret, ingest.WeakSecret) as exc:
        logging.getLogger("outreach").warning("the ingest API is off: %s", exc)
        return None


class Served:
    """The rule set, its links and the API token that handlers read; `load` replaces them together."""

    def __init__(self, ruleset: model.RuleSet) -> None:
        self.ruleset = ruleset
        self.keys: tracking.Keys | None = None
        self.token: str | None = None
        self.load(ruleset)

    def load(self, ruleset: model.RuleSet) -> None:
        signed = sending.daemon_links(ruleset)
        self.ruleset, self.keys, self.token = ruleset, signed.keys if signed else None, api_token(ruleset.settings)


async def serve_alone(rules_dir: str, db_url: str | None, *, listen: str | None,
                      clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> int:  # fmt: skip
    """Serve the endpoints until SIGTERM or SIGINT; SIGHUP reloads the rules (all or nothing)."""
    log = logging.getLogger("outreach")
    ruleset = app_rules.load(rules_dir, clock())
    served = Served(ruleset)
    host, port = listen_address(ruleset.settings, listen)
    url = store_module.resolve_url(db_url, os.environ, ruleset.settings.database_url)
    store = await store_module.Store.open(url, fields=ruleset.settings.fields)
    ctx = server.Context(store=store, keys=lambda: served.keys, ruleset=lambda: served.ruleset, clock=clock,
                         api_token=lambda: served.token)  # fmt: skip
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()

    def reload() -> None:
        try:
            served.load(app_rules.load(rules_dir, clock()))
        except Exception as exc:  # an invalid set (or a weak secret): the old one keeps serving
            log.error("the rules were not reloaded; the old ones keep serving:\n%s", exc)
        else:
            log.info("rules reloaded")

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        runner = await server.start(build(ctx), host, port)
        try:
            await stopping.wait()
        finally:
            await runner.cleanup()
    finally:
        await store.close()
    log.info("stopped")
    return 0
