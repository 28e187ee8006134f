"""Bulk campaigns through the real store, the scheduler and the Maildir transport, tick by tick on a virtual clock,
on SQLite and PostgreSQL (issue 16): who gets the mail and who is skipped (and why), the slot limit, the freeze,
stop, start and delete, trigger actions, follow-ups, a restart in the middle of picking, the statistics (with a
bounce read the way the IMAP poller reads it), send windows and daily limits, and what bad input does."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import shutil
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from outreach import cli
from outreach.app import campaigns, events, inbox, scheduler, suppressions, tracking
from outreach.app import rules as app_rules
from outreach.mail import inbound, links
from outreach.mail import transport as mail_transport
from outreach.rules import model, validate
from outreach.store import Store, tables
from tests.conftest import ROOT
from tests.worlds import Row, rows

UTC = dt.UTC
SEND = dt.datetime(2027, 3, 2, 9, 0, tzinfo=UTC)  # a Tuesday, 10:00 in Berlin
BEFORE = SEND - dt.timedelta(days=1)  # when the rules are applied
LINKS = links.Links("https://t.example.com", links.Keys((b"k" * 32,)))  # opens and clicks tracked
PERSON = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0"
SCANNER = "Mozilla/5.0 (compatible; Barracuda Sentinel)"

# Campaign mail with a link and an HTML part, so that opens (the pixel) and clicks can be tracked.
TEMPLATES = """\
kind: Template
name: mailing
subject: "News for {{ record.first_name | default('you') }}"
text: |
  Hello {{ record.first_name | default('there') }}, see https://www.example.com/news
html: |
  <p>Hello {{ record.first_name | default('there') }}, see <a href="https://www.example.com/news">the news</a>.</p>
---
kind: Template
name: reminder
subject: "A reminder"
text: "A reminder, {{ record.first_name | default('there') }}."
html: "<p>A reminder, <a href=\\"https://www.example.com/news\\">the news</a>.</p>"
---
kind: Template
name: last-call
subject: "Last call"
text: "Last call, {{ record.first_name | default('there') }}."
"""


def person(n: int, record_id: str, email: str | None, module: str = "lead", **fields: Any) -> Row:
    """A record of the DACH-qualified kind (the example view dach-qualified lists it), owned by anna unless told."""
    base: dict[str, Any] = {"first_name": record_id, "owner": "anna", "stage": "Qualified", "country": "DE"}
    return Row(n, record_id, module, email, {**base, **fields})


def rules_dir(tmp: Path, campaigns_yaml: str, *, settings: Callable[[str], str] = lambda s: s) -> Path:
    """The example rules without their campaigns, sales process (its reminders would mail the owners) and RuleTests;
    the mailing templates, `campaigns_yaml` as campaigns/c.yaml, and Settings as `settings` edits them, with a
    custom module `partner`. A second call replaces the first one's files."""
    where = tmp / "rules"
    if where.exists():
        shutil.rmtree(where)
    shutil.copytree(ROOT / "rules", where, ignore=shutil.ignore_patterns("tests", "campaigns", "processes"))
    (where / "templates" / "mailing.yaml").write_text(TEMPLATES, encoding="utf-8")
    (where / "campaigns").mkdir()
    (where / "campaigns" / "c.yaml").write_text(textwrap.dedent(campaigns_yaml).lstrip(), encoding="utf-8")
    path = where / "settings.yaml"
    text = path.read_text(encoding="utf-8") + "modules: [partner]\n"
    path.write_text(settings(text), encoding="utf-8")
    return where


def load(path: Path) -> model.RuleSet:
    result = validate.validate([str(path)])
    assert result.ruleset is not None, [str(e) for e in result.errors]
    return result.ruleset


def campaign(name: str, *, module: str = "lead", to: str = "{view: dach-qualified}", send_at: dt.datetime | None = SEND,
             extra: str = "") -> str:  # fmt: skip
    """A Campaign document (YAML) of anna's mailing the `mailing` template, `extra` (YAML) added."""
    when = f"send_at: {send_at.isoformat()}\n" if send_at is not None else ""
    body = f"kind: Campaign\nname: {name}\nmodule: {module}\nowner: anna\nto: {to}\ntemplate: mailing\n{when}"
    return body + textwrap.dedent(extra).strip("\n") + ("\n" if extra.strip() else "")


@dataclasses.dataclass
class World:
    store: Store
    ruleset: model.RuleSet
    scheduler: scheduler.Scheduler
    maildir: Path
    uid: int = 0  # the last IMAP UID read from anna's mailbox

    def mail(self, campaign: str | None = None, step: int | None = None) -> list[EmailMessage]:
        found = mail_transport.read_all(self.maildir) if self.maildir.exists() else []
        return [m for m in found if (campaign is None or m["X-Outreach-Campaign"] == campaign)
                and (step is None or m["X-Outreach-Step"] == str(step))]  # fmt: skip

    def to(self, campaign: str | None = None, step: int | None = None) -> list[str]:
        """The addresses mailed, sorted (an address twice shows twice)."""
        return sorted(str(m["To"]) for m in self.mail(campaign, step))

    async def tick(self, at: dt.datetime, **options: Any) -> scheduler.TickReport:
        return await self.scheduler.tick(at, **options)

    async def use(self, ruleset: model.RuleSet, at: dt.datetime) -> None:
        """Apply a rule set and run it from now on (as a reload does)."""
        await app_rules.apply(self.store, ruleset, now=at)
        self.ruleset = ruleset
        self.scheduler = scheduler.Scheduler(self.store, ruleset, self.scheduler.transport, links=LINKS)

    async def outbox(self, campaign: str | None = None, record_id: str | None = None) -> list[dict[str, Any]]:
        """The outbox rows of campaign mail (of one campaign, to one record), as the store keeps them."""
        o = tables.outbox
        query = sa.select(o).where(o.c.campaign.is_not(None)).order_by(o.c.id)
        if campaign is not None:
            query = query.where(o.c.campaign == campaign)
        if record_id is not None:
            query = query.where(o.c.record_id == record_id)
        async with self.store.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    async def sent(self, record_id: str, step: int = 0) -> dict[str, Any]:
        """The outbox row of the campaign mail (or follow-up `step`) to a record."""
        (row,) = [m for m in await self.outbox(record_id=record_id) if m["step_id"] == str(step)]
        return row

    async def hit(self, record_id: str, at: dt.datetime, *, click: bool = False, agent: str = PERSON,
                  step: int = 0) -> tracking.Tracked:  # fmt: skip
        """The open pixel (or the first link) of a record's campaign mail fetched, as the web side does."""
        row = await self.sent(record_id, step)
        key = bytes.fromhex(row["link_key"])
        if click:
            token = links.sign(LINKS.keys, links.Token(links.CLICK, key, 0))
            return await tracking.clicked(self.store, LINKS.keys, token, now=at, user_agent=agent, ruleset=self.ruleset)
        token = links.sign(LINKS.keys, links.Token(links.OPEN, key))
        return await tracking.opened(self.store, LINKS.keys, token, now=at, user_agent=agent, ruleset=self.ruleset)

    async def bounce(self, record_id: str, at: dt.datetime, step: int = 0) -> inbox.Applied | None:
        """A Postfix DSN naming our Message-ID arrives in anna's mailbox and is applied as the IMAP poller does."""
        row = await self.sent(record_id, step)
        raw = dsn(row["message_id"], row["recipient"])
        message = inbound.classify(raw, inbound.Sent(frozenset({row["message_id"]})))
        assert message.kind is inbound.Kind.BOUNCE, message
        if self.uid == 0:  # the poller's first look at the mailbox: nothing read yet
            assert await self.store.set_mailbox_position("anna", 1, 0, at)
        self.uid += 1
        return await inbox.InboundMail(self.store, lambda: self.ruleset).apply_inbound(
            "anna", 1, self.uid, message, senders=("anna@example.com",), now=at)  # fmt: skip

    async def recipients(self, campaign: str) -> list[dict[str, Any]]:
        """The campaign's recipient rows, as the store keeps them."""
        cr = tables.campaign_recipients
        async with self.store.engine.connect() as conn:
            found = await conn.execute(sa.select(cr).where(cr.c.campaign == campaign).order_by(cr.c.step, cr.c.record_id))
            return [dict(r._mapping) for r in found]

    async def run(self, name: str) -> dict[str, Any]:
        (found,) = await self.store.campaign_runs([name])
        return found


def dsn(our_id: str, recipient: str, status: str = "5.1.1") -> bytes:
    """A Postfix delivery status notification: our message to `recipient` bounced (tests/test_imap_poller.py)."""
    return (
        "Return-Path: <>\r\nFrom: MAILER-DAEMON@mail.example.com (Mail Delivery System)\r\nTo: anna@example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n"
        f"Message-ID: <dsn-{recipient}@mail.example.com>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host mail.example.com.\r\n\r\n"
        f"<{recipient}>: host mx.example.org said: 550 {status} user unknown\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mail.example.com\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; 550 {status} user unknown\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: Anna Berger <anna@example.com>\r\nTo: {recipient}\r\nMessage-ID: {our_id}\r\n"
        "Subject: News\r\n\r\n--B--\r\n"
    ).encode()


class Relay:
    """A relay in front of the Maildir: it refuses some addresses for good (5xx) and answers the first
    `busy` messages with a temporary failure (4xx); the rest it takes."""

    def __init__(self, outbox: Path, *, refuses: Sequence[str] = (), busy: int = 0) -> None:
        self.maildir = mail_transport.MaildirTransport(str(outbox))
        self.refuses, self.busy = {a.lower() for a in refuses}, busy

    async def send(self, sender: str, recipients: Sequence[str], message: bytes) -> mail_transport.SendResult:
        if any(r.lower() in self.refuses for r in recipients):
            return mail_transport.SendResult(False, permanent=True, detail="550 5.1.1 no such user", code=550)
        if self.busy:
            self.busy -= 1
            return mail_transport.SendResult(False, detail="451 4.3.0 try again later", code=451)
        return await self.maildir.send(sender, recipients, message)

    async def close(self) -> None:
        await self.maildir.close()


Make = Callable[..., Awaitable[World]]


@pytest.fixture
async def make(backend: tuple[str, str | None], tmp_path: Path) -> AsyncIterator[Make]:
    """Builds a world: a store on the backend with `people` imported, the rules made of `campaigns_yaml` applied
    at BEFORE, and a scheduler sending into a Maildir."""
    opened: list[Store] = []

    async def build(campaigns_yaml: str, people: Sequence[Row], *, settings: Callable[[str], str] = lambda s: s,
                    applied: dt.datetime = BEFORE, transport: mail_transport.Transport | None = None) -> World:  # fmt: skip
        path = rules_dir(tmp_path, campaigns_yaml, settings=settings)
        ruleset = load(path)
        url, schema = backend
        store = await Store.open(url, fields=ruleset.settings.fields, upgrade=True, schema=schema)
        opened.append(store)
        imported = await store.import_records(rows(*people), now=applied - dt.timedelta(hours=1))
        assert imported.committed, imported.problems
        await app_rules.apply(store, ruleset, now=applied)
        outbox = tmp_path / "outbox"
        sched = scheduler.Scheduler(store, ruleset, transport or mail_transport.MaildirTransport(str(outbox)),
                                    links=LINKS)  # fmt: skip
        return World(store, ruleset, sched, outbox)

    yield build
    for s in opened:
        await s.close()


# --- who gets it ----------------------------------------------------------------------------------------------


@pytest.mark.store
async def test_each_skip_reason_is_kept_and_counted_and_the_rest_get_the_mail_once(make: Make) -> None:
    people = [
        person(2, "L01", "jo@example.org"),
        person(3, "L02", None),  # no address
        person(4, "L03", "not-an-address"),
        person(5, "L04", "uma@example.org"),  # unsubscribed
        person(6, "L05", "bo@example.org"),  # bounced (on the suppression list)
        person(7, "L06", "cy@example.org"),  # complained
        person(8, "L07", "del@example.org"),  # deleted
        person(9, "L08", "Sam@Example.com"),
        person(10, "L09", "sam@example.COM"),  # the same address as L08, in other case
        person(11, "L10", "us@example.org", country="US"),  # not in the view
        person(12, "C01", "con@example.org", module="contact"),  # not a lead
    ]
    w = await make(campaign("news"), people)
    await events.unsubscribe(w.store, "L04", now=BEFORE)
    await suppressions.add(w.store, "bo@example.org", reason="bounced", now=BEFORE)
    await events.complaint(w.store, "L06", now=BEFORE)
    await events.delete(w.store, "L07", now=BEFORE)

    assert str(await w.tick(SEND - dt.timedelta(minutes=1))) == "nothing to do"  # before its send time
    report = await w.tick(SEND)
    assert (report.campaign_mail, report.campaign_skipped, report.sent) == (2, 7, 2)
    assert w.to("news") == ["Sam@Example.com", "jo@example.org"]  # as the record has it
    assert w.mail("news")[0]["From"] == "Anna Berger <anna@example.com>"

    found = {r["record_id"]: (r["status"], r["reason"]) for r in await w.recipients("news")}
    assert found == {
        "L01": ("mailed", None), "L02": ("skipped", "no valid email"), "L03": ("skipped", "no valid email"),
        "L04": ("skipped", "suppressed: unsubscribed"), "L05": ("skipped", "suppressed: bounced"),
        "L06": ("skipped", "suppressed: complaint"), "L07": ("skipped", "deleted"), "L08": ("mailed", None),
        "L09": ("skipped", "same address twice"),
    }  # fmt: skip
    view = await campaigns.detail(w.store, w.ruleset, "news")
    assert view.status == "sent"
    stats = view.steps[0].stats
    assert (stats.recipients, stats.sent, stats.pending) == (2, 2, 0)
    assert stats.skipped == {"no valid email": 2, "suppressed": 3, "deleted": 1, "same address twice": 1}
    skipped = await campaigns.recipients(w.store, "news", 0, "skipped")
    assert [r["record_id"] for r in skipped] == ["L02", "L03", "L04", "L05", "L06", "L07", "L09"]

    assert str(await w.tick(SEND + dt.timedelta(days=1))) == "nothing to do"  # sent once
    assert len(w.mail("news")) == 2


@pytest.mark.store
async def test_recipients_from_a_view_criteria_or_a_list_for_each_module(make: Make) -> None:
    """A view of leads, inline criteria on contacts, a list of deals, and criteria on a custom module's records:
    each campaign mails its own module's records that match, and nobody else."""
    docs = "---\n".join([
        campaign("leads", to="{view: dach-qualified}"),
        campaign("contacts", module="contact", to="{where: {field: country, eq: 'NO'}}"),
        campaign("deals", module="deal", to="{records: [D1, D3, L1, NOPE]}"),  # a lead and no record: not deals
        campaign("partners", module="partner", to="{where: {field: company, contains: Fjord}}"),
    ])  # fmt: skip
    people = [
        person(2, "L1", "lead@example.org"), person(3, "L2", "lead-us@example.org", country="US"),
        person(4, "C1", "c-no@example.org", module="contact", country="NO"),
        person(5, "C2", "c-de@example.org", module="contact"),
        person(6, "D1", "d1@example.org", module="deal"), person(7, "D2", "d2@example.org", module="deal"),
        person(8, "D3", "d3@example.org", module="deal"),
        person(9, "P1", "p1@example.org", module="partner", company="Fjord AS"),
        person(10, "P2", "p2@example.org", module="partner", company="Other"),
        person(11, "L3", "fjord-lead@example.org", company="Fjord AS"),  # a lead: not the partners'
    ]  # fmt: skip
    w = await make(docs, people)
    await w.tick(SEND)
    assert w.to("leads") == ["fjord-lead@example.org", "lead@example.org"]
    assert w.to("contacts") == ["c-no@example.org"]
    assert w.to("deals") == ["d1@example.org", "d3@example.org"]
    assert w.to("partners") == ["p1@example.org"]
    for name in ("leads", "contacts", "deals", "partners"):
        view = await campaigns.detail(w.store, w.ruleset, name)
        assert view.status == "sent" and view.steps[0].stats.sent == len(w.to(name)), name


# --- the slot limit -------------------------------------------------------------------------------------------


def two_per_slot(text: str) -> str:
    return text.replace("campaigns_per_slot: 5", "campaigns_per_slot: 2")


@pytest.mark.store
async def test_apply_counts_the_runs_scheduled_in_the_store_and_refuses_a_full_slot(make: Make, tmp_path: Path) -> None:
    """Two lead campaigns without a send_at, applied at 09:00:10, are scheduled for 09:00 in the store only (the
    rules name no time, so `validate` has nothing to count); a third applied at 09:00:40 would be the third in that
    slot: apply refuses it and applies nothing."""
    first = BEFORE + dt.timedelta(seconds=10)
    two = "---\n".join([campaign("a", send_at=None), campaign("b", send_at=None)])
    w = await make(two, [person(2, "L1", "jo@example.org")], settings=two_per_slot, applied=first)
    more = load(rules_dir(tmp_path, "---\n".join([two, campaign("c", send_at=None)]), settings=two_per_slot))
    before = await w.store.active_definitions()
    with pytest.raises(campaigns.SlotFull, match=r"3 lead campaigns are scheduled for 2027-03-01T09:00:00\+00:00 "
                                                 r"\(a, b, c\); limits.campaigns_per_slot allows 2"):  # fmt: skip
        await app_rules.apply(w.store, more, now=first + dt.timedelta(seconds=30))
    assert await w.store.active_definitions() == before  # nothing applied
    assert [r["campaign"] for r in await w.store.campaign_runs()] == ["a", "b"]

    # A minute later it is another slot.
    await w.use(more, first + dt.timedelta(minutes=1))
    assert {r["campaign"]: r["send_at"] for r in await w.store.campaign_runs()} == {
        "a": first, "b": first, "c": first + dt.timedelta(minutes=1)}  # fmt: skip


@pytest.mark.store
async def test_other_modules_take_no_place_in_a_slot_and_a_start_that_would_overfill_one_is_refused(
    make: Make, tmp_path: Path
) -> None:  # fmt: skip
    early = SEND - dt.timedelta(hours=1)
    leads = "---\n".join([campaign("a", send_at=early), campaign("b"), campaign("d")])
    w = await make(leads, [person(2, "L1", "jo@example.org")], settings=two_per_slot)
    other = campaign("c", module="contact", to="{where: {field: country, eq: DE}}")
    await w.use(load(rules_dir(tmp_path, "---\n".join([leads, other]), settings=two_per_slot)), BEFORE)
    assert {r["campaign"]: (r["status"], r["send_at"]) for r in await w.store.campaign_runs()} == {
        "a": ("scheduled", early), "b": ("scheduled", SEND), "c": ("scheduled", SEND), "d": ("scheduled", SEND)}  # fmt: skip

    # Stopped by its owner, campaign a misses its time; started again at SEND it would go at once, the third lead
    # campaign of that minute: refused, as apply refuses it. A minute later it is alone in its slot.
    await campaigns.stop(w.store, "a", user="anna", now=BEFORE)
    limits = w.ruleset.settings.limits
    with pytest.raises(campaigns.SlotFull, match=r"3 lead campaigns are scheduled for 2027-03-02T09:00:00\+00:00 "
                                                 r"\(a, b, d\)"):  # fmt: skip
        await campaigns.start(w.store, "a", user="anna", now=SEND, limits=limits)
    assert (await w.run("a"))["status"] == "stopped"
    started = await campaigns.start(w.store, "a", user="anna", now=SEND + dt.timedelta(minutes=1), limits=limits)
    assert (started.status, started.send_at) == ("scheduled", SEND + dt.timedelta(minutes=1))


@pytest.mark.unit
def test_validate_refuses_a_full_slot_in_the_rules_at_its_line(tmp_path: Path) -> None:
    """The same slot to the minute as apply counts it: 09:00:30 is the slot of 09:00."""
    three = "---\n".join([campaign("a"), campaign("b"), campaign("c", send_at=SEND + dt.timedelta(seconds=30))])
    path = rules_dir(tmp_path, three, settings=two_per_slot)
    result = validate.validate([str(path)])
    assert result.ruleset is None
    (error,) = result.errors
    assert (Path(error.file).name, error.line, str(error.code)) == ("c.yaml", 23, "campaign-slot-full")
    assert "at most 2 lead campaigns may be scheduled for 2027-03-02T09:00:00+00:00; 'c' is number 3" in error.message


# --- the freeze, stop, start and delete ------------------------------------------------------------------------


@pytest.mark.store
async def test_a_change_inside_the_freeze_stops_the_campaign_until_its_owner_starts_it(
    make: Make, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:  # fmt: skip
    people = [person(2, "L1", "jo@example.org"), person(3, "L2", "kim@example.net")]
    w = await make(campaign("news"), people)
    edited = load(rules_dir(tmp_path, campaign("news", extra="description: a late edit")))
    with caplog.at_level(logging.WARNING, logger="outreach"):
        await w.use(edited, SEND - dt.timedelta(minutes=10))  # limits.campaign_freeze: 15 minutes
    run = await w.run("news")
    assert run["status"] == "stopped"
    assert run["reason"] == ("its definition changed 10 min before its send time 2027-03-02T09:00:00+00:00, inside "
                             "limits.campaign_freeze (15 minutes): start it again to send it")  # fmt: skip
    assert f"campaign news stopped: {run['reason']}" in caplog.messages
    assert str(await w.tick(SEND)) == "nothing to do" and w.mail() == []
    view = await campaigns.detail(w.store, w.ruleset, "news")
    assert (view.status, view.reason) == ("stopped", run["reason"])

    with pytest.raises(campaigns.NotAllowed, match="only its owner 'anna' may start campaign news"):
        await campaigns.start(w.store, "news", user="ben", now=SEND + dt.timedelta(minutes=5))
    assert (await w.run("news"))["status"] == "stopped"
    started = await campaigns.start(w.store, "news", user="anna", now=SEND + dt.timedelta(minutes=5))
    assert (started.status, started.send_at) == ("scheduled", SEND + dt.timedelta(minutes=5))  # its time passed: now
    report = await w.tick(SEND + dt.timedelta(minutes=5))
    assert report.sent == 2 and w.to("news") == ["jo@example.org", "kim@example.net"]
    # The same edit applied again changes nothing more: the run follows the definition applied.
    await w.use(edited, SEND + dt.timedelta(minutes=6))
    assert (await w.run("news"))["status"] == "sent"


@pytest.mark.store
async def test_a_change_before_the_freeze_reschedules_the_campaign(make: Make, tmp_path: Path) -> None:
    w = await make(campaign("news"), [person(2, "L1", "jo@example.org")])
    later = SEND + dt.timedelta(hours=2)
    await w.use(load(rules_dir(tmp_path, campaign("news", send_at=later))), SEND - dt.timedelta(minutes=20))
    run = await w.run("news")
    assert (run["status"], run["send_at"], run["reason"]) == ("scheduled", later, None)
    assert str(await w.tick(SEND)) == "nothing to do"
    assert (await w.tick(later)).sent == 1 and w.to("news") == ["jo@example.org"]


@pytest.mark.store
async def test_only_the_owner_stops_and_a_stop_takes_back_the_mail_rendered_and_not_yet_sent(make: Make) -> None:
    people = [person(n, f"L{n}", f"p{n}@example.org") for n in range(2, 7)]
    w = await make(campaign("news"), people)
    report = await w.tick(SEND, dispatch=False)  # rendered into the outbox, not handed to the relay yet
    assert report.campaign_mail == 5 and w.mail() == []
    with pytest.raises(campaigns.NotAllowed, match="only its owner 'anna' may stop campaign news"):
        await campaigns.stop(w.store, "news", user="ben", now=SEND)
    run, taken = await campaigns.stop(w.store, "news", user="anna", now=SEND)
    assert (run.status, run.reason, taken) == ("stopped", "stopped by anna", 5)
    assert await w.outbox("news") == []
    assert {r["status"] for r in await w.recipients("news")} == {"queued"}

    assert str(await w.tick(SEND + dt.timedelta(hours=1))) == "nothing to do" and w.mail() == []
    started = await campaigns.start(w.store, "news", user="anna", now=SEND + dt.timedelta(hours=2))
    assert started.status == "sent"  # every recipient had been picked: its mail goes on
    assert (await w.tick(SEND + dt.timedelta(hours=2))).sent == 5
    assert (await w.tick(SEND + dt.timedelta(hours=3))).sent == 0
    assert w.to("news") == [f"p{n}@example.org" for n in range(2, 7)]  # each once
    assert len(await w.store.outbox()) == 5


@pytest.mark.store
async def test_a_stop_takes_back_mail_the_relay_deferred_too(make: Make, tmp_path: Path) -> None:
    """Mail the relay answered with a temporary failure waits for a retry, not yet sent: a stop takes it back as
    well, or the retry would send it after the stop."""
    people = [person(2, "L1", "jo@example.org"), person(3, "L2", "kim@example.net")]
    w = await make(campaign("news"), people, transport=Relay(tmp_path / "outbox", busy=2))
    report = await w.tick(SEND)
    assert (report.campaign_mail, report.deferred, report.sent) == (2, 2, 0)
    _run, taken = await campaigns.stop(w.store, "news", user="anna", now=SEND + dt.timedelta(minutes=1))
    assert taken == 2
    assert str(await w.tick(SEND + dt.timedelta(hours=2))) == "nothing to do" and w.mail() == []
    await campaigns.start(w.store, "news", user="anna", now=SEND + dt.timedelta(hours=3))
    assert (await w.tick(SEND + dt.timedelta(hours=3))).sent == 2
    assert (await w.tick(SEND + dt.timedelta(hours=6))).sent == 0
    assert w.to("news") == ["jo@example.org", "kim@example.net"]


@pytest.mark.store
async def test_anyone_deletes_a_campaign_and_its_follow_ups_and_what_was_sent_stays_counted(make: Make) -> None:
    extra = """\
        follow_ups:
          - {to: received, after: 2 days, template: reminder}
          - {to: received, after: 4 days, template: last-call}
    """
    w = await make(campaign("news", extra=extra), [person(2, "L1", "jo@example.org"), person(3, "L2", "kim@example.net")])
    await w.tick(SEND)
    await w.tick(SEND + dt.timedelta(days=2))
    assert len(w.mail("news", 0)) == 2 and len(w.mail("news", 1)) == 2
    gone, taken = await campaigns.delete(w.store, "news", user="ben", now=SEND + dt.timedelta(days=3))  # not the owner
    assert (gone.status, gone.reason, taken) == ("deleted", "deleted by ben", 0)
    assert str(await w.tick(SEND + dt.timedelta(days=5))) == "nothing to do"
    assert len(w.mail("news")) == 4  # no last call
    view = await campaigns.detail(w.store, w.ruleset, "news")
    assert view.status == "deleted"
    assert [(s.step, s.status, s.stats.sent) for s in view.steps] == [(0, "deleted", 2), (1, "sent", 2), (2, "deleted", 0)]
    # Apply does not bring it back.
    await w.use(w.ruleset, SEND + dt.timedelta(days=6))
    assert (await w.run("news"))["status"] == "deleted"


# --- trigger actions ------------------------------------------------------------------------------------------

TRIGGERS = """\
    on:
      opened:
        - {update: {field: interest, value: warm}}
        - {task: {subject: Send product details, due: 2 days, priority: high, status: in progress, assign_to: record_owner}}
        - {call: {subject: Intro call, owner: "user:anna", at: 3 days}}
      clicked:
        - {update: {field: interest, value: hot}}
        - {task: {subject: Look at the pricing visit, assign_to: campaign_owner}}
      bounced:
        - {update: {field: email_status, value: bounced}}
"""


async def actions_of(w: World, record_id: str) -> list[tuple[str, str, str | None]]:
    """The campaign actions on a record's activity: (trigger, action, field or subject)."""
    return [(e.data["trigger"], e.data["action"], e.data.get("field") or e.data.get("subject"))
            for e in await w.store.events(record_id) if e.kind == "campaign_action"]  # fmt: skip


@pytest.mark.store
async def test_each_trigger_fires_once_per_recipient_with_its_actions_on_the_activity(make: Make) -> None:
    people = [person(2, "L1", "jo@example.org", owner="ben"), person(3, "L2", "kim@example.net"),
              person(4, "L3", "sam@example.com"), person(5, "L4", "bot@example.org")]  # fmt: skip
    w = await make(campaign("news", extra=TRIGGERS), people)
    assert (await w.tick(SEND)).sent == 4
    opened_at = SEND + dt.timedelta(hours=1)

    assert (await w.hit("L1", opened_at)).automated is None
    record = await w.store.get_record("L1")
    assert record.fields["interest"] == "warm"
    task, call = sorted(await w.store.list_tasks("L1"), key=lambda t: t.type, reverse=True)
    assert (task.subject, task.type, task.priority, task.status, task.owner, task.due_at) == (
        "Send product details", "todo", "high", "in progress", "ben", opened_at + dt.timedelta(days=2))  # fmt: skip
    assert (call.subject, call.type, call.owner, call.due_at) == (
        "Intro call", "call", "anna", opened_at + dt.timedelta(days=3))  # fmt: skip
    assert await actions_of(w, "L1") == [("opened", "update", "interest"), ("opened", "task", "Send product details"),
                                         ("opened", "call", "Intro call")]  # fmt: skip
    (update,) = [e for e in await w.store.events("L1") if e.kind == "campaign_action" and e.data["action"] == "update"]
    assert (update.at, update.source, update.data["campaign"], update.data["step"], update.data["value"]) == (
        opened_at, "web", "news", 0, "warm")  # fmt: skip

    await w.hit("L1", opened_at + dt.timedelta(hours=1))  # opened again: nothing fires again
    await w.hit("L1", opened_at + dt.timedelta(hours=2), click=True)  # a click: `clicked` fires, `opened` not again
    assert len(await w.store.list_tasks("L1")) == 3
    assert (await w.store.get_record("L1")).fields["interest"] == "hot"
    assert [a for a in await actions_of(w, "L1") if a[0] == "clicked"] == [
        ("clicked", "update", "interest"), ("clicked", "task", "Look at the pricing visit")]  # fmt: skip
    assert [t.owner for t in await w.store.list_tasks("L1") if t.subject == "Look at the pricing visit"] == ["anna"]
    await w.hit("L1", opened_at + dt.timedelta(hours=3), click=True)
    assert len(await actions_of(w, "L1")) == 5

    # A click without an open seen (the pixel was not loaded): the person opened it, both fire.
    await w.hit("L2", opened_at, click=True)
    assert [a[0] for a in await actions_of(w, "L2")] == ["opened"] * 3 + ["clicked"] * 2

    # Automated opens and clicks (a scanner, a fetch within seconds of sending) fire nothing and are counted aside.
    assert (await w.hit("L4", SEND + dt.timedelta(seconds=3))).automated is not None
    assert (await w.hit("L4", opened_at, agent=SCANNER)).automated is not None
    assert (await w.hit("L4", opened_at, agent=SCANNER, click=True)).automated is not None
    assert await actions_of(w, "L4") == [] and await w.store.list_tasks("L4") == []

    # A bounce, read from the mailbox: `bounced` fires once, however many reports come.
    bounced_at = SEND + dt.timedelta(hours=2)
    applied = await w.bounce("L3", bounced_at)
    assert applied is not None and applied.kind == "bounce" and applied.records == ("L3",)
    await w.bounce("L3", bounced_at + dt.timedelta(hours=1))
    assert (await w.store.get_record("L3")).fields["email_status"] == "bounced"
    assert await actions_of(w, "L3") == [("bounced", "update", "email_status")]
    (bounce,) = [e for e in await w.store.events("L3") if e.kind == "campaign_action"]
    assert (bounce.at, bounce.source) == (bounced_at, inbox.SOURCE)

    stats = (await campaigns.detail(w.store, w.ruleset, "news")).steps[0].stats
    assert (stats.opened, stats.clicked, stats.automated_opens, stats.bounced) == (2, 2, 1, 1)


@pytest.mark.unit
def test_the_limits_of_triggers_and_unknown_fields_are_errors_at_their_lines(tmp_path: Path) -> None:
    """Four field updates, three tasks, three calls, a task on a bounce, a field no record has (in a trigger, in a
    follow-up's trigger and in its `except`): validation errors at their file and line, before anything runs."""
    extra = """\
        on:
          opened:
            - {update: {field: interest, value: a}}
            - {update: {field: interest, value: b}}
            - {update: {field: interest, value: c}}
            - {update: {field: interest, value: d}}
          clicked:
            - {task: {subject: one}}
            - {task: {subject: two}}
            - {task: {subject: three}}
            - {call: {subject: one}}
            - {call: {subject: two}}
            - {call: {subject: three}}
            - {update: {field: temperature, value: hot}}
          bounced:
            - {task: {subject: find a new address}}
        follow_ups:
          - to: received
            after: 2 days
            template: reminder
            except: {field: bought, eq: true}
            on:
              opened: [{update: {field: temprature, value: warm}}]
    """
    path = rules_dir(tmp_path, campaign("news", extra=extra))
    result = validate.validate([str(path)])
    assert result.ruleset is None
    got = sorted((Path(e.file).name, e.line, str(e.code), e.message) for e in result.errors)
    assert [(name, line, code) for name, line, code, _ in got] == [
        ("c.yaml", 13, "trigger-limit"), ("c.yaml", 17, "trigger-limit"), ("c.yaml", 20, "trigger-limit"),
        ("c.yaml", 21, "ref-field"), ("c.yaml", 23, "trigger-bounced-action"), ("c.yaml", 28, "ref-field"),
        ("c.yaml", 30, "ref-field"),
    ]  # fmt: skip
    messages = [m for *_, m in got]
    assert "a trigger allows at most 3 field updates; `opened` has more" in messages[0]
    assert "a trigger allows at most 2 tasks; `clicked` has more" in messages[1]
    assert "a trigger allows at most 2 calls; `clicked` has more" in messages[2]
    assert "unknown field 'temperature'" in messages[3]
    assert "a bounced mail allows field updates only, not a task" in messages[4]
    assert "unknown field 'bought'" in messages[5]
    assert "unknown field 'temprature'" in messages[6]


# --- follow-ups ----------------------------------------------------------------------------------------------


def follow_ups(last_template: str = "last-call") -> str:
    return f"""\
        follow_ups:
          - to: opened
            after: 3 days
            template: reminder
            except: {{field: purchased, eq: true}}
            on:
              opened: [{{update: {{field: interest, value: reminded}}}}]
          - to: received
            at: {(SEND + dt.timedelta(days=7)).isoformat()}
            template: {last_template}
            except: {{field: registered, eq: true}}
    """


@pytest.mark.store
async def test_follow_ups_go_to_who_received_or_opened_less_exceptions_decided_when_they_are_due(
    make: Make, tmp_path: Path
) -> None:  # fmt: skip
    people = [
        person(2, "L1", "a@example.org"),  # opens: both follow-ups
        person(3, "L2", "b@example.org"),  # does not open: the last call only
        person(4, "L3", "c@example.org"),  # opens, then buys: not the reminder (its except), the last call
        person(5, "L4", "d@example.org"),  # opens, then unsubscribes: neither
        person(6, "L5", "e@example.org"),  # the mail bounced: neither
        person(7, "L6", "f@example.org", registered=True),  # opens, registered: the reminder only
    ]
    w = await make(campaign("news", extra=follow_ups()), people)
    assert (await w.tick(SEND)).sent == 6
    for record_id in ("L1", "L3", "L4", "L6"):
        await w.hit(record_id, SEND + dt.timedelta(hours=1))
    await w.bounce("L5", SEND + dt.timedelta(hours=2))
    await events.unsubscribe(w.store, "L4", now=SEND + dt.timedelta(days=1))
    await events.set_fields(w.store, "L3", {"purchased": True}, now=SEND + dt.timedelta(days=2))
    # A follow-up not sent yet changes with the rules, after the campaign mail went out.
    await w.use(load(rules_dir(tmp_path, campaign("news", extra=follow_ups("mailing")))), SEND + dt.timedelta(days=2))
    assert (await w.run("news"))["status"] == "sent"

    assert str(await w.tick(SEND + dt.timedelta(days=3, minutes=-1))) == "nothing to do"  # `after: 3 days`
    report = await w.tick(SEND + dt.timedelta(days=3))
    assert (report.campaign_mail, report.campaign_skipped) == (2, 2)
    assert w.to("news", 1) == ["a@example.org", "f@example.org"]
    assert {m["Subject"] for m in w.mail("news", 1)} == {"A reminder"}
    reminder = {r["record_id"]: r["reason"] for r in await w.recipients("news") if r["step"] == 1}
    assert reminder == {"L1": None, "L3": "excepted", "L4": "suppressed: unsubscribed", "L6": None}

    # The reminder's own trigger, once; the campaign mail's trigger had fired for the campaign mail only.
    await w.hit("L1", SEND + dt.timedelta(days=3, hours=1), step=1)
    await w.hit("L1", SEND + dt.timedelta(days=3, hours=2), step=1)
    assert (await w.store.get_record("L1")).fields["interest"] == "reminded"
    assert [(e.data["step"], e.data["trigger"]) for e in await w.store.events("L1") if e.kind == "campaign_action"] == [
        (1, "opened")]  # fmt: skip

    assert str(await w.tick(SEND + dt.timedelta(days=7, minutes=-1))) == "nothing to do"  # `at` its date
    await w.tick(SEND + dt.timedelta(days=7))
    assert w.to("news", 2) == ["a@example.org", "b@example.org", "c@example.org"]
    assert {m["Subject"] for m in w.mail("news", 2)} == {"News for L1", "News for L2", "News for L3"}  # the new template
    last = {r["record_id"]: r["reason"] for r in await w.recipients("news") if r["step"] == 2 and r["status"] == "skipped"}
    assert last == {"L4": "suppressed: unsubscribed", "L5": "suppressed: bounced", "L6": "excepted"}

    view = await campaigns.detail(w.store, w.ruleset, "news")
    assert [(s.step, s.to, s.due_at, s.status, s.stats.sent) for s in view.steps] == [
        (0, "everyone", SEND, "sent", 6), (1, "opened", SEND + dt.timedelta(days=3), "sent", 2),
        (2, "received", SEND + dt.timedelta(days=7), "sent", 3)]  # fmt: skip
    assert view.steps[1].stats.skipped == {"excepted": 1, "suppressed": 1}
    assert str(await w.tick(SEND + dt.timedelta(days=30))) == "nothing to do"
    assert len(w.mail()) == 11


# --- a restart in the middle of picking --------------------------------------------------------------------------


@pytest.mark.store
async def test_picking_resumes_after_the_last_batch_written_and_nobody_gets_the_mail_twice(
    make: Make, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:  # fmt: skip
    """Two candidates a batch, and a tick that yields after one batch: each tick (of a new scheduler, as after a
    restart) goes on after the cursor the last one wrote. A batch that fails half way writes nothing, and is picked
    again. The same address in two batches is mailed once."""
    people = [person(2, "L1", "Sam@Example.com")] + [person(n, f"L{n - 1}", f"p{n - 1}@example.org") for n in range(3, 8)]
    people.append(person(8, "L7", "sam@example.com"))
    w = await make(campaign("news"), people)
    monkeypatch.setattr(campaigns, "PICK", 2)
    monkeypatch.setattr(campaigns, "BATCH_SECONDS", 0.0)

    report = await w.tick(SEND)
    assert (report.campaign_mail, report.sent) == (2, 2)
    run = await w.run("news")
    assert (run["status"], run["cursor"]) == ("sending", "L2")

    real = campaigns.engine.skip

    def fails_on_l5(c: Any, seen: set[str]) -> Any:
        if c.record_id == "L5":
            raise RuntimeError("the process died here")
        return real(c, seen)

    monkeypatch.setattr(campaigns.engine, "skip", fails_on_l5)
    for at in (1, 2):  # L3 and L4; then L5 and L6, which fails: nothing of it is written
        w.scheduler = scheduler.Scheduler(w.store, w.ruleset, w.scheduler.transport, links=LINKS)
        with caplog.at_level(logging.ERROR, logger="outreach"):
            await w.tick(SEND + dt.timedelta(minutes=at))
    assert "campaign news failed" in caplog.messages
    assert (await w.run("news"))["cursor"] == "L4"
    assert sorted(r["record_id"] for r in await w.recipients("news")) == ["L1", "L2", "L3", "L4"]

    monkeypatch.setattr(campaigns.engine, "skip", real)
    for at in (3, 4, 5):
        w.scheduler = scheduler.Scheduler(w.store, w.ruleset, w.scheduler.transport, links=LINKS)
        await w.tick(SEND + dt.timedelta(minutes=at))
    run = await w.run("news")
    assert (run["status"], run["cursor"], run["finished_at"]) == ("sent", "L7", SEND + dt.timedelta(minutes=4))
    assert w.to("news") == ["Sam@Example.com"] + [f"p{n}@example.org" for n in range(2, 7)]
    found = [(r["record_id"], r["status"], r["reason"]) for r in await w.recipients("news")]
    assert found == [("L1", "mailed", None)] + [(f"L{n}", "mailed", None) for n in range(2, 7)] + [
        ("L7", "skipped", "same address twice")]  # fmt: skip
    assert len(await w.outbox("news")) == 6


# --- statistics ---------------------------------------------------------------------------------------------


@pytest.mark.store
async def test_statistics_after_deliveries_a_refusal_a_bounce_opens_and_clicks(make: Make, tmp_path: Path) -> None:
    people = [person(2, "L1", "clicks@example.org"), person(3, "L2", "opens@example.org"),
              person(4, "L3", "scanned@example.org"), person(5, "L4", "bounces@example.org"),
              person(6, "L5", "refused@example.org"), person(7, "L6", "quiet@example.org"), person(8, "L7", None)]  # fmt: skip
    w = await make(campaign("news"), people, transport=Relay(tmp_path / "outbox", refuses=["refused@example.org"]))
    report = await w.tick(SEND)
    assert (report.sent, report.failed) == (5, 1)
    later = SEND + dt.timedelta(hours=1)
    await w.hit("L1", later)
    await w.hit("L1", later, click=True)
    await w.hit("L2", later)
    await w.hit("L3", later, agent=SCANNER)
    await w.hit("L3", later + dt.timedelta(minutes=1), agent=SCANNER)
    await w.bounce("L4", later)

    stats = (await campaigns.detail(w.store, w.ruleset, "news")).steps[0].stats
    assert stats.as_dict() == {
        "step": 0, "template": "mailing", "recipients": 6, "skipped": {"no valid email": 1}, "pending": 0, "sent": 5,
        "delivered": 4, "not_delivered": 2, "bounced": 1, "opened": 2, "automated_opens": 1, "clicked": 1,
        "unclicked": 3, "unknown": 0,
        "rates": {"delivered": 0.6667, "not_delivered": 0.3333, "bounced": 0.1667, "opened": 0.5, "clicked": 0.25,
                  "unclicked": 0.75},
    }  # fmt: skip
    listed = {c: [r["record_id"] for r in await campaigns.recipients(w.store, "news", 0, c)] for c in campaigns.CATEGORIES}
    assert listed == {
        "recipients": ["L1", "L2", "L3", "L4", "L5", "L6"], "skipped": ["L7"], "pending": [],
        "sent": ["L1", "L2", "L3", "L4", "L6"], "delivered": ["L1", "L2", "L3", "L6"], "not_delivered": ["L4", "L5"],
        "bounced": ["L4"], "opened": ["L1", "L2"], "clicked": ["L1"], "unclicked": ["L2", "L3", "L6"], "unknown": [],
    }  # fmt: skip
    (overview,) = await campaigns.overview(w.store, w.ruleset)
    assert overview.name == "news" and overview.steps[0].stats == stats
    with pytest.raises(ValueError, match="unknown category 'openers'"):
        await campaigns.recipients(w.store, "news", 0, "openers")
    with pytest.raises(campaigns.NoSuchCampaign):
        await campaigns.detail(w.store, w.ruleset, "nothing")


# --- send windows and daily limits --------------------------------------------------------------------------------


@pytest.mark.store
async def test_a_campaign_naming_a_calendar_waits_for_its_working_days_and_window_on_each_recipients_clock(
    make: Make,
) -> None:  # fmt: skip
    """Saturday 6 March 2027: the calendar `default` sends Monday to Friday, 08:00-18:00, but Monday 8 March is a
    public holiday in Berlin: Tuesday 08:00 in Berlin (07:00 UTC) for a record without a zone, 08:00 in New York
    (13:00 UTC) for one there. A campaign without a calendar goes at its send time."""
    saturday = dt.datetime(2027, 3, 6, 10, 0, tzinfo=UTC)
    docs = "---\n".join([campaign("windowed", send_at=saturday, extra="calendar: default"),
                         campaign("anytime", module="contact", to="{where: {field: country, eq: DE}}", send_at=saturday)])  # fmt: skip
    people = [person(2, "L1", "berlin@example.org"), person(3, "L2", "ny@example.org", timezone="America/New_York"),
              person(4, "C1", "contact@example.org", module="contact")]  # fmt: skip
    w = await make(docs, people)
    report = await w.tick(saturday)
    assert (report.campaign_mail, report.sent) == (1, 1) and w.to("anytime") == ["contact@example.org"]
    waiting = {r["record_id"]: (r["status"], r["reason"]) for r in await w.recipients("windowed")}
    assert waiting == {
        "L1": ("queued", "waits for the send window of calendar default (2027-03-09T07:00:00+00:00)"),
        "L2": ("queued", "waits for the send window of calendar default (2027-03-09T13:00:00+00:00)"),
    }
    stats = (await campaigns.detail(w.store, w.ruleset, "windowed")).steps[0].stats
    assert (stats.recipients, stats.pending, stats.sent) == (2, 2, 0)

    tuesday = dt.datetime(2027, 3, 9, 7, 0, tzinfo=UTC)
    assert (await w.tick(dt.datetime(2027, 3, 8, 9, 0, tzinfo=UTC))).sent == 0  # the holiday
    assert (await w.tick(tuesday - dt.timedelta(minutes=1))).sent == 0
    assert (await w.tick(tuesday)).sent == 1 and w.to("windowed") == ["berlin@example.org"]
    assert (await w.tick(tuesday + dt.timedelta(hours=6))).sent == 1
    assert w.to("windowed") == ["berlin@example.org", "ny@example.org"]


@pytest.mark.store
async def test_a_senders_daily_limit_holds_the_rest_of_a_campaign_for_the_next_day(make: Make) -> None:
    def two_a_day(text: str) -> str:
        return text.replace("mailbox: anna, daily_limit: 300", "mailbox: anna, daily_limit: 2")

    people = [person(n, f"L{n}", f"p{n}@example.org") for n in range(2, 5)]
    w = await make(campaign("news"), people, settings=two_a_day)
    assert (await w.tick(SEND)).sent == 2
    (held,) = [r for r in await w.recipients("news") if r["status"] == "queued"]
    assert held["reason"] == "waits: anna@example.com sent its daily limit of 2 in the last 24 hours"
    assert (await w.tick(SEND + dt.timedelta(hours=23, minutes=59))).sent == 0
    assert (await w.tick(SEND + dt.timedelta(days=1))).sent == 1
    assert len(w.to("news")) == 3 and {r["status"] for r in await w.recipients("news")} == {"mailed"}


# --- bad input ------------------------------------------------------------------------------------------------


@pytest.mark.store
async def test_a_view_that_matches_nothing_completes_with_nothing_sent_and_says_so(
    make: Make, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:  # fmt: skip
    people = [person(2, "L1", "us@example.org", country="US"), person(3, "L2", "gone@example.org")]
    docs = "---\n".join([campaign("nobody"), campaign("skipped", to="{records: [L2]}")])
    w = await make(docs, people)
    await events.unsubscribe(w.store, "L2", now=BEFORE)
    await events.set_fields(w.store, "L2", {"country": "US"}, now=BEFORE)  # the view matches nobody now
    with caplog.at_level(logging.INFO, logger="outreach"):
        report = await w.tick(SEND)
    assert (report.campaign_mail, report.campaign_skipped, report.sent) == (0, 1, 0) and w.mail() == []
    assert "campaign nobody: sent to nobody: no lead record matched its recipients" in caplog.messages
    assert ("campaign skipped: sent to nobody: the one record it matched was skipped (1 suppressed)"
            in caplog.messages)  # fmt: skip
    for name, why in (("nobody", "no lead record matched its recipients"),
                      ("skipped", "the one record it matched was skipped (1 suppressed)")):  # fmt: skip
        view = await campaigns.detail(w.store, w.ruleset, name)
        assert (view.status, view.reason, view.steps[0].stats.sent) == ("sent", f"sent to nobody: {why}", 0)
    assert str(await w.tick(SEND + dt.timedelta(days=1))) == "nothing to do"


@pytest.mark.store
async def test_a_send_at_in_the_past_goes_out_at_once_with_a_warning(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:  # fmt: skip
    late = SEND + dt.timedelta(hours=1)
    with caplog.at_level(logging.WARNING, logger="outreach"):
        w = await make(campaign("news"), [person(2, "L1", "jo@example.org")], applied=late)
    assert "campaign news: send_at 2027-03-02T09:00:00+00:00 is in the past: it goes out at once" in caplog.messages
    run = await w.run("news")
    assert (run["status"], run["send_at"]) == ("scheduled", late)
    assert (await w.tick(late)).sent == 1


@pytest.mark.acceptance
def test_validate_warns_of_a_send_at_in_the_past_and_strict_refuses_it(tmp_path: Path) -> None:
    path = rules_dir(tmp_path, campaign("news"))
    result = validate.validate([str(path)], now=SEND + dt.timedelta(hours=1))
    assert result.ruleset is not None
    (warning,) = [d for d in result.diagnostics if str(d.code) == "campaign-in-past"]
    assert (Path(warning.file).name, warning.line) == ("c.yaml", 7)
    assert warning.message == "send_at 2027-03-02T09:00:00+00:00 is in the past: the campaign would go out at once"
    runner = CliRunner()
    now = ["--now", (SEND + dt.timedelta(hours=1)).isoformat()]
    plain = runner.invoke(cli.main, ["validate", *now, str(path)])
    assert plain.exit_code == 0 and "c.yaml:7:" in plain.output and "is in the past" in plain.output
    strict = runner.invoke(cli.main, ["validate", "--strict", *now, str(path)])
    assert strict.exit_code == 1 and "c.yaml:7:" in strict.output and "error" in strict.output
    in_time = runner.invoke(cli.main, ["validate", "--strict", "--now", BEFORE.isoformat(), str(path)])
    assert "c.yaml" not in in_time.output  # (other files have warnings: templates these rules do not use)


@pytest.mark.store
async def test_mail_that_waits_does_not_hold_back_the_recipients_behind_it(make: Make,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A render window of one: the first recipient (New York, before its send window opens) waits; the Berlin one
    behind it, whose window is open, goes in the same tick rather than after New York's morning."""
    monkeypatch.setattr(campaigns, "RENDER_AHEAD", 1)
    tuesday = dt.datetime(2027, 3, 9, 9, 0, tzinfo=UTC)  # 10:00 in Berlin, 04:00 in New York
    people = [person(2, "L1", "ny@example.org", timezone="America/New_York"), person(3, "L2", "berlin@example.org")]
    w = await make(campaign("windowed", send_at=tuesday, extra="calendar: default"), people)
    assert (await w.tick(tuesday)).sent == 1 and w.to("windowed") == ["berlin@example.org"]
    (held,) = [r for r in await w.recipients("windowed") if r["status"] == "queued"]
    assert held["record_id"] == "L1" and held["held_until"] == dt.datetime(2027, 3, 9, 13, 0, tzinfo=UTC)
    assert (await w.tick(dt.datetime(2027, 3, 9, 13, 0, tzinfo=UTC))).sent == 1
    assert w.to("windowed") == ["berlin@example.org", "ny@example.org"]


@pytest.mark.store
async def test_mail_that_cannot_be_made_is_skipped_with_the_reason_not_left_waiting(make: Make) -> None:
    """`from: record_owner` and a record without an owner: no sender. It does not stay queued for ever (nor get
    rendered again at every tick): it is skipped, "cannot be sent", and counted so."""
    people = [person(2, "L1", "owned@example.org"), person(3, "L2", "orphan@example.org", owner=None)]
    w = await make(campaign("owners", extra="from: record_owner"), people)
    report = await w.tick(SEND)
    assert (report.sent, report.campaign_skipped) == (1, 1) and w.to("owners") == ["owned@example.org"]
    rows_ = {r["record_id"]: (r["status"], r["reason"]) for r in await w.recipients("owners")}
    assert rows_["L2"] == ("skipped", "cannot be sent: the campaign sends as the record owner and the record has no owner")
    stats = (await campaigns.detail(w.store, w.ruleset, "owners")).steps[0].stats
    assert (stats.recipients, stats.pending, stats.skipped) == (1, 0, {"cannot be sent": 1})


@pytest.mark.store
async def test_a_trigger_that_fails_loses_neither_the_open_nor_its_other_writes(
    make: Make, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:  # fmt: skip
    """The first action is written, then the second one fails: the trigger's writes are undone together (a
    savepoint), the failure is logged, and the open itself is kept with its message and on the activity."""
    w = await make(campaign("news", extra=TRIGGERS), [person(2, "L1", "jo@example.org")])
    assert (await w.tick(SEND)).sent == 1
    real = campaigns._run_actions

    async def half_then_fail(tx: Any, *args: Any) -> int:
        await real(tx, *args)  # every action written ...
        raise RuntimeError("the task system is down")  # ... then the trigger fails

    monkeypatch.setattr(campaigns, "_run_actions", half_then_fail)
    with caplog.at_level(logging.ERROR, logger="outreach"):
        assert (await w.hit("L1", SEND + dt.timedelta(hours=1))).automated is None
    assert "campaign news: the opened trigger of record L1 failed" in caplog.messages
    assert await actions_of(w, "L1") == [] and await w.store.list_tasks("L1") == []
    assert "interest" not in (await w.store.get_record("L1")).fields
    assert [e.kind for e in await w.store.events("L1") if e.kind == "opened"] == ["opened"]
    (row,) = await w.recipients("news")
    assert row["opened_at"] == SEND + dt.timedelta(hours=1)


@pytest.mark.store
async def test_a_tick_renders_only_the_steps_with_mail_left_and_looks_them_up_in_one_statement(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    """A window of one message: the steps with recipients still queued are found in one statement; once every
    mail is out a tick asks once more and renders nothing."""
    monkeypatch.setattr(campaigns, "RENDER_AHEAD", 1)
    people = [person(2, "L1", "a@example.org"), person(3, "L2", "b@example.org")]
    w = await make("---\n".join([campaign("news"), campaign("done", to="{records: [L1]}")]), people)
    assert (await w.tick(SEND)).sent == 1
    steps = [("news", 0), ("done", 0), ("news", 1)]
    assert w.to("done") == ["a@example.org"]  # "done" went first (by name); its only mail is out
    assert await w.store.campaign_queued_steps(steps) == {("news", 0)}
    await w.tick(SEND + dt.timedelta(minutes=1))
    await w.tick(SEND + dt.timedelta(minutes=2))
    assert w.to() == ["a@example.org", "a@example.org", "b@example.org"]
    assert await w.store.campaign_queued_steps(steps) == set()

    asked: list[list[tuple[str, int]]] = []
    rendered: list[object] = []
    real = w.store.campaign_queued_steps

    async def looked_up(which: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
        asked.append(sorted(which))
        return await real(which)

    async def render(*args: object) -> None:
        rendered.append(args)

    monkeypatch.setattr(w.store, "campaign_queued_steps", looked_up)
    monkeypatch.setattr(w.scheduler.campaigns, "_render", render)
    await w.tick(SEND + dt.timedelta(minutes=3))
    assert asked == [[("done", 0), ("news", 0)]] and rendered == []
