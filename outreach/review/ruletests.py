"""RuleTests, run: the real scheduler and store on a virtual clock, and what happened compared with what was expected.

Each RuleTest (RULES-LANGUAGE.md, "kind: RuleTest") gets an empty SQLite store in memory (one store, emptied
between tests: outreach/store/memory.py), the rule set put in force as the daemon puts it (outreach/app/rules.py),
its records imported at `start`, and a transport that records every message with the virtual time it was sent.
The clock then moves from `start` to `until`, stopping only where something can happen: at each event, where the
store says an enrollment or a deferred message is next due, at the daily run of a process when one of its records
can be reminded then, five minutes after the reminders' last look when a change left a reminder due (the daemon
looks again then), at each campaign's send time and each follow-up's due time (and a second later, the daemon's
next tick, while its recipients are picked or their mail rendered a window at a time; when a send window or a
daily limit opens for mail held back) and, for auto-enrolling sequences whose criteria depend on time, at every
hourly full scan. At each stop the events of that instant are recorded through the application layer, as the CLI,
the IMAP poller and the web side record them (outreach/app/events.py, enrolling.py, inbox.py, tracking.py: an open
or a click fetches the signed URL the mail carries), then one `Scheduler.tick(now)` runs, as the daemon's would.

`check` compares the run with the expectations (pure); `format_text`, `format_json` and `format_junit` print
results. Nothing here reads the wall clock except to time a run for the report.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.header
import email.message
import email.parser
import email.policy
import email.utils
import functools
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from email.message import EmailMessage
from typing import Any
from xml.etree import ElementTree

from outreach import store as store_module
from outreach.app import campaigns as app_campaigns
from outreach.app import enrolling, events, inbox, reminding, sending, suppressions, tracking
from outreach.app import importing as import_rows
from outreach.app import rules as app_rules
from outreach.engine import campaigns as campaign_engine
from outreach.engine import reminders
from outreach.mail import inbound, links
from outreach.mail import transport as mail_transport
from outreach.rules import criteria, diagnostics, model
from outreach.store import memory

MAILBOX = "ruletest"  # the mailbox replies, auto-replies and bounces are "read" from
TEST_KEYS = links.Keys((b"outreach test: the signed links of RuleTests",))  # as a daemon with a secret signs
MAX_STOPS = 100_000  # a run that stops more often than this is a bug in the engine or here, not a long test
_RECHECK = reminding.LOOK_AFTER_CHANGES
_HOUR = enrolling.FULL_SCAN_EVERY
_SOON = dt.timedelta(seconds=1)  # the daemon's next tick, for work a tick left to the next one
_DAY = dt.timedelta(days=1)
# Who fetches a pixel or follows a link: a person's mail program, or (`automated: true`) a link scanner, which
# outreach/engine/tracking.py flags by its user agent.
PERSON_AGENT = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko)"
SCANNER_AGENT = "Mozilla/5.0 (compatible; link scanner)"


class RuleTestError(Exception):
    """The RuleTest cannot run as written (an event that cannot happen); `line` is where in its file."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


# --- what happened -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sent:
    """A message the transport took, at its virtual time."""

    at: dt.datetime
    to: str
    sender: str
    template: str
    subject: str
    thread: str  # reply (it has In-Reply-To) or new
    record: str | None
    campaign: str | None = None  # a campaign's mail (its X-Outreach-Campaign header)


@dataclasses.dataclass(frozen=True)
class CampaignStep:
    """A campaign's mail or one of its follow-ups at the end of a run: its state and statistics."""

    campaign: str
    step: int
    template: str
    status: str  # scheduled, sending, sent, stopped, deleted, not applied; a follow-up: waiting too
    counts: Mapping[str, int]  # model.CAMPAIGN_COUNTS, and `skipped` in all
    skipped: Mapping[str, int]  # by reason

    @property
    def label(self) -> str:
        return _step_label(self.campaign, self.step, self.template)


@dataclasses.dataclass(frozen=True)
class Actual:
    """What a run did: every mail sent, every task, the records' final fields, the enrollments' final states and
    the campaigns' statistics."""

    sent: tuple[Sent, ...] = ()
    tasks: tuple[tuple[str, str, dt.datetime], ...] = ()  # (record, subject, created at)
    fields: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)  # record -> field -> value
    enrollments: Mapping[tuple[str, str], tuple[str, str | None]] = dataclasses.field(default_factory=dict)
    notices: tuple[str, ...] = ()  # enrollments refused, at their time
    campaigns: Mapping[tuple[str, int], CampaignStep] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Line:
    """One line of a diff: `-` expected but not so, `+` happened but not expected, ` ` as expected."""

    sign: str
    what: str  # sent, task, update, enrollment, campaign
    at: dt.datetime | None
    text: str
    where: str = ""  # file:line of the expectation


@dataclasses.dataclass(frozen=True)
class Result:
    test: model.RuleTest
    lines: tuple[Line, ...] = ()
    error: str | None = None  # the test could not run (file:line: message)
    actual: Actual = Actual()
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.error is None and not any(line.sign != " " for line in self.lines)

    @property
    def where(self) -> str:
        return f"{self.test.source.file}:{self.test.source.line}"


# --- the recording transport ------------------------------------------------------------------------------------


_FOLD = re.compile(r"\r?\n(?=[ \t])")  # unfolding (RFC 5322 2.2.3): the line break goes, the blank stays


@dataclasses.dataclass(frozen=True)
class Recorded:
    at: dt.datetime
    sender: str
    recipients: tuple[str, ...]
    data: bytes

    @functools.cached_property
    def message(self) -> EmailMessage:
        """The whole message, parsed (when asked: the runner itself reads only a few headers)."""
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @functools.cached_property
    def _headers(self) -> email.message.Message:
        return email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(self.data)

    def header(self, name: str) -> str:
        """A header's value, unfolded and decoded (RFC 2047); empty if the message has none."""
        raw = self._headers.get(name)
        if raw is None:
            return ""
        unfolded = _FOLD.sub("", str(raw))
        return str(email.header.make_header(email.header.decode_header(unfolded)))


class RecordingTransport:
    """Takes every message and keeps it with the virtual time the runner sets in `now`."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now
        self.messages: list[Recorded] = []

    async def send(self, sender: str, recipients: Sequence[str], message: bytes) -> mail_transport.SendResult:
        self.messages.append(Recorded(self.now, sender, tuple(recipients), message))
        return mail_transport.SendResult(True, detail="recorded")

    async def close(self) -> None:
        """Nothing to release."""


# --- running ---------------------------------------------------------------------------------------------------


def until_of(test: model.RuleTest, ruleset: model.RuleSet | None = None) -> dt.datetime:
    """`until`, or one simulated day after the latest time named in the events or the expectations, or at which
    a campaign that a `campaigns` expectation names sends its mail or a follow-up (applied at `start`)."""
    if test.until is not None:
        return test.until
    named = [test.start, *(e.at for e in test.events)]
    named += [e.args["starts"] for e in test.events if isinstance(e.args.get("starts"), dt.datetime)]
    whens = [s.when for s in test.expect.sent or ()] + [t.when for t in test.expect.tasks if t.when is not None]
    for w in whens:
        named += [t for t in (w.at, w.after, w.before) if t is not None]
    for name in {x.campaign for x in test.expect.campaigns}:
        campaign = ruleset.campaigns.get(name) if ruleset is not None else None
        if campaign is not None:
            sends = campaign_engine.send_time(campaign, test.start)
            named += [sends, *(campaign_engine.follow_up_due(f, sends) for f in campaign.follow_ups)]
    return max(named) + dt.timedelta(days=1)


async def run_all(tests: Iterable[model.RuleTest], ruleset: model.RuleSet) -> list[Result]:
    """Run RuleTests one after the other, each on its own store."""
    stores = memory.MemoryStore()
    try:
        return [await run(test, ruleset, stores) for test in tests]
    finally:
        await stores.close()


async def run(test: model.RuleTest, ruleset: model.RuleSet, stores: memory.MemoryStore) -> Result:
    """Run one RuleTest and check it."""
    started = time.perf_counter()
    problem = expects_nothing(test)
    if problem is not None:
        return Result(test, error=f"{test.source.file}:{test.source.line}: {problem}")
    store = await stores.fresh(ruleset.settings.fields)
    try:
        actual = await _Run(test, ruleset, store, stores).go()
    except RuleTestError as exc:
        return Result(test, error=f"{test.source.file}:{exc.line}: {exc}", seconds=time.perf_counter() - started)
    return Result(test, tuple(check(test, actual)), None, actual, time.perf_counter() - started)


@dataclasses.dataclass(frozen=True)
class StepTrace:
    """A campaign step as a run left it: when it went (or is due), and whom it skipped and why."""

    campaign: str
    step: int
    at: dt.datetime | None  # the campaign mail: when it started going (its send time before); a follow-up: due
    skipped: tuple[tuple[str, str], ...]  # (record, reason), by record


@dataclasses.dataclass(frozen=True)
class Trace:
    """A run as it happened, unchecked (for `outreach simulate`): `Actual` and the store's rows behind it."""

    actual: Actual
    outbox: tuple[Mapping[str, Any], ...]  # the outbox row of each mail of `actual.sent` ({} when none)
    enrollments: tuple[Mapping[str, Any], ...]  # the enrollment rows of the test's records, oldest first
    tasks: tuple[store_module.rows.Task, ...]  # every task, in the order created
    activity: tuple[store_module.rows.Event, ...]  # the events of the test's records, in time order
    steps: tuple[StepTrace, ...] = ()  # each campaign's steps


async def trace(test: model.RuleTest, ruleset: model.RuleSet, *, suppressed: Sequence[tuple[str, str]] = (),
                deleted: Sequence[str] = ()) -> Trace:  # fmt: skip
    """Run one RuleTest on a store of its own without checking its expectations; RuleTestError as `run` has.
    `suppressed` (address, reason) are on the suppression list and the records of `deleted` deleted at `start`,
    before anything else happens (`outreach simulate --campaign` copies them from a database)."""
    stores = memory.MemoryStore()
    try:
        store = await stores.fresh(ruleset.settings.fields)
        one = _Run(test, ruleset, store, stores, suppressed=suppressed, deleted=deleted)
        actual = await one.go()
        by_id = {m["message_id"]: m for m in await store.outbox()}
        outbox = tuple(by_id.get(r.header("Message-ID"), {}) for r in one.transport.messages)
        ids = [r.id for r in test.records]
        activity = [e for rid in ids for e in await store.events(rid)]
        tasks = sorted(await store.list_tasks(open_only=False), key=lambda t: (t.created_at, t.id))
        steps = []
        for view in await app_campaigns.overview(store, one.ruleset):
            for s in view.steps:
                found = await store.campaign_recipient_list(view.name, s.step, "skipped")
                steps.append(StepTrace(view.name, s.step, s.due_at,
                                       tuple((r["record_id"], str(r["reason"])) for r in found)))  # fmt: skip
        return Trace(actual, outbox, tuple(await store.enrollments(record_ids=ids)), tuple(tasks),
                     tuple(sorted(activity, key=lambda e: e.at)), tuple(steps))  # fmt: skip
    finally:
        await stores.close()


def expects_nothing(test: model.RuleTest) -> str | None:
    e = test.expect
    if e.sent is None and not (e.tasks or e.updates or e.enrollments or e.campaigns):
        return "a RuleTest must expect something: sent, tasks, updates, enrollments or campaigns"
    return None


class _Run:
    """One RuleTest's run on its store."""

    def __init__(
        self, test: model.RuleTest, ruleset: model.RuleSet, store: store_module.Store, memory_: memory.MemoryStore,
        *, suppressed: Sequence[tuple[str, str]] = (), deleted: Sequence[str] = (),
    ) -> None:  # fmt: skip
        self.test = test
        self.suppressed = suppressed
        self.deleted = deleted
        self.memory = memory_
        self.ruleset = ruleset
        self.store = store
        self.transport = RecordingTransport(test.start)
        self.rules = app_rules.InForce(store, links=_signed_links, signer=_unsigned)
        self.inbox = inbox.InboundMail(store, lambda: self.rules.ruleset if self.rules.scheduler is not None else None)
        self.notices: list[str] = []
        self.uid = 0
        self.changed: dt.datetime | None = None  # when an event last changed something
        self.ticks: list[dt.datetime] = []  # the ticks of the last few minutes
        self.hourly = _hourly(ruleset)

    async def go(self) -> Actual:
        test, store = self.test, self.store
        start, until = test.start, until_of(test, self.ruleset)
        await self._swap(self.ruleset, start, test.source.line)
        await store.set_mailbox_position(MAILBOX, 1, 0, start)
        rows = [import_rows.Row(0, r.id, r.type, _address(r.fields.get("email")),
                                {k: v for k, v in r.fields.items() if k != "email"}) for r in test.records]  # fmt: skip
        done = await store.import_records(rows, now=start)
        if not done.committed:
            raise RuleTestError(f"the records cannot be imported: {done.problems[0].message}", test.source.line)
        for address, reason in self.suppressed:
            await suppressions.add(store, address, reason=reason, now=start, source="test")
        for rid in self.deleted:
            await events.delete(store, rid, now=start, source="test")
        due = list(test.events)
        now = start
        for _ in range(MAX_STOPS):
            while due and due[0].at <= now:
                await self.apply(due.pop(0), now)
            self.transport.now = now
            self.ticks = [t for t in self.ticks if now - t < _RECHECK] + [now]
            assert self.rules.scheduler is not None
            await self.rules.scheduler.tick(now)
            following = await self.next_stop(now, due)
            if following is None or following > until:
                return await self.actual()
            now = following
        raise RuleTestError(f"the run stopped more than {MAX_STOPS} times before {until.isoformat()}", test.source.line)

    async def next_stop(self, now: dt.datetime, events: list[model.TestEvent]) -> dt.datetime | None:
        """The next instant at which the daemon would act or an event happens."""
        soon = now + dt.timedelta(seconds=1)  # something due and left undone (held back) is looked at again
        times: list[dt.datetime] = [events[0].at] if events else []
        for found in (self.memory.next_step_due(), self.memory.next_retry_due()):
            if found is not None:
                times.append(max(found, soon))
        times += self.reminder_stops(now)
        if self.ruleset.campaigns:
            times += self.campaign_stops(now)
        if self.hourly:
            times.append(self.test.start + _HOUR * ((now - self.test.start) // _HOUR + 1))
        return min(times, default=None)

    def reminder_stops(self, now: dt.datetime) -> list[dt.datetime]:
        """For each process with reminders on: the next daily run at which one of its records can be reminded.

        A reminder that fell due and did not go (the pass did not look yet after a change, or it is blocked)
        goes at the next look: five minutes after the pass last looked, or the next daily run.
        """
        out = []
        settings = self.ruleset.settings
        for process in self.ruleset.processes.values():
            run = reminders.next_run(process, now) if process.follow_up.enabled else None
            if run is None:
                continue
            states = self.memory.reminder_states(process.name)
            due: list[dt.datetime] = []
            for rid, stage, entered in self.memory.staged(process.module, process.stage_field):
                since = reminders.overdue_since(process, stage, entered, settings=settings)
                if since is None:
                    continue
                state = states.get(rid)
                if state is None or (state[0], state[1], state[2]) != (stage, entered, since):
                    first = reminders.first_reminder_at(process, since)
                    if first is not None:
                        due.append(first)
                elif state[3] is not None and state[4] is None:
                    due.append(state[3])
            if not due:
                continue
            if min(due) > now:
                out.append(max(run, min(due)))
            else:
                out.append(self._next_look(now, run))
        return out

    def campaign_stops(self, now: dt.datetime) -> list[dt.datetime]:
        """When the campaigns phase of a tick (outreach/app/campaigns.py) has something to do: a scheduled
        campaign's send time; each follow-up's due time; the next second (the daemon's next tick) while recipients
        are still being picked or their mail waits to be rendered, RENDER_AHEAD at a time; and, for mail held back,
        the time the campaigns phase set for it (`held_until`: the send window opens on the recipient's clock, the
        sender's daily limit has room again)."""
        soon = now + _SOON
        runs = {name: (status, send_at, started) for name, status, send_at, started in self.memory.campaign_runs()}
        steps = self.memory.campaign_steps()
        out: list[dt.datetime] = []
        for name, (status, send_at, started) in runs.items():
            campaign = self.ruleset.campaigns.get(name)
            if campaign is None:
                continue
            if status == "scheduled" and send_at > now:
                out.append(send_at)
            elif status == "sending":
                out.append(soon)  # picking goes on
            elif status == "sent" and started is not None:
                for i, follow_up in enumerate(campaign.follow_ups, start=1):
                    kept = steps.get((name, i))
                    if kept is None:  # a dated follow-up's time may be written in any zone: the run's is UTC
                        out.append(max(campaign_engine.follow_up_due(follow_up, started).astimezone(dt.UTC), soon))
                    elif kept == "sending":
                        out.append(soon)
        backlog: int | None = None
        for name, step, held_until, unheld in self.memory.campaign_waiting():
            status = runs.get(name, ("", None, None))[0]
            live = status in ("sending", "sent") if step == 0 else status == "sent" and (name, step) in steps
            if name not in self.ruleset.campaigns or not live:
                continue
            if held_until is not None and held_until > now:  # the send window opens, the daily limit has room
                out.append(held_until)
            if unheld or (held_until is not None and held_until <= now):  # when the outbox has room for more
                backlog = self.memory.campaign_backlog() if backlog is None else backlog
                if backlog < app_campaigns.RENDER_AHEAD:
                    out.append(soon)
        return out

    def _next_look(self, now: dt.datetime, run: dt.datetime) -> dt.datetime:
        """When the reminders pass looks again at a record changed lately: five minutes after its last look
        (one of the ticks of the last five minutes), else at the next daily run."""
        if self.changed is None or now - self.changed >= _RECHECK:
            return run
        return min([run, *(t + _RECHECK for t in self.ticks if t + _RECHECK > now)])

    # --- events -------------------------------------------------------------------------------------------

    async def apply(self, event: model.TestEvent, now: dt.datetime) -> None:
        if event.kind == "apply":
            await self._apply_rules(event, now)
            return
        store, args, line = self.store, event.args, event.line
        rid = str(args["record"])
        try:
            record = await store.get_record(rid)
        except store_module.NotFound:
            raise RuleTestError(f"{event.kind}: no record {rid!r}", line) from None
        self.changed = now
        try:
            await self._apply(event, record, now)
        except (store_module.StoreError, import_rows.InvalidValue) as exc:  # the latter: a `set` records refuse
            raise RuleTestError(f"{event.kind} at {now.isoformat()}: {exc}", line) from None

    async def _apply_rules(self, event: model.TestEvent, now: dt.datetime) -> None:
        """The changed rule set replaces the one under test, as `outreach apply` stores it and as the daemon
        reloads it: a new scheduler on the changed set, with the same transport."""
        changed = event.ruleset
        if changed is None:  # validation builds it for every apply event of a valid RuleTest
            raise RuleTestError("apply: the changed rule set has errors", event.line)
        await self._swap(changed, now, event.line)
        self.ruleset = changed
        self.hourly = _hourly(changed)

    async def _swap(self, ruleset: model.RuleSet, now: dt.datetime, line: int) -> None:
        """Apply a rule set as `outreach apply` does, and run it; a campaign slot over its limit is the test's
        error, as it is apply's."""
        try:
            await self.rules.swap(ruleset, self.transport, now=now)
        except app_campaigns.SlotFull as exc:
            raise RuleTestError(f"the rules cannot be applied at {now.isoformat()}: {exc}", line) from None

    async def _apply(self, event: model.TestEvent, record: store_module.rows.Record, now: dt.datetime) -> None:
        """One event, recorded through the application layer as the CLI and the daemon record it."""
        store, args, line, kind = self.store, event.args, event.line, event.kind
        rid, by = record.id, "test"
        if kind == "enroll":
            sequence = self.ruleset.sequences.get(str(args["sequence"]))
            if sequence is None:
                raise RuleTestError(f"enroll: unknown sequence {args['sequence']!r}", line)
            got = await enrolling.enroll(store, self.ruleset, record, sequence, enrolled_by=str(args["as"]), now=now,
                                         source=by)  # fmt: skip
            if isinstance(got, str):
                self.notices.append(f"{now:%a %Y-%m-%d %H:%M} UTC  enroll {rid} in {sequence.name} refused: {got}")
        elif kind in ("reply", "auto_reply", "bounce"):
            await self._inbound(kind, record, args, now, line)
        elif kind in ("open", "click"):
            await self._hit(kind, record, args, now, line)
        elif kind == "unsubscribe":
            await events.unsubscribe(store, rid, now=now, source=by)
        elif kind == "convert":
            await events.convert(store, rid, now=now, source=by)
        elif kind == "delete":
            await events.delete(store, rid, now=now, source=by)
        elif kind == "set":
            await events.set_fields(store, rid, {k: v for k, v in args.items() if k != "record"}, now=now, source=by)
        elif kind == "task":
            await events.add_task(store, rid, str(args["subject"]), now=now, owner=record.owner, source=by)
        elif kind == "complete_task":
            open_tasks = [t for t in await store.list_tasks(rid) if t.enrollment_id is not None]
            if not open_tasks:
                raise RuleTestError(f"complete_task: {rid} has no open sequence task at {now.isoformat()}", line)
            await events.complete_task(store, open_tasks[0].id, now=now, source=by)
        elif kind == "appointment":
            await events.add_appointment(store, rid, args["starts"], "appointment", now=now, source=by)
        elif kind == "stop":
            try:
                await enrolling.stop(store, record_id=rid, sequence=str(args["sequence"]), by=args.get("as"), now=now,
                                     source=by)  # fmt: skip
            except store_module.NotFound:
                raise RuleTestError(f"stop: {rid} has no live enrollment in {args['sequence']} at {now.isoformat()}",
                                    line) from None  # fmt: skip
        else:  # the schema allows no other kind
            raise RuleTestError(f"unknown event {kind!r}", line)

    def _latest(self, record: store_module.rows.Record, campaign: str | None) -> Recorded | None:
        """The latest mail sent to the record's address, or the latest of the campaign's mails to it."""
        if not record.email:
            return None
        address = record.email.lower()
        for m in reversed(self.transport.messages):
            if address in (r.lower() for r in m.recipients) and (campaign is None
                                                                  or m.header("X-Outreach-Campaign") == campaign):  # fmt: skip
                return m
        return None

    def _nothing_sent(self, kind: str, record: store_module.rows.Record, campaign: str | None,
                      now: dt.datetime, line: int) -> RuleTestError:  # fmt: skip
        of = f" of campaign {campaign}" if campaign is not None else ""
        return RuleTestError(f"{kind}: nothing{of} was sent to {record.id} before {now.isoformat()}", line)

    async def _hit(self, kind: str, record: store_module.rows.Record, args: Mapping[str, Any], now: dt.datetime,
                   line: int) -> None:  # fmt: skip
        """An open (the mail's pixel fetched) or a click (one of its tracked links followed) of the latest mail to
        the record, or of the campaign's latest mail to it, as the web side takes it (outreach/app/tracking.py):
        the URL the mail carries, signed with the test secret, from a person's mail program or (`automated`) a
        link scanner. A campaign mail's first open or click by a person fires its trigger. Without `campaign`,
        an open or click of the record when no mail to it carries the link is recorded on its activity only."""
        campaign = args.get("campaign")
        latest = self._latest(record, campaign)
        links = self.rules.links_in_force
        key, urls = self.memory.link_of(latest.header("Message-ID")) if latest is not None else (None, ())
        url, why = self._link(kind, latest, key, urls, args.get("url"))
        if url is None:
            if campaign is None and args.get("url") is None and not args.get("automated"):
                await (events.opened if kind == "open" else events.clicked)(self.store, record.id, now=now,
                                                                            source="test")  # fmt: skip
                return
            if latest is None:
                raise self._nothing_sent(kind, record, campaign, now, line)
            raise RuleTestError(f"{kind}: {why}", line)
        assert links is not None
        agent = SCANNER_AGENT if args.get("automated") else PERSON_AGENT
        track = tracking.opened if kind == "open" else tracking.clicked
        try:
            await track(self.store, links.keys, url.rpartition("/")[2], now=now, user_agent=agent,
                        ruleset=self.rules.ruleset)  # fmt: skip
        except tracking.BadLink as exc:
            raise RuleTestError(f"{kind}: {exc}", line) from None

    def _link(self, kind: str, latest: Recorded | None, key: str | None, urls: Sequence[str],
              wanted: Any) -> tuple[str | None, str]:  # fmt: skip
        """The signed URL of the open pixel or of the tracked link (`wanted`: the one leading there, else the
        first) that the mail carries; else None and why not."""
        links = self.rules.links_in_force
        if latest is None:
            return None, "nothing was sent"
        what = f"the mail {latest.header('Subject')!r} of {_time(latest.at)}"
        if links is None or key is None:
            return None, f"{what} carries no tracked links: Settings has no `tracking`"
        html = _html(latest.message)
        if kind == "open":
            url = links.pixel(bytes.fromhex(key))
            if not links.opens or url not in html:
                return None, (f"{what} carries no open pixel: it goes in the HTML part of a mail (the template has "
                              f"`html`) when Settings.tracking has `opens`")  # fmt: skip
            return url, ""
        if not urls or not links.clicks:
            return None, (f"{what} has no tracked link: the links of the HTML part of a mail are tracked (the "
                          f"template has `html`) when Settings.tracking has `clicks`")  # fmt: skip
        if wanted is None:
            n = 0
        elif wanted in urls:
            n = urls.index(wanted)
        else:
            return None, f"{what} has no tracked link to {wanted} (its links: {', '.join(urls)})"
        url = links.click(bytes.fromhex(key), n)
        return (url, "") if url in html else (None, f"{what} does not carry its link {n}")

    async def _inbound(
        self, kind: str, record: store_module.rows.Record, args: Mapping[str, Any], now: dt.datetime, line: int
    ) -> None:
        """A reply, auto-reply or bounce to the latest mail sent to the record (a bounce: or the latest of the
        campaign's mails to it), applied as the IMAP poller does."""
        campaign = args.get("campaign") if kind == "bounce" else None
        latest = self._latest(record, campaign)
        if latest is None or not record.email:
            raise self._nothing_sent(kind, record, campaign, now, line)
        ours = latest.header("Message-ID")
        self.uid += 1
        own_id = f"<ruletest-{self.uid}@{record.email.rpartition('@')[2]}>"
        if kind == "bounce":
            status = str(args.get("status") or "5.1.1")
            permanent = status.startswith("5")
            bounced = inbound.BouncedRecipient(record.email.lower(), record.email.lower(),
                                               "failed" if permanent else "delayed", status,
                                               f"{status} (a RuleTest's bounce)", permanent)  # fmt: skip
            message = inbound.Inbound(inbound.Kind.BOUNCE if permanent else inbound.Kind.DELAYED, "RuleTest",
                                      own_id, f"mailer-daemon@{record.email.rpartition('@')[2]}",
                                      our_message_ids=(ours,), bounced=(bounced,), original_message_id=ours)  # fmt: skip
        else:
            message = inbound.Inbound(inbound.Kind(kind), "RuleTest", own_id, record.email.lower(),
                                      f"Re: {latest.header('Subject')}", (ours,), (ours,))  # fmt: skip
        await self.inbox.apply_inbound(MAILBOX, 1, self.uid, message, senders=(), now=now)

    # --- the end -------------------------------------------------------------------------------------------

    async def actual(self) -> Actual:
        store = self.store
        by_id = {m["message_id"]: m for m in await store.outbox()}
        sent = []
        for r in self.transport.messages:
            row = by_id.get(r.header("Message-ID"), {})
            from_ = email.utils.parseaddr(r.header("From"))[1] or r.sender
            sent.append(Sent(r.at, ", ".join(r.recipients), from_, row.get("template") or "?",
                             r.header("Subject"), "reply" if r.header("In-Reply-To") else "new",
                             row.get("record_id"), r.header("X-Outreach-Campaign") or None))  # fmt: skip
        tasks = tuple((t.record_id, t.subject, _aware(t.created_at)) for t in await store.list_tasks(open_only=False))
        ids = [r.id for r in self.test.records]
        records = await store.records_by_id(ids)
        fields = {rid: {**rec.as_dict(), **rec.fields} for rid, rec in records.items()}
        enrollments: dict[tuple[str, str], tuple[str, str | None]] = {}
        for e in await store.enrollments(record_ids=ids):
            enrollments[(e["record_id"], e["sequence"])] = (e["status"], e["reason"])  # the latest wins
        return Actual(tuple(sent), tasks, fields, enrollments, tuple(self.notices), await self.campaigns())

    async def campaigns(self) -> dict[tuple[str, int], CampaignStep]:
        """Each step of each campaign the rules or the store know, as `outreach campaigns stats` tells it."""
        out: dict[tuple[str, int], CampaignStep] = {}
        if not (self.ruleset.campaigns or self.test.expect.campaigns):
            return out  # none ran (a RuleTest of sequences alone does not ask the store)
        for view in await app_campaigns.overview(self.store, self.ruleset):
            for s in view.steps:
                counts = {k: int(getattr(s.stats, k)) for k in model.CAMPAIGN_COUNTS}
                counts["skipped"] = sum(s.stats.skipped.values())
                out[(view.name, s.step)] = CampaignStep(view.name, s.step, s.template, s.status, counts,
                                                        dict(s.stats.skipped))  # fmt: skip
        return out


def _html(message: EmailMessage) -> str:
    """The HTML part of a message, decoded; empty without one."""
    part = message.get_body(preferencelist=("html",))
    return str(part.get_content()) if part is not None else ""


def _signed_links(ruleset: model.RuleSet) -> links.Links | None:
    """Links signed with the test secret when Settings has `tracking`, as a daemon's would be."""
    return sending.links_for(ruleset, keys=TEST_KEYS)


def _unsigned(_ruleset: model.RuleSet) -> None:
    """No DKIM: a RuleTest checks what is sent, not the signatures, and runs where the keys are not."""
    return None


def _hourly(ruleset: model.RuleSet) -> bool:
    """Whether the run stops at the daemon's hourly full scans: a sequence enrolls by criteria on time."""
    return any(s.enroll_when is not None and _on_time(s.enroll_when) for s in ruleset.sequences.values())


def _on_time(c: criteria.Criteria) -> bool:
    """Whether criteria can start to match as time passes (older_than, newer_than)."""
    if isinstance(c, criteria.Leaf):
        return c.op in (criteria.Op.OLDER_THAN, criteria.Op.NEWER_THAN)
    if isinstance(c, criteria.Not):
        return _on_time(c.item)
    return any(_on_time(x) for x in c.items)


def _address(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return import_rows.plain_email(value) or value.strip().lower()


def _aware(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


# --- checking ----------------------------------------------------------------------------------------------------


def check(test: model.RuleTest, actual: Actual) -> list[Line]:
    """The diff of expected against actual, aligned by time; every line ` ` when the test passes."""
    lines: list[Line] = []
    file = test.source.file
    if test.expect.sent is not None:
        expected = list(test.expect.sent)
        pairs = _match(expected, list(actual.sent), _sent_matches)
        matched = set(pairs.values())
        for i, x in enumerate(expected):
            where = f"{file}:{x.line}"
            if i in pairs:
                lines.append(Line(" ", "sent", actual.sent[pairs[i]].at, _sent_text(actual.sent[pairs[i]]), where))
            else:
                lines.append(Line("-", "sent", _when_key(x.when), _expected_text(x), where))
        lines += [Line("+", "sent", s.at, _sent_text(s)) for j, s in enumerate(actual.sent) if j not in matched]
    tasks = list(actual.tasks)
    task_pairs = _match(list(test.expect.tasks), tasks, _task_matches)
    for i, t in enumerate(test.expect.tasks):
        where = f"{file}:{t.line}"
        if i in task_pairs:
            got = tasks[task_pairs[i]]
            lines.append(Line(" ", "task", got[2], f"task for {got[0]}: {got[1]!r}", where))
        else:
            found = [f"{s!r} at {_time(at)}" for r, s, at in tasks if r == t.record]
            at = f" {_when_text(t.when)}" if t.when is not None else ""
            lines.append(Line("-", "task", _when_key(t.when) if t.when else None,
                              f"task for {t.record}: {t.subject!r}{at} (its tasks: {', '.join(found) or 'none'})",
                              where))  # fmt: skip
    for u in test.expect.updates:
        where = f"{file}:{u.line}"
        value = actual.fields.get(u.record, {}).get(u.field)
        ok = _same(value, u.value)
        text = f"{u.record}.{u.field} = {_show(u.value)}" + ("" if ok else f" (it is {_show(value)})")
        lines.append(Line(" " if ok else "-", "update", None, text, where))
    for ex in test.expect.enrollments:
        where = f"{file}:{ex.line}"
        final = actual.enrollments.get((ex.record, ex.sequence))
        ok = final is not None and final[0] == ex.status and (ex.reason is None or _reason_matches(final[1], ex.reason))
        want = f"{ex.record} in {ex.sequence}: {ex.status}" + (f" ({ex.reason})" if ex.reason else "")
        if final is None:
            is_ = "never enrolled" + (f"; {'; '.join(actual.notices)}" if actual.notices else "")
        else:
            is_ = final[0] + (f" ({final[1]})" if final[1] else "")
        lines.append(Line(" " if ok else "-", "enrollment", None, want + ("" if ok else f" (it is {is_})"), where))
    lines += [_campaign_line(x, actual.campaigns.get((x.campaign, x.step)), f"{file}:{x.line}")
              for x in test.expect.campaigns]  # fmt: skip
    return lines


def _step_label(campaign: str, step: int, template: str | None) -> str:
    what = "campaign mail" if step == 0 else f"follow-up {step}"
    return f"{campaign} {what}" + (f" ({template})" if template else "")


def _campaign_line(x: model.CampaignExpectation, got: CampaignStep | None, where: str) -> Line:
    """A campaign step's statistics as expected, each count that differs followed by what it is."""
    wanted: list[tuple[str, Any, Any]] = []  # (what, expected, actual)
    if x.status is not None:
        wanted.append(("status", x.status, got.status if got is not None else None))
    for key, n in x.counts.items():
        wanted.append((key, n, got.counts.get(key) if got is not None else None))
    for reason, n in x.skipped.items():
        wanted.append((f"skipped {reason}", n, got.skipped.get(reason, 0) if got is not None else None))
    if got is None:
        text = ", ".join(f"{what} {n}" for what, n, _ in wanted)
        return Line("-", "campaign", None, f"{_step_label(x.campaign, x.step, None)}: {text} (it has no such step)",
                    where)  # fmt: skip
    ok = all(n == is_ for _, n, is_ in wanted)
    text = ", ".join(f"{what} {n}" + ("" if n == is_ else f" (it is {is_})") for what, n, is_ in wanted)
    return Line(" " if ok else "-", "campaign", None, f"{got.label}: {text}", where)


def _match(expected: list[Any], actual: list[Any], fits: Any) -> dict[int, int]:
    """A largest one-to-one matching of expectations to what happened (Kuhn's augmenting paths)."""
    options = [[j for j, a in enumerate(actual) if fits(x, a)] for x in expected]
    owner: dict[int, int] = {}

    def place(i: int, seen: set[int]) -> bool:
        for j in options[i]:
            if j in seen:
                continue
            seen.add(j)
            if j not in owner or place(owner[j], seen):
                owner[j] = i
                return True
        return False

    for i in sorted(range(len(expected)), key=lambda i: len(options[i])):
        place(i, set())
    return {i: j for j, i in owner.items()}


def _sent_matches(x: model.SentExpectation, s: Sent) -> bool:
    return (x.when.matches(s.at) and x.to.lower() == s.to.lower() and x.template == s.template
            and (x.subject is None or x.subject == s.subject) and (x.from_ is None or x.from_.lower() == s.sender.lower())
            and (x.thread is None or x.thread == s.thread))  # fmt: skip


def _task_matches(x: model.TaskExpectation, t: tuple[str, str, dt.datetime]) -> bool:
    return x.record == t[0] and x.subject == t[1] and (x.when is None or x.when.matches(t[2]))


def _reason_matches(actual: str | None, expected: str) -> bool:
    """The reason as written, or its first part (`bounced` for "bounced: 550 5.1.1 user unknown")."""
    return actual is not None and (actual == expected or actual.startswith(expected + ":"))


def _same(value: Any, wanted: Any) -> bool:
    if isinstance(value, dt.datetime) and isinstance(wanted, dt.datetime):
        return _aware(value) == _aware(wanted)
    return bool(value == wanted and type(value) is type(wanted)) or (
        isinstance(value, int | float) and isinstance(wanted, int | float) and value == wanted
        and not isinstance(value, bool) and not isinstance(wanted, bool)
    )  # fmt: skip


def _show(value: Any) -> str:
    return value.isoformat() if isinstance(value, dt.datetime) else json.dumps(value, ensure_ascii=False)


def _time(t: dt.datetime) -> str:
    return f"{t.astimezone(dt.UTC):%a %Y-%m-%d %H:%M} UTC"


def _when_key(w: model.When) -> dt.datetime | None:
    return w.at or w.after or w.before


def _when_text(w: model.When) -> str:
    if w.at is not None:
        return f"at {_time(w.at)}"
    parts = ([f"after {_time(w.after)}"] if w.after else []) + ([f"before {_time(w.before)}"] if w.before else [])
    return " and ".join(parts) or "at any time"


def _sent_text(s: Sent) -> str:
    return f"{_time(s.at)}  {s.template} to {s.to} from {s.sender}, {s.thread}: {s.subject!r}"


def _expected_text(x: model.SentExpectation) -> str:
    when = _time(x.when.at) if x.when.at is not None else _when_text(x.when)
    extra = [f"from {x.from_}"] if x.from_ else []
    extra += [x.thread] if x.thread else []
    extra += [repr(x.subject)] if x.subject is not None else []
    return f"{when}  {x.template} to {x.to}" + (f" ({', '.join(extra)})" if extra else "")


# --- output ------------------------------------------------------------------------------------------------------


def _ordered(lines: Iterable[Line]) -> list[Line]:
    order = {"sent": 0, "task": 1, "update": 2, "enrollment": 3, "campaign": 4}
    never = dt.datetime.max.replace(tzinfo=dt.UTC)
    return sorted(lines, key=lambda x: (order[x.what], _aware(x.at) if x.at else never))


def summary(results: Sequence[Result]) -> str:
    failed = sum(not r.passed for r in results)
    return f"{len(results)} RuleTest{'' if len(results) == 1 else 's'}, {failed} failed"


def format_text(results: Sequence[Result]) -> str:
    """A line per passing test; for a failing one its file:line, its diff (- expected, + not expected), a summary."""
    out: list[str] = []
    for r in results:
        if r.passed:
            out.append(f"ok    {r.where}  {r.test.name}")
            continue
        out.append(f"FAIL  {r.where}  {r.test.name}")
        if r.error is not None:
            out.append(f"      error: {r.error}")
            continue
        for what in ("sent", "task", "update", "enrollment", "campaign"):
            mine = [x for x in _ordered(r.lines) if x.what == what]
            if not mine or all(x.sign == " " for x in mine):
                continue
            out.append(
                f"      {what}s:" if what != "sent" else "      sent (- expected, not sent; + sent, not expected):"
            )
            for x in mine:
                out.append(f"      {x.sign} {x.text}" + (f"   [{x.where}]" if x.where and x.sign == "-" else ""))
        if r.actual.notices:
            out += [f"      notice: {n}" for n in r.actual.notices]
    out.append(summary(results))
    return "\n".join(out)


def _line_json(x: Line) -> dict[str, Any]:
    return {"sign": x.sign, "kind": x.what, "at": x.at.isoformat() if x.at else None, "text": x.text,
            "where": x.where or None}  # fmt: skip


def format_json(results: Sequence[Result]) -> str:
    tests = [
        {
            "name": r.test.name, "file": r.test.source.file, "line": r.test.source.line, "passed": r.passed,
            "error": r.error, "seconds": round(r.seconds, 4),
            "diff": [_line_json(x) for x in _ordered(r.lines) if x.sign != " "],
            "sent": [{"at": s.at.isoformat(), "to": s.to, "from": s.sender, "template": s.template,
                      "subject": s.subject, "thread": s.thread} for s in r.actual.sent],
            "notices": list(r.actual.notices),
            "campaigns": [{"campaign": c.campaign, "step": c.step, "template": c.template, "status": c.status,
                           **c.counts, "skipped_by_reason": dict(c.skipped)} for c in r.actual.campaigns.values()],
        }
        for r in results
    ]  # fmt: skip
    failed = sum(not r.passed for r in results)
    return json.dumps({"tests": tests, "total": len(results), "failed": failed}, ensure_ascii=False, indent=2)


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_EXPECT_KEY = {"sent": "expect.sent", "task": "expect.tasks", "update": "expect.updates",
               "enrollment": "expect.enrollments", "campaign": "expect.campaigns"}  # fmt: skip


def _first_difference(r: Result) -> tuple[str, str]:
    """A failing test's first difference, in the text output's order: (the expectation it is about, one line)."""
    diff = [x for x in _ordered(r.lines) if x.sign != " "]
    first = diff[0]
    if first.sign == "+":
        label = "sent, not expected"
    else:
        label = "expected, not sent" if first.what == "sent" else "expected"
    where = f" [{first.where}]" if first.where and first.sign == "-" else ""
    more = f" (and {len(diff) - 1} more)" if len(diff) > 1 else ""
    return _EXPECT_KEY[first.what], " ".join(f"{label}: {first.text}{where}{more}".splitlines())


def format_junit(
    results: Sequence[Result], invalid: Sequence[tuple[str, Sequence[diagnostics.Diagnostic]]] = ()
) -> str:
    """JUnit XML: one testsuite per file, one testcase per RuleTest; a failure's type is the expectation, its message
    the first difference and its text the diff; an error when the test cannot run.

    `invalid` are the rule sets that did not validate, by name, with their errors: each is a testsuite whose one
    testcase has an error, at its first error's file and line, with every error as its text.
    """
    failures = sum(not r.passed and r.error is None for r in results)
    errors = sum(r.error is not None for r in results) + len(invalid)
    root = ElementTree.Element("testsuites", name="outreach test", tests=str(len(results) + len(invalid)),
                               failures=str(failures), errors=str(errors))  # fmt: skip
    for name, problems in invalid:
        suite = ElementTree.SubElement(root, "testsuite", name=name, tests="1", failures="0", errors="1",
                                       time="0.000")  # fmt: skip
        shown = diagnostics.format_text(problems).splitlines() or ["the rules did not validate"]
        first = min(problems, key=diagnostics.sort_key, default=None)
        attributes = {"name": "the rules validate", "classname": name}
        if first is not None:
            attributes |= {"file": first.file, "line": str(first.line)}
        case = ElementTree.SubElement(suite, "testcase", attributes, time="0.000")
        more = f" (and {len(shown) - 1} more)" if len(shown) > 1 else ""
        error = ElementTree.SubElement(case, "error", type="validation", message=shown[0] + more)
        error.text = "\n".join([*shown, f"{name}: {len(problems)} error(s); no RuleTest ran"])
    by_file: dict[str, list[Result]] = {}
    for r in results:
        by_file.setdefault(r.test.source.file, []).append(r)
    for file, mine in by_file.items():
        suite = ElementTree.SubElement(root, "testsuite", name=file, tests=str(len(mine)),
                                       failures=str(sum(not r.passed and r.error is None for r in mine)),
                                       errors=str(sum(r.error is not None for r in mine)),
                                       time=f"{sum(r.seconds for r in mine):.3f}")  # fmt: skip
        for r in mine:
            case = ElementTree.SubElement(suite, "testcase", name=r.test.name, classname=file, file=file,
                                          line=str(r.test.source.line), time=f"{r.seconds:.3f}")  # fmt: skip
            if r.error is not None:
                message = " ".join(r.error.splitlines())
                ElementTree.SubElement(case, "error", type="rule-test", message=message).text = r.error
            elif not r.passed:
                kind, message = _first_difference(r)
                text = format_text([r]).rsplit("\n", 1)[0]
                ElementTree.SubElement(case, "failure", type=kind, message=message).text = text
    ElementTree.indent(root)
    xml = ElementTree.tostring(root, encoding="unicode")
    # ElementTree writes characters XML 1.0 forbids as they are (a test's name may hold one): shown escaped instead
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + _NOT_XML.sub(lambda m: ascii(m.group())[1:-1], xml)
