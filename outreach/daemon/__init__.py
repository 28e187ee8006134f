"""The daemon's composition root: load the rules, open the store, and run the loops under one supervisor.

Decision 6 (ARCHITECTURE.md): the whole rule directory is validated before anything changes; on SIGHUP an
invalid rule set is reported and the old one keeps running. The loops read the clock and pass it down.

The loops (outreach/daemon/supervisor.py restarts one that fails, with backoff):
- `scheduler`: a tick every `tick` seconds (auto-enrollment, due steps, task steps, the reminders where this
  daemon holds their lease); it sends WATCHDOG=1 while it and the dispatcher make progress, and STATUS= lines;
- `dispatcher`: hands queued mail to the transport; on SIGTERM it claims nothing more and the group in flight
  finishes within the grace period;
- `leases`: keeps this daemon's own lease (it is alive: its `sending` rows are its own), the singleton work's
  (each mailbox's poller, the reminder run, housekeeping), and starts or stops the IMAP pollers to match;
- the web endpoints (aiohttp, outreach/web/) and one IMAP poller per mailbox it holds, which restart on their own.
Under systemd (Type=notify) it says READY=1 once the database, the transport and the web socket are up,
RELOADING=1 and READY=1 around a reload, and STOPPING=1 on SIGTERM (outreach/daemon/notify.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable

from aiohttp import web as aiohttp_web

from outreach import store as store_module
from outreach.app import inbox as app_inbox
from outreach.app import rules as app_rules
from outreach.app import scheduler as scheduler_module
from outreach.app import sending
from outreach.daemon import logs, notify, supervisor
from outreach.mail import credentials, imap, links
from outreach.web import metrics as web_metrics
from outreach.web import server as web_server
from outreach.web import service as web_service

log = logging.getLogger("outreach")
HEALTHY_WITHIN = dt.timedelta(minutes=5)  # a scheduler without a finished tick for this long is reported dead
GRACE = 30.0  # seconds the mail in flight has to finish after SIGTERM
LEASE = dt.timedelta(seconds=30)  # how long a lease runs unrenewed: a dead daemon's work is taken over after it
DISPATCH_SLICE = 10.0  # seconds a dispatch claims at one reading of the clock
STATUS_EVERY = 15.0  # seconds between STATUS= lines (each counts the queue)
FORGET_AFTER = dt.timedelta(days=7)  # a daemon gone this long leaves `outreach status`
REMINDERS, HOUSEKEEPING, MAILBOX = "reminders", "housekeeping", "mailbox:"


class CannotServe(Exception):
    """The web endpoints cannot listen where Settings (or --listen) say."""


def new_daemon_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


class Daemon:
    """Runs the loops until stopped. `clock` is the one place it reads the time (tests give their own)."""

    def __init__(
        self,
        rules_dir: str,
        db_url: str | None,
        *,
        tick: float = 5.0,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        read_mail: bool = True,
        listen: tuple[str, int] | None = None,
        grace: float = GRACE,
        lease: dt.timedelta = LEASE,
        notifier: notify.Notifier | None = None,
        daemon_id: str | None = None,
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
        self.grace = grace
        self.lease = lease
        self.notifier = notifier or notify.Notifier()
        self.id = daemon_id or new_daemon_id()
        self.held: set[str] = set()  # the singleton leases this daemon holds
        self.last_tick: dt.datetime | None = None
        self.sent_today = (dt.date.min, 0)
        self._wake = asyncio.Event()  # mail was queued: the dispatcher looks at once
        self._alive: dict[str, float] = {}  # loop -> when it last made progress (monotonic), for the watchdog
        self._status_at = 0.0
        self._polled: set[str] | None = None  # the mailboxes the pollers were last set up for

    @property
    def scheduler(self) -> scheduler_module.Scheduler | None:
        return self.rules.scheduler if self.rules is not None else None

    # --- starting ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        now = self.clock()
        ruleset = app_rules.load(self.rules_dir, now)
        transport = sending.transport_for(ruleset)  # before anything changes: refuse a transport that cannot run
        url = store_module.resolve_url(self.db_url, os.environ, ruleset.settings.database_url)
        self.store = await store_module.Store.open(url, fields=ruleset.settings.fields)
        self.store.hold_single_daemon()  # SQLite: one daemon; PostgreSQL: several, each with its own lease
        await self.store.take_lease(f"daemon:{self.id}", self.id, now, self.lease, self._info())
        unknown = await self.store.recover_outbox(now if self.store.dialect == "postgresql" else None)
        if unknown:
            log.warning("%d message(s) were being sent when a daemon stopped; they are now `unknown` and will "
                        "not be sent again unless requeued (outreach outbox list --state unknown)", unknown)  # fmt: skip
        self.rules = app_rules.InForce(self.store, links=sending.daemon_links, daemon_id=self.id)
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

    # --- reloading --------------------------------------------------------------------------------------------

    async def reload(self) -> None:
        """SIGHUP: the new rule set replaces the old one only when it is valid (RELOADING=1, then READY=1 either
        way: the daemon runs on, with the new rules or the old)."""
        assert self.rules is not None
        self.notifier.reloading()
        try:
            if await self.rules.reload(self.rules_dir, now=self.clock()):
                log.info("rules reloaded")
                if self.web is not None:
                    self.api_token = web_service.api_token(self.rules.ruleset.settings)
                await self._follow_leases(renew=True)  # pollers of changed mailboxes start anew
        finally:
            self.notifier.ready(self._status_text())

    # --- one tick (outreach run --once, tests) ----------------------------------------------------------------

    async def tick(self, *, dispatch: bool = True) -> scheduler_module.TickReport:
        assert self.rules is not None and self.store is not None
        if self.reload_wanted:
            self.reload_wanted = False
            await self.reload()
        now = self.clock()
        assert self.rules.scheduler is not None
        started = time.perf_counter()
        report = await self.rules.scheduler.tick(now, dispatch=dispatch, reminders=self._holds(REMINDERS),
                                                 stop=self.stopping.is_set)  # fmt: skip
        self.metrics.observe_tick(time.perf_counter() - started, report.replies)
        self.last_tick = now
        self._count_sent(now, report.sent)
        self.health.beat("scheduler", self.clock(), max(HEALTHY_WITHIN, dt.timedelta(seconds=10 * self.tick_seconds)))
        if str(report) != "nothing to do":
            log.info("%s: %s", now.strftime("%Y-%m-%d %H:%M:%S UTC"), report)
            await self._checkpoint()
        return report

    async def _checkpoint(self) -> None:
        """The tick's writes, still in SQLite's WAL, go into the database file now that its mail is out."""
        assert self.store is not None
        try:
            pages = await self.store.checkpoint()
        except Exception:  # the tick's work is committed; SQLite checkpoints by itself past its bound
            log.warning("the checkpoint after the tick failed; the next busy tick tries again", exc_info=True)
        else:
            log.debug("checkpoint: %d pages written into the database file", pages)

    def _holds(self, lease: str) -> bool:
        """Whether this daemon does the singleton work `lease` names (before the lease loop ran: only on SQLite,
        where it is the only daemon)."""
        assert self.store is not None
        return lease in self.held or (not self.held and self.store.dialect != "postgresql")

    def _count_sent(self, now: dt.datetime, sent: int) -> None:
        day, n = self.sent_today
        self.sent_today = (now.date(), (n if day == now.date() else 0) + sent)

    # --- the loops --------------------------------------------------------------------------------------------

    async def run(self, *, once: bool = False) -> None:
        await self.start()
        try:
            assert self.store is not None and self.rules is not None
            rules = self.rules
            recorder = app_inbox.InboundMail(self.store, lambda: rules.ruleset if rules.scheduler is not None else None)
            if once:
                await self._follow_leases(quiet=True)  # the reminder run only where no other daemon does it now
                if self.read_mail:  # before the tick: a reply stops the step that would go out now
                    await imap.Inbox(self.store, recorder, clock=self.clock).poll_once(self.rules.ruleset.settings)
                await self.tick()
                return
            if self.read_mail:
                self.inbox = imap.Inbox(self.store, recorder, clock=self.clock)
            await self._follow_leases()
            jobs = supervisor.Supervisor()
            jobs.add("leases", self._lease_loop)
            jobs.add("scheduler", self._scheduler_loop)
            jobs.add("dispatcher", self._dispatcher_loop, graceful=True)
            self.notifier.ready(self._status_text())
            try:
                await jobs.run(self.stopping, grace=self.grace)
            finally:
                if not self.stopping.is_set():  # the loops gave up (SIGTERM said STOPPING=1 already)
                    self.notifier.stopping()
            log.info("stopped")
        finally:
            await self.close()

    def _mark(self, loop: str) -> None:
        self._alive[loop] = time.monotonic()

    def _wait_seconds(self) -> float:
        interval = self.notifier.watchdog_interval
        return min(self.tick_seconds, interval) if interval else self.tick_seconds

    async def _sleep(self, seconds: float, wake: asyncio.Event | None = None) -> None:
        """Wait `seconds`, or less when stopping (or `wake`) is set."""
        waits = [asyncio.ensure_future(self.stopping.wait())]
        if wake is not None:
            waits.append(asyncio.ensure_future(wake.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _scheduler_loop(self) -> None:
        while not self.stopping.is_set():
            report = await self.tick(dispatch=False)
            self._mark("scheduler")
            if report.queued or report.reminders or report.campaign_mail:
                self._wake.set()
            await self._status()
            self._watchdog()
            await self._sleep(self._wait_seconds())
            self._mark("scheduler")
            self._watchdog()

    async def _dispatcher_loop(self) -> None:
        """Hands queued mail to the transport until stopping; then the group in flight finishes (graceful)."""
        while not self.stopping.is_set():
            scheduler = self.scheduler
            assert scheduler is not None
            scheduler.progress = lambda: self._mark("dispatcher")
            self._wake.clear()
            report = scheduler_module.TickReport()
            now = self.clock()

            # A dispatch claims until the queue is empty, which under load can take hours: a reload (another
            # scheduler in force) ends its claims too, so that the rest of the queue goes out under the new rules
            # and through the new transport, not the old one. And a dispatch works at the `now` it was given
            # (sent_at, retry times, daily limits): after DISPATCH_SLICE it stops claiming, and the loop goes on at
            # once with a new reading of the clock.
            began = time.monotonic()

            def stop(dispatching: scheduler_module.Scheduler = scheduler, began: float = began) -> bool:
                return (self.stopping.is_set() or self.scheduler is not dispatching
                        or time.monotonic() - began > DISPATCH_SLICE)  # fmt: skip

            await scheduler.dispatch(now, report, stop=stop)
            self._mark("dispatcher")
            if report.sent or report.failed or report.deferred or report.held:
                self.metrics.count_replies(report.replies)  # the tick histogram is the scheduler's ticks alone
                self._count_sent(now, report.sent)
                log.info("%s: %s", now.strftime("%Y-%m-%d %H:%M:%S UTC"), report)
                await self._checkpoint()
            in_force = self.scheduler
            if in_force is not scheduler:
                # The reload closed the old transport's idle connections; those that were sending came back to it
                # since: they get a QUIT too, rather than a cut whenever the garbage collector gets to them.
                old = scheduler.transport
                if old is not None and (in_force is None or old is not in_force.transport):
                    await old.close()
                continue
            if time.monotonic() - began > DISPATCH_SLICE:
                continue  # the slice ended, perhaps with mail still queued: claim again at once, at a new `now`
            await self._sleep(self._wait_seconds(), self._wake)

    def _watchdog(self) -> None:
        """WATCHDOG=1, from the scheduler's loop, while the scheduler and the dispatcher both made progress
        within the watchdog's period: a loop stuck longer stops the pings, and systemd restarts the daemon."""
        interval = self.notifier.watchdog_interval
        if interval is None:
            return
        now = time.monotonic()
        if all(now - self._alive.get(loop, now) < 2 * interval for loop in ("scheduler", "dispatcher")):
            self.notifier.watchdog()

    async def _status(self) -> None:
        """A STATUS= line (last tick, queue, sent today) at most every STATUS_EVERY seconds."""
        if not self.notifier.enabled or time.monotonic() - self._status_at < STATUS_EVERY:
            return
        self._status_at = time.monotonic()
        self.notifier.status(await self._status_line())

    async def _status_line(self) -> str:
        assert self.store is not None
        counts = await self.store.outbox_counts()
        queue = counts.get("queued", 0) + counts.get("deferred", 0)
        return f"{self._status_text()}; queue {queue}; sent today {self.sent_today[1]}"

    def _status_text(self) -> str:
        return f"last tick {self.last_tick:%H:%M:%S} UTC" if self.last_tick else "starting"

    def _info(self) -> dict[str, object]:
        return {"host": socket.gethostname(), "pid": os.getpid(),
                "last_tick": self.last_tick.isoformat() if self.last_tick else None,
                "sent_today": self.sent_today[1], "held": sorted(self.held)}  # fmt: skip

    async def _lease_loop(self) -> None:
        """Renew this daemon's leases every third of a lease period; take the work of daemons that are gone."""
        while not self.stopping.is_set():
            await self._follow_leases()
            await self._sleep(self.lease.total_seconds() / 3)

    async def _follow_leases(self, *, quiet: bool = False, renew: bool = False) -> None:
        """Renew and take leases; start and stop the pollers to match (when the mailboxes held changed, or with
        `renew`: after a reload). `quiet`: log the leases taken at DEBUG (`run --once`, which gives them up)."""
        assert self.store is not None and self.rules is not None
        now = self.clock()
        await self.store.take_lease(f"daemon:{self.id}", self.id, now, self.lease, self._info())
        wanted = [REMINDERS, HOUSEKEEPING, *(f"{MAILBOX}{name}" for name in self.rules.ruleset.settings.mailboxes)]
        held = set()
        for name in wanted:
            if await self.store.take_lease(name, self.id, now, self.lease):
                held.add(name)
        for name in self.held - held:
            log.warning("lease %s went to another daemon", name, extra={"daemon": self.id})
        for name in held - self.held:
            log.log(logging.DEBUG if quiet else logging.INFO, "lease %s taken", name, extra={"daemon": self.id})
        self.held = held
        if HOUSEKEEPING in held:
            await self.store.forget_daemons(now - FORGET_AFTER)
        if HOUSEKEEPING in held and self.store.dialect == "postgresql":
            unknown = await self.store.recover_outbox(now)
            if unknown:
                log.warning("%d message(s) were being sent by a daemon that is gone; they are now `unknown` and "
                            "will not be sent again unless requeued", unknown)  # fmt: skip
        mailboxes = {name.removeprefix(MAILBOX) for name in held if name.startswith(MAILBOX)}
        if self.inbox is not None and (renew or mailboxes != self._polled):  # not every round: it logs
            await self.inbox.update(self.rules.ruleset.settings, only=mailboxes)
            self._polled = mailboxes

    # --- stopping ---------------------------------------------------------------------------------------------

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
            with contextlib.suppress(Exception):  # the database may be what failed; the leases expire anyway
                # The work goes to another daemon at once; this one's own lease ends now ("gone" in `status`).
                await self.store.release_leases(self.id, keep=f"daemon:{self.id}")
                await self.store.take_lease(f"daemon:{self.id}", self.id, self.clock(), dt.timedelta(0),
                                            {**self._info(), "stopped": True})  # fmt: skip
            await self.store.close()
        self.notifier.close()

    def install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop)
        loop.add_signal_handler(signal.SIGHUP, self._want_reload)

    def _stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stopping: no new work; mail in flight has %g s to finish", self.grace)
            self.notifier.stopping()
        self.stopping.set()

    def _want_reload(self) -> None:
        self.reload_wanted = True


async def serve(rules_dir: str, db_url: str | None, *, once: bool, tick: float, now: dt.datetime | None = None,
                web: bool = True, listen: str | None = None, lease: float | None = None,
                grace: float = GRACE) -> int:  # fmt: skip
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
    period = dt.timedelta(seconds=lease) if lease is not None else LEASE
    daemon = Daemon(rules_dir, db_url, tick=tick, grace=grace, lease=period, listen=address) if at is None else \
        Daemon(rules_dir, db_url, tick=tick, grace=grace, lease=period, clock=lambda: at, read_mail=False)  # fmt: skip
    daemon.install_signals()
    try:
        await daemon.run(once=once)
    except app_rules.RulesInvalid as exc:
        print(f"{exc}\noutreach: {rules_dir} is not valid; not starting", file=sys.stderr)
        return 1
    except (store_module.StoreError, sending.NotBuilt, credentials.MissingSecret, links.WeakSecret,
            CannotServe, supervisor.Unrecoverable) as exc:  # fmt: skip
        print(f"outreach: {exc}", file=sys.stderr)
        return 1
    return 0


def configure_logging(fmt: str = "text") -> None:
    logs.configure(fmt)


def main(argv: list[str] | None = None) -> int:
    """`python daemon.py [--rules DIR] [--db URL] [--once]` from a checkout (the same as `outreach run`)."""
    parser = argparse.ArgumentParser(prog="daemon.py", description="Run the outreach daemon on a rule directory.")
    parser.add_argument("--rules", default="rules", help="the rule directory (default: rules)")
    parser.add_argument("--db", default=None, help="database URL (default: $OUTREACH_DB, Settings, var/outreach.db)")
    parser.add_argument("--once", action="store_true", help="read each mailbox once, run one tick and exit")
    parser.add_argument("--tick", type=float, default=5.0, help="seconds between ticks (default 5)")
    parser.add_argument("--log-format", choices=["text", "json"], default="text", help="log lines as text or JSON")
    args = parser.parse_args(argv)
    configure_logging(args.log_format)
    return asyncio.run(serve(args.rules, args.db, once=args.once, tick=args.tick))
