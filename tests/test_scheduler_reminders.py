"""Stage-duration reminders through the store and the Maildir, tick by tick on a virtual clock, on SQLite and PostgreSQL.

The daemon is played by one Scheduler ticking at some hours of each day, the run
time 07:00 UTC among them (a restarted daemon is a new Scheduler). Dates: 2026-11-21 is a Saturday, 2026-11-23 a Monday.
The example rules' `partner-leads` process: New 2 days, Contacted 1 week,
reminders at 07:00 UTC every week, to the record's owner.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import shutil
from collections.abc import AsyncIterator, Callable, Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from outreach.app import reminding, scheduler
from outreach.app import rules as app_rules
from outreach.mail import transport as mail_transport
from outreach.rules import model, validate
from outreach.store import Store, tables
from tests.conftest import ROOT
from tests.stores import PG_URL
from tests.worlds import Row, rows

pytestmark = pytest.mark.store

UTC = dt.UTC
HOUR = dt.timedelta(hours=1)
SATURDAY_10 = dt.datetime(2026, 11, 21, 10, 0, tzinfo=UTC)  # L2 enters New: overdue Monday 10:00


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def ruleset(path: Path) -> model.RuleSet:
    result = validate.validate([str(path)])
    assert result.errors == [], result.errors
    assert result.ruleset is not None
    return result.ruleset


def rules_with(tmp_path: Path, process: str | None = None, templates: str | None = None) -> model.RuleSet:
    """The example rules, with partner-leads' YAML replaced and templates added."""
    target = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", target)
    if process is not None:
        (target / "processes" / "partner-leads.yaml").write_text(process, encoding="utf-8")
    if templates is not None:
        (target / "templates" / "extra.yaml").write_text(templates, encoding="utf-8")
    return ruleset(target)


def lead(id: str, owner: str | None = "anna", stage: str = "New", entered: dt.datetime = SATURDAY_10,
         **fields: Any) -> Row:  # fmt: skip
    email = f"{id.lower()}@example.org"
    values = {"first_name": id, "company": f"{id} GmbH", "stage": stage, "stage_entered_at": entered, **fields}
    if owner is not None:
        values["owner"] = owner
    return Row(2, id, "lead", email, values)


@dataclasses.dataclass
class World:
    store: Store
    rules: model.RuleSet
    outbox: Path
    scheduler: scheduler.Scheduler

    def mail(self) -> list[EmailMessage]:
        return mail_transport.read_all(self.outbox) if self.outbox.exists() else []

    def sent(self) -> list[tuple[dt.datetime, str]]:
        """(Date, To) of every mail in the Maildir, in order."""
        return [(m["Date"].datetime.astimezone(UTC), str(m["To"])) for m in self.mail()]

    def restart(self) -> None:
        """A new daemon on the same store: it remembers nothing of its last look."""
        self.scheduler = scheduler.Scheduler(self.store, self.rules, self.scheduler.transport)

    async def run(
        self,
        start: dt.datetime,
        end: dt.datetime,
        events: Mapping[dt.datetime, Callable[[Store, dt.datetime], Any]] | None = None,
    ) -> list[scheduler.TickReport]:
        """Tick from start (inclusive) to end (exclusive) at the hours of TICKS; an event happens before the first
        tick at or after its time."""
        reports, pending = [], sorted((events or {}).items())
        now, last = start, start - HOUR
        while now < end:
            for when, event in [e for e in pending if last < e[0] <= now]:
                await event(self.store, when)
            reports.append(await self.scheduler.tick(now))
            last, now = now, _next_tick(now)
        return reports


TICKS = (0, 6, 7, 8, 9, 12, 18)  # hours of the day the daemon ticks (every tick costs, on PostgreSQL most)


def _next_tick(now: dt.datetime) -> dt.datetime:
    for hour in TICKS:
        t = now.replace(hour=hour, minute=0, second=0, microsecond=0)
        if t > now:
            return t
    return (now + dt.timedelta(days=1)).replace(hour=TICKS[0], minute=0, second=0, microsecond=0)


async def open_world(db: tuple[str, str | None], tmp_path: Path, rules: model.RuleSet, *leads: Row) -> World:
    url, schema = db
    store = await Store.open(url, fields=rules.settings.fields, upgrade=True, schema=schema)
    await store.import_records(rows(*leads), now=SATURDAY_10 - HOUR)
    await app_rules.apply(store, rules, now=SATURDAY_10 - HOUR)
    outbox = tmp_path / "outbox"
    sched = scheduler.Scheduler(store, rules, mail_transport.MaildirTransport(str(outbox)))
    return World(store, rules, outbox, sched)


@pytest.fixture
async def world(backend: tuple[str, str | None], tmp_path: Path) -> AsyncIterator[World]:
    w = await open_world(backend, tmp_path, ruleset(ROOT / "rules"), lead("L2"))
    try:
        yield w
    finally:
        await w.store.close()


async def test_overdue_monday_reminds_the_owner_tuesday_at_seven_then_the_next_tuesdays(world: World) -> None:
    w = world
    reports = await w.run(at("2026-11-23T00:00:00"), at("2026-12-09T00:00:00"))
    assert w.sent() == [
        (at("2026-11-24T07:00:00"), "anna@example.com"),
        (at("2026-12-01T07:00:00"), "anna@example.com"),
        (at("2026-12-08T07:00:00"), "anna@example.com"),
    ]
    assert sum(r.reminders for r in reports) == 3
    first = w.mail()[0]
    assert first["From"] == "Example GmbH <sales@example.com>"
    assert first["Subject"] == "Overdue: L2 GmbH is still in New"
    assert first["X-Outreach-Process"] == "partner-leads" and first["X-Outreach-Record"] == "L2"
    body = first.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Hi Anna Berger," in body
    assert 'has been in the stage "New" for 2 days; the process allows 2 days.' in body
    assert "It is overdue since Mon 2026-11-23 11:00 CET. This is reminder 1." in body  # Settings.timezone
    third = w.mail()[2].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "for 16 days" in third and "This is reminder 3." in third
    events = [e for e in await w.store.events("L2") if e.kind == "reminder_sent"]
    assert [(e.at, e.data["reminder"], e.data["to"], e.data["stage"]) for e in events] == [
        (at("2026-11-24T07:00:00"), 1, "anna", "New"),
        (at("2026-12-01T07:00:00"), 2, "anna", "New"),
        (at("2026-12-08T07:00:00"), 3, "anna", "New"),
    ]
    (row,) = [m for m in await w.store.outbox() if m["state"] == "sent"][:1]
    assert (row["record_id"], row["template"], row["enrollment_id"]) == ("L2", "overdue-reminder", None)
    (state,) = await w.store.reminder_states("partner-leads")
    assert (state["sent"], state["next_due_at"], state["stopped"]) == (3, at("2026-12-15T07:00:00"), None)


async def test_the_outbox_knows_the_process_that_queued_a_reminder(world: World) -> None:
    await world.run(at("2026-11-24T07:00:00"), at("2026-11-24T08:00:00"))
    async with world.store.engine.connect() as conn:
        o = tables.outbox
        found = (await conn.execute(o.select().with_only_columns(o.c.process, o.c.record_id))).all()
    assert [tuple(r) for r in found] == [("partner-leads", "L2")]


async def test_a_stage_change_ends_the_reminders_and_a_new_overdue_stage_starts_them_again(world: World) -> None:
    w = world

    async def contacted(store: Store, when: dt.datetime) -> None:
        await store.set_fields("L2", {"stage": "Contacted"}, now=when)

    await w.run(at("2026-11-23T00:00:00"), at("2026-12-11T00:00:00"), {at("2026-11-25T09:00:00"): contacted})
    # New: reminded Tuesday 24th; Contacted (1 week) is overdue Wednesday 2 December 09:00
    assert [d for d, _to in w.sent()] == [at("2026-11-24T07:00:00"), at("2026-12-03T07:00:00"),
                                          at("2026-12-10T07:00:00")]  # fmt: skip
    assert "is still in Contacted" in str(w.mail()[1]["Subject"])
    assert "This is reminder 1." in w.mail()[1].get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def _task(store: Store, when: dt.datetime) -> None:
    await store.add_task("L2", "Call Kim", now=when)


async def _future_appointment(store: Store, when: dt.datetime) -> None:
    await store.add_appointment("L2", at("2026-12-05T10:00:00"), "Demo", now=when)


async def _past_appointment(store: Store, when: dt.datetime) -> None:
    await store.add_appointment("L2", at("2026-11-24T10:00:00"), "The call we had", now=when)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (_task, ["2026-11-24"]),
        (_future_appointment, ["2026-11-24"]),
        (_past_appointment, ["2026-11-24", "2026-12-01", "2026-12-08"]),  # a meeting that took place stops nothing
    ],
    ids=["a task created", "a future appointment entered", "a past appointment entered"],
)
async def test_what_is_done_for_the_lead_stops_its_reminders(
    world: World, event: Callable[[Store, dt.datetime], Any], expected: list[str]
) -> None:
    w = world
    await w.run(at("2026-11-23T00:00:00"), at("2026-12-09T00:00:00"), {at("2026-11-25T09:30:00"): event})
    assert [d.date().isoformat() for d, _to in w.sent()] == expected
    (state,) = await w.store.reminder_states("partner-leads")
    assert state["stopped"] == (None if event is _past_appointment else
                                ("task" if event is _task else "appointment"))  # fmt: skip


async def test_after_downtime_the_daemon_catches_up_once_and_keeps_the_tuesdays(world: World) -> None:
    w = world
    await w.run(at("2026-11-23T00:00:00"), at("2026-11-30T13:00:00"))
    w.restart()  # down from Monday 30th 12:00 to Thursday 3 December 12:00: the Tuesday run was missed
    await w.run(at("2026-12-03T12:00:00"), at("2026-12-09T00:00:00"))
    assert [d for d, _to in w.sent()] == [at("2026-11-24T07:00:00"), at("2026-12-03T12:00:00"),
                                          at("2026-12-08T07:00:00")]  # fmt: skip


async def test_the_reminder_goes_in_the_same_tick_as_the_run_and_not_twice_that_day(world: World) -> None:
    w = world
    assert (await w.scheduler.tick(at("2026-11-24T06:59:59"))).reminders == 0
    report = await w.scheduler.tick(at("2026-11-24T07:00:07"))
    assert (report.reminders, report.sent) == (1, 1)
    assert str(report) == "1 reminders, 1 sent"
    await w.store.set_fields("L2", {"score": 3}, now=at("2026-11-24T07:01:00"))  # a change makes the daemon look
    assert (await w.scheduler.tick(at("2026-11-24T07:02:00"))).reminders == 0
    w.restart()
    assert (await w.scheduler.tick(at("2026-11-24T18:00:00"))).reminders == 0


DIGEST_PROCESS = """\
kind: SalesProcess
name: partner-leads
module: lead
stages:
  - {name: New, max: 2 days}
  - {name: Contacted, max: 1 week}
  - {name: Won}
follow_up: {enabled: true, every: 1 week, to: record_owner, template: overdue-digest, digest: true}
"""
DIGEST_TEMPLATE = """\
kind: Template
name: overdue-digest
subject: "{{ records | length }} overdue lead(s)"
text: |
  Hi {{ recipient.name }},
  {% for r in records %}
  - {{ r.record.id }} ({{ r.owner.name }}): {{ r.stage }} for {{ r.in_stage }}, max {{ r.max }}, reminder {{ r.reminder }}
  {%- endfor %}
  {% for r in also_overdue %}
  also overdue: {{ r.record.id }} since {{ r.overdue_since }}
  {%- endfor %}
"""


async def test_a_digest_is_one_mail_per_owner_listing_all_their_overdue_records(
    backend: tuple[str, str | None],
    tmp_path: Path,
) -> None:
    rules = rules_with(tmp_path, DIGEST_PROCESS, DIGEST_TEMPLATE)
    w = await open_world(
        backend, tmp_path, rules,
        lead("L1"), lead("L2"), lead("L3", owner="ben"),
        lead("L4", entered=at("2026-11-22T05:00:00")),  # overdue Tuesday 05:00: reminded Wednesday
    )  # fmt: skip
    try:
        await w.run(at("2026-11-23T00:00:00"), at("2026-11-26T00:00:00"))
        assert sorted(w.sent()) == [(at("2026-11-24T07:00:00"), "anna@example.com"),
                            (at("2026-11-24T07:00:00"), "ben@example.com"),
                            (at("2026-11-25T07:00:00"), "anna@example.com")]  # fmt: skip
        by_to = {str(m["To"]) + str(m["Date"].datetime.day): m for m in w.mail()}
        anna = by_to["anna@example.com24"].get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert by_to["anna@example.com24"]["Subject"] == "2 overdue lead(s)"
        assert "- L1 (Anna Berger): New for 2 days, max 2 days, reminder 1" in anna
        assert "- L2 (Anna Berger): New for 2 days, max 2 days, reminder 1" in anna
        assert "also overdue: L4 since Tue 2026-11-24 06:00 CET" in anna  # not due before Wednesday
        assert "X-Outreach-Record" not in by_to["anna@example.com24"]
        wednesday = by_to["anna@example.com25"].get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "- L4 (Anna Berger)" in wednesday and "also overdue: L1" in wednesday
        assert [e.kind for e in await w.store.events("L1")] == ["reminder_sent"]  # listed on Wednesday, not reminded
    finally:
        await w.store.close()


async def test_an_unknown_owner_blocks_that_reminder_and_the_tick_goes_on(
    backend: tuple[str, str | None],
    tmp_path: Path,
) -> None:
    w = await open_world(backend, tmp_path, ruleset(ROOT / "rules"), lead("L1", owner="zoe"), lead("L2"),
                         lead("L3", owner=None))  # fmt: skip
    try:
        await w.run(at("2026-11-24T00:00:00"), at("2026-11-26T00:00:00"))
        assert w.sent() == [(at("2026-11-24T07:00:00"), "anna@example.com")]  # L2's
        blocked = [e for e in await w.store.events("L1") if e.kind == "reminder_blocked"]
        assert [(e.at, e.data["reason"]) for e in blocked] == [
            (at("2026-11-24T07:00:00"), "'zoe' is not a user in Settings.users")
        ]  # once, not at every look
        assert [e.data["reason"] for e in await w.store.events("L3") if e.kind == "reminder_blocked"] == [
            "record L3 has no owner to remind"]  # fmt: skip
        states = {s["record_id"]: s for s in await w.store.reminder_states("partner-leads")}
        assert (states["L1"]["sent"], states["L1"]["next_due_at"]) == (0, at("2026-11-24T07:00:00"))  # still due
        await w.store.set_fields("L1", {"owner": "ben"}, now=at("2026-11-26T10:00:00"))
        await w.run(at("2026-11-26T10:00:00"), at("2026-11-26T12:00:00"))
        assert w.sent()[-1] == (at("2026-11-26T10:00:00"), "ben@example.com")  # the reminder it owed, once
        assert (await w.store.reminder_states("partner-leads"))[0]["blocked"] is None
    finally:
        await w.store.close()


async def test_a_template_that_does_not_render_blocks_with_the_reason(
    backend: tuple[str, str | None],
    tmp_path: Path,
) -> None:
    template = "kind: Template\nname: overdue-reminder\nsubject: Overdue {{ record.score }}\ntext: x\n"
    target = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", target)
    (target / "templates" / "reminders.yaml").write_text(template, encoding="utf-8")
    w = await open_world(backend, tmp_path, ruleset(target), lead("L2"), lead("L3", score=7))
    try:
        report = await w.scheduler.tick(at("2026-11-24T07:00:00"))
        assert (report.reminders, w.sent()) == (1, [(at("2026-11-24T07:00:00"), "anna@example.com")])
        (event,) = [e for e in await w.store.events("L2") if e.kind == "reminder_blocked"]
        assert event.data == {"process": "partner-leads", "reason": "missing merge field record.score"}
    finally:
        await w.store.close()


WHERE_PROCESS = """\
kind: SalesProcess
name: partner-leads
module: lead
where: {field: source, eq: partner}
stages: [{name: New, max: 2 days}]
follow_up: {enabled: true, every: 3 days, template: overdue-reminder}
---
kind: SalesProcess
name: inbound-leads
module: lead
where: {field: source, ne: partner}
stages: [{name: New, max: 1 day}]
follow_up: {enabled: true, at: "0 9 * * *", timezone: Europe/Berlin, to: "user:ben", template: overdue-reminder}
"""


async def test_each_record_follows_the_processes_whose_criteria_it_matches(
    backend: tuple[str, str | None],
    tmp_path: Path,
) -> None:
    rules = rules_with(tmp_path, WHERE_PROCESS)
    w = await open_world(backend, tmp_path, rules, lead("P1", source="partner"), lead("W1", source="web"),
                         Row(3, "C1", "contact", "c1@example.org", {"owner": "anna", "stage": "New",
                                                                   "stage_entered_at": SATURDAY_10}))  # fmt: skip
    try:
        await w.run(at("2026-11-22T00:00:00"), at("2026-11-28T00:00:00"))
        sent = [
            (d, to, m["X-Outreach-Process"], m["X-Outreach-Record"])
            for (d, to), m in zip(w.sent(), w.mail(), strict=True)
        ]
        assert sent == [
            # W1 overdue Sunday 10:00 (1 day): Monday 09:00 Berlin, to ben; a single reminder (no `every`)
            (at("2026-11-23T08:00:00"), "ben@example.com", "inbound-leads", "W1"),
            (at("2026-11-24T07:00:00"), "anna@example.com", "partner-leads", "P1"),
            (at("2026-11-27T07:00:00"), "anna@example.com", "partner-leads", "P1"),  # every 3 days
        ]
        await w.store.set_fields("P1", {"source": "web"}, now=at("2026-11-28T00:00:00"))
        await w.scheduler.tick(at("2026-11-28T00:00:00"))
        assert [s["process"] for s in await w.store.reminder_states()] == ["inbound-leads", "inbound-leads"]
    finally:
        await w.store.close()


async def test_two_daemons_on_postgresql_send_a_run_s_reminder_once(pg_schema: str, tmp_path: Path) -> None:
    # PostgreSQL-only: there several daemons share the work (SQLite runs one daemon)
    w = await open_world((PG_URL, pg_schema), tmp_path, ruleset(ROOT / "rules"), lead("L2"), lead("L3", owner="ben"))
    other = await Store.open(PG_URL, fields=w.rules.settings.fields, schema=pg_schema)
    try:
        second = scheduler.Scheduler(other, w.rules, w.scheduler.transport)
        now = at("2026-11-24T07:00:00")
        reports = await asyncio.gather(w.scheduler.tick(now), second.tick(now), w.scheduler.tick(now))
        assert sum(r.reminders for r in reports) == 2
        assert sorted(to for _d, to in w.sent()) == ["anna@example.com", "ben@example.com"]
    finally:
        await other.close()
        await w.store.close()


async def test_standings_tell_who_is_overdue_and_when_the_next_reminder_goes(world: World) -> None:
    w = world
    process = w.rules.processes["partner-leads"]
    assert await reminding.standings(w.store, w.rules, process, at("2026-11-23T09:00:00")) == []
    await w.scheduler.tick(at("2026-11-24T07:00:00"))
    (s,) = await reminding.standings(w.store, w.rules, process, at("2026-11-24T12:00:00"))
    assert s.record.id == "L2" and s.overdue is not None
    assert (s.overdue.overdue_since, s.overdue.next_reminder, s.overdue.sent) == (
        at("2026-11-23T10:00:00"), at("2026-12-01T07:00:00"), 1)  # fmt: skip
