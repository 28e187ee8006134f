"""The daemon's composition root: load the rules, open the store, and tick.

Decision 6 (ARCHITECTURE.md): the whole rule directory is validated before
anything changes; on SIGHUP an invalid rule set is reported and the old one
keeps running. The loop reads the clock once a tick and passes it down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import sys
import time
from collections.abc import Callable

from aiohttp import web as aiohttp_web

from outreach import store as store_module
from outreach.app import inbox as app_inbox
from outreach.app import rules as app_rules
from outreach.app import scheduler as scheduler_module
from outreach.app import sending
from outreach.mail import credentials, imap, links
from outreach.web import metrics as web_metrics
from outreach.web import server as web_server
from outreach.web import service as web_service

log = logging.getLogger("outreach")
HEALTHY_WITHIN = dt.timedelta(minutes=5)  # a scheduler without a finished tick for this long is reported dead


class CannotServe(Exception):
    """The web endpoints cannot listen where Settings (or --listen) say."""


class Daemon:
    """Ticks until stopped. `clock` is the one place it reads the time (tests give their own)."""

    def __init__(
        self,
        rules_dir: str,
        db_url: str | None,
        *,
        tick: float = 5.0,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        read_mail: bool = True,
        listen: tuple[str, int] | None = None,
    ) -> None:
        self.rules_dir = rules_dir
        self.db_url = db_url
        self.tick_seconds = tick
        self.clock = clock
        self.read_mail = read_mail  # read Settings.mailboxes: a task per mailbox, or one look each with --once
        self.inbox: imap.Inbox | None = None
        self.stopping = asyncio.Event()
        self.reload_wanted = False
        self.store: store_module.Store | None = None
        self.rules: app_rules.InForce | None = None
        self.listen = listen  # where the web endpoints listen; None: not served (--once, tests)
        self.web: aiohttp_web.AppRunner | None = None
        self.health = web_server.Health()
        self.metrics = web_metrics.Metrics()
        self.api_token: str | None = None

    @property
    def scheduler(self) -> scheduler_module.Scheduler | None:
        return self.rules.scheduler if self.rules is not None else None

    async def start(self) -> None:
        now = self.clock()
        ruleset = app_rules.load(self.rules_dir, now)
        transport = sending.transport_for(ruleset)  # before anything changes: refuse a transport that cannot run
        url = store_module.resolve_url(self.db_url, os.environ, ruleset.settings.database_url)
        self.store = await store_module.Store.open(url, fields=ruleset.settings.fields)
        self.store.hold_single_daemon()
        unknown = await self.store.recover_outbox()
        if unknown:
            log.warning("%d message(s) were being sent when the daemon stopped; they are now `unknown` and will "
                        "not be sent again unless requeued (outreach outbox list --state unknown)", unknown)  # fmt: skip
        self.rules = app_rules.InForce(self.store, links=sending.daemon_links)
        await self.rules.swap(ruleset, transport, now=now)
        if self.listen is not None:
            self.api_token = web_service.api_token(ruleset.settings)
            await self.start_web(*self.listen)

    async def start_web(self, host: str, port: int) -> None:
        """Serve the web endpoints (unsubscribe, tracking, the ingest API, /healthz, /metrics) beside the loops."""
        assert self.store is not None and self.rules is not None
        rules = self.rules
        ctx = web_server.Context(
            store=self.store, keys=lambda: rules.links_in_force.keys if rules.links_in_force else None,
            ruleset=lambda: rules.ruleset, clock=self.clock, api_token=lambda: self.api_token, health=self.health,
            metrics=self.metrics,
        )  # fmt: skip
        ctx.health.watch("mailboxes", self._mailboxes_problem)
        try:
            self.web = await web_server.start(web_service.build(ctx), host, port)
        except OSError as exc:
            raise CannotServe(f"the web endpoints cannot listen on {host}:{port}: {exc.strerror or exc}"
                                          " (Settings web.listen, or --listen)") from None  # fmt: skip

    def _mailboxes_problem(self) -> str | None:
        stopped = [name for name, task in (self.inbox.tasks.items() if self.inbox else ()) if task.done()]
        return f"the reading of mailbox(es) {', '.join(sorted(stopped))} stopped" if stopped else None

    async def reload(self) -> None:
        """SIGHUP: the new rule set replaces the old one only when it is valid."""
        assert self.rules is not None
        if await self.rules.reload(self.rules_dir, now=self.clock()):
            if self.web is not None:
                self.api_token = web_service.api_token(self.rules.ruleset.settings)
            if self.inbox is not None:
                await self.inbox.update(self.rules.ruleset.settings)  # pollers of changed mailboxes start anew

    async def tick(self) -> scheduler_module.TickReport:
        assert self.rules is not None and self.store is not None
        if self.reload_wanted:
            self.reload_wanted = False
            await self.reload()
        now = self.clock()
        assert self.rules.scheduler is not None
        started = time.perf_counter()
        report = await self.rules.scheduler.tick(now)
        self.metrics.observe_tick(time.perf_counter() - started, report.replies)
        self.health.beat("scheduler", self.clock(), max(HEALTHY_WITHIN, dt.timedelta(seconds=10 * self.tick_seconds)))
        if str(report) != "nothing to do":
            log.info("%s: %s", now.strftime("%Y-%m-%d %H:%M:%S UTC"), report)
            # The tick's writes, still in SQLite's WAL, go into the database file now that its mail is out.
            try:
                pages = await self.store.checkpoint()
            except Exception:  # the tick's work is committed; SQLite checkpoints by itself past its bound
                log.warning("the checkpoint after the tick failed; the next busy tick tries again", exc_info=True)
            else:
                log.debug("checkpoint: %d pages written into the database file", pages)
        return report

    async def run(self, *, once: bool = False) -> None:
        await self.start()
        try:
            assert self.store is not None and self.rules is not None
            recorder = app_inbox.InboundMail(self.store)
            if self.read_mail and once:  # before the tick: a reply stops the step that would go out now
                await imap.Inbox(self.store, recorder, clock=self.clock).poll_once(self.rules.ruleset.settings)
            elif self.read_mail:
                self.inbox = imap.Inbox(self.store, recorder, clock=self.clock)
                await self.inbox.update(self.rules.ruleset.settings)
            while True:
                try:
                    await self.tick()
                except Exception:  # the daemon never dies of one tick: it logs and tries again
                    if once:
                        raise
                    log.exception("the tick failed; trying again in %s s", self.tick_seconds)
                if once:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=self.tick_seconds)
                if self.stopping.is_set():
                    log.info("stopped")
                    return
        finally:
            await self.close()

    async def close(self) -> None:
        if self.web is not None:
            await self.web.cleanup()
            self.web = None
        if self.inbox is not None:
            await self.inbox.close()
            self.inbox = None
        if self.rules is not None:
            await self.rules.close()
        if self.store is not None:
            await self.store.close()

    def install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._want_reload)

    def _want_reload(self) -> None:
        self.reload_wanted = True


async def serve(rules_dir: str, db_url: str | None, *, once: bool, tick: float, now: dt.datetime | None = None,
                web: bool = True, listen: str | None = None) -> int:  # fmt: skip
    """Run until stopped; with `now` (only with `once`) the tick runs at that time instead of the clock's, and no
    mailbox is read (the mail in it is real, the time is not). The web endpoints are served on `listen` (else
    Settings web.listen) unless `web` is False or `once`."""
    at = now.astimezone(dt.UTC) if now is not None else None
    address = None
    if web and not once:
        try:
            address = web_service.listen_address(app_rules.load(rules_dir, dt.datetime.now(dt.UTC)).settings, listen)
        except app_rules.RulesInvalid as exc:
            print(f"{exc}\noutreach: {rules_dir} is not valid; not starting", file=sys.stderr)
            return 1
        except ValueError as exc:
            print(f"outreach: {exc}", file=sys.stderr)
            return 2
    daemon = Daemon(rules_dir, db_url, tick=tick, listen=address) if at is None else \
        Daemon(rules_dir, db_url, tick=tick, clock=lambda: at, read_mail=False)  # fmt: skip
    daemon.install_signals()
    try:
        await daemon.run(once=once)
    except app_rules.RulesInvalid as exc:
        print(f"{exc}\noutreach: {rules_dir} is not valid; not starting", file=sys.stderr)
        return 1
    except (store_module.StoreError, sending.NotBuilt, credentials.MissingSecret, links.WeakSecret,
            CannotServe) as exc:  # fmt: skip
        print(f"outreach: {exc}", file=sys.stderr)
        return 1
    return 0


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("aioimaplib").setLevel(logging.WARNING)  # it logs every untagged response it drops at INFO
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """`python daemon.py [--rules DIR] [--db URL] [--once]` from a checkout (the same as `outreach run`)."""
    parser = argparse.ArgumentParser(prog="daemon.py", description="Run the outreach daemon on a rule directory.")
    parser.add_argument("--rules", default="rules", help="the rule directory (default: rules)")
    parser.add_argument("--db", default=None, help="database URL (default: $OUTREACH_DB, Settings, var/outreach.db)")
    parser.add_argument("--once", action="store_true", help="read each mailbox once, run one tick and exit")
    parser.add_argument("--tick", type=float, default=5.0, help="seconds between ticks (default 5)")
    args = parser.parse_args(argv)
    configure_logging()
    return asyncio.run(serve(args.rules, args.db, once=args.once, tick=args.tick))
