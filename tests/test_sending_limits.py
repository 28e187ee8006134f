"""A sender's daily limit over a rolling 24 hours: held steps wait for the next working day's allowance, however
many days that takes (never blocked for it), and `outreach enroll`'s forecast says how many go on which day.
Engine and store, SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from outreach import calendar
from outreach.app import enrolling, scheduler
from outreach.engine import sequences as seq
from outreach.mail import limits
from outreach.mail import transport as mail_transport
from outreach.rules import model, timing
from outreach.store import Store, rows
from tests.worlds import MONDAY, RULES, Row

UTC = dt.UTC
BERLIN = timing.zone("Europe/Berlin")
PEOPLE = tuple(
    Row(n + 2, f"L{n}", "lead", f"p{n}@example.org", {"first_name": f"P{n}", "owner": "anna"}) for n in range(4)
)


def limited(limit: int) -> model.RuleSet:
    users = dict(RULES.settings.users)
    users["anna"] = dataclasses.replace(users["anna"], daily_limit=limit)
    return dataclasses.replace(RULES, settings=dataclasses.replace(RULES.settings, users=users))


@pytest.fixture
def store(people_store: Store) -> Store:
    """The example rules' store with this module's PEOPLE (conftest.py)."""
    return people_store


async def enroll(sched: scheduler.Scheduler, store: Store, record_id: str, at: dt.datetime) -> int:
    record = await store.get_record(record_id)
    result = await enrolling.enroll(sched.store, sched.ruleset, record, sched.ruleset.sequences["inbound-nurture"],
                                   enrolled_by="anna", now=at)
    assert isinstance(result, seq.Enrollment), result
    return result.id


@pytest.mark.store
async def test_steps_over_the_daily_limit_wait_for_a_free_slot_and_say_why(store: Store, tmp_path: Path) -> None:
    sched = scheduler.Scheduler(store, limited(2), mail_transport.MaildirTransport(str(tmp_path / "outbox")))
    ids = [await enroll(sched, store, f"L{n}", MONDAY) for n in range(4)]

    report = await sched.tick(MONDAY)

    assert (report.queued, report.held) == (2, 2)
    held = [await store.get_enrollment(i) for i in ids[2:]]
    for row in held:
        assert row is not None and row["status"] == "active"
        assert row["reason"] == "waiting: daily limit of anna reached (2/2)"
        assert row["next_due_at"] == MONDAY + dt.timedelta(days=1)  # when the first of the two turns 24 hours old
    line = seq.widget_line(enrolling.enrollment_of(held[0]), RULES.sequences["inbound-nurture"])  # type: ignore[arg-type]
    assert line.detail == "waiting: daily limit of anna reached (2/2); next mail 2026-11-24 08:00 UTC"

    assert str(await sched.tick(MONDAY + dt.timedelta(hours=23))) == "nothing to do"
    report = await sched.tick(MONDAY + dt.timedelta(days=1))

    assert report.queued == 2
    for i in ids[2:]:
        row = await store.get_enrollment(i)
        assert row is not None and row["steps_done"] == 1 and row["reason"] is None
    assert len(await store.outbox()) == 4


@pytest.mark.store
async def test_mail_over_the_limit_for_days_waits_for_each_working_day_s_allowance_and_is_never_blocked(
    store: Store, tmp_path: Path
) -> None:
    # issue 18, item 8: one a day for anna; enrolled on a Thursday, the third goes on Monday, not Saturday
    sched = scheduler.Scheduler(store, limited(1), mail_transport.MaildirTransport(str(tmp_path / "outbox")))
    thursday = MONDAY + dt.timedelta(days=3)
    ids = [await enroll(sched, store, f"L{n}", thursday) for n in range(3)]

    def day(n: int) -> dt.datetime:
        return thursday + dt.timedelta(days=n)

    assert ((report := await sched.tick(day(0))).queued, report.held, report.blocked) == (1, 2, 0)
    assert ((report := await sched.tick(day(1))).queued, report.held, report.blocked) == (1, 1, 0)  # Friday
    row = await store.get_enrollment(ids[2])
    assert row is not None and (row["status"], row["reason"]) == ("active", "waiting: daily limit of anna reached (1/1)")
    monday = dt.datetime(2026, 11, 30, 7, 0, tzinfo=UTC)  # 08:00 in Berlin: the window opens
    assert row["next_due_at"] == monday  # the slot frees on Saturday: the next working day's window
    assert str(await sched.tick(day(2))) == "nothing to do"  # Saturday
    assert (await sched.tick(monday)).queued == 1
    for i in ids:
        row = await store.get_enrollment(i)
        assert row is not None and (row["status"], row["steps_done"], row["reason"]) == ("active", 1, None)


@pytest.mark.unit
def test_quota_hold_lets_mail_go_under_the_limit_and_without_one() -> None:
    sequence = RULES.sequences["inbound-nurture"]
    who = seq.Recipient("L0", "lead", "p0@example.org", "anna", None, {})
    e = seq.enroll(1, who, sequence, RULES.settings, enrolled_by="anna", now=MONDAY)
    anna = RULES.settings.users["anna"]

    def hold(limit: int | None, used: int) -> seq.Wait | seq.Block | None:
        user = dataclasses.replace(anna, daily_limit=limit)
        return seq.quota_hold(e, sequence, who, RULES.settings, user, used=used, oldest=MONDAY, now=MONDAY)

    assert hold(None, 10_000) is None
    assert hold(300, 299) is None
    assert hold(300, 300) == seq.Wait(MONDAY + dt.timedelta(days=1), "waiting: daily limit of anna reached (300/300)")
    # a day late, and more: it waits still (it used to be blocked), for a working day inside the window
    late = seq.quota_hold(e, sequence, who, RULES.settings, dataclasses.replace(anna, daily_limit=300), used=300,
                          oldest=MONDAY + dt.timedelta(days=4, hours=10), now=MONDAY + dt.timedelta(days=4, hours=12))  # fmt: skip
    assert late == seq.Wait(dt.datetime(2026, 11, 30, 7, 0, tzinfo=UTC), "waiting: daily limit of anna reached (300/300)")


def capped(caps: dict[str, int]) -> model.RuleSet:
    settings = RULES.settings
    return dataclasses.replace(RULES, settings=dataclasses.replace(
        settings, limits=dataclasses.replace(settings.limits, domains=caps)))  # fmt: skip


@pytest.mark.store
async def test_mail_over_a_domains_hourly_cap_waits_in_the_outbox_without_using_an_attempt(
    store: Store, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    sched = scheduler.Scheduler(store, capped({"EXAMPLE.org": 2}), mail_transport.MaildirTransport(str(outbox)))
    for n in range(4):
        await enroll(sched, store, f"L{n}", MONDAY)

    report = await sched.tick(MONDAY)

    assert (report.queued, report.sent, report.held) == (4, 2, 2)
    waiting = [m for m in await store.outbox() if m["state"] == "deferred"]
    assert [m["last_error"] for m in waiting] == ["waiting: at most 2 messages an hour to example.org"] * 2
    assert [m["attempts"] for m in waiting] == [0, 0]
    assert [m["next_attempt_at"] for m in waiting] == [MONDAY + dt.timedelta(hours=1)] * 2
    assert (await sched.tick(MONDAY + dt.timedelta(minutes=59))).sent == 0
    assert (await sched.tick(MONDAY + dt.timedelta(hours=1))).sent == 2
    assert len(mail_transport.read_all(outbox)) == 4


@pytest.mark.unit
def test_domain_caps_count_a_sliding_hour_per_domain() -> None:
    caps = limits.DomainCaps({"gmail.com": 2})
    assert caps.take("a@gmail.com", MONDAY) is None
    assert caps.take("b@GMAIL.com", MONDAY + dt.timedelta(minutes=10)) is None
    assert caps.take("c@gmail.com", MONDAY + dt.timedelta(minutes=20)) == MONDAY + dt.timedelta(hours=1)
    assert caps.take("d@example.org", MONDAY) is None  # no cap on other domains
    assert caps.take("c@gmail.com", MONDAY + dt.timedelta(hours=1)) is None  # the first left the hour
    assert caps.take("e@gmail.com", MONDAY + dt.timedelta(hours=1)) == MONDAY + dt.timedelta(minutes=70)


# --- the forecast of `outreach enroll` (issue 18, item 8) ------------------------------------------------------


def _first_mails(n: int, due: dt.datetime, user: model.User, *, new: bool = True) -> list[seq.FirstMail]:
    cal = RULES.settings.calendar("default")  # Monday to Friday, DE-BE holidays, 08:00-18:00 Berlin
    return [seq.FirstMail(user, due, cal, calendar.zone_for(None, cal, "Europe/Berlin"), new=new)] * n


@pytest.mark.unit
def test_the_forecast_spreads_twenty_thousand_first_mails_over_working_days_at_the_daily_limit() -> None:
    anna = RULES.settings.users["anna"]  # daily_limit: 300
    found = seq.limit_forecast(_first_mails(20_000, MONDAY, anna), queued={}, day_zone=BERLIN)
    (f,) = found.senders
    assert (f.sender, f.limit, f.used, f.ahead, f.held) == ("anna", 300, 0, 0, 19_700)
    assert len(f.days) == 67 and [n for _, n in f.days] == [300] * 66 + [200]
    assert f.days[0] == (dt.date(2026, 11, 23), 300) and f.days[-1] == (dt.date(2027, 2, 25), 200)
    cal = RULES.settings.calendar("default")
    assert all(calendar.is_working_day(day, cal) for day, _ in f.days)  # no weekend, no holiday
    assert {dt.date(2026, 11, 28), dt.date(2026, 12, 25), dt.date(2027, 1, 1)}.isdisjoint(dict(f.days))
    assert found.times[299] == MONDAY and found.times[300] == MONDAY + dt.timedelta(days=1)
    # the sixth day is Monday the 30th, when the window opens (Friday's 300 freed their slots on Saturday)
    assert found.times[1500] == dt.datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
    assert f.last == found.times[-1] == dt.datetime(2027, 2, 25, 7, 0, tzinfo=UTC)  # 08:00 Berlin, winter time


@pytest.mark.unit
def test_the_forecast_counts_what_was_queued_in_the_24_hours_before_and_what_already_waits() -> None:
    anna, ben = RULES.settings.users["anna"], dataclasses.replace(RULES.settings.users["ben"], daily_limit=None)
    sunday_night = MONDAY - dt.timedelta(hours=12)
    queued = {"anna@example.com": [(MONDAY - dt.timedelta(days=2), 300), (sunday_night, 120)]}
    mails = [*_first_mails(400, MONDAY, anna), *_first_mails(5, MONDAY, ben)]
    found = seq.limit_forecast(mails, queued=queued, day_zone=BERLIN)
    (f,) = found.senders  # ben has no limit: his mail goes when it is due
    assert (f.used, f.held, f.days) == (120, 220, ((dt.date(2026, 11, 23), 180), (dt.date(2026, 11, 24), 220)))
    # the 120 of Sunday night leave the 24 hours at 20:00 Monday, after the window: Tuesday's opening
    assert found.times[180] == dt.datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
    assert found.times[300] == MONDAY + dt.timedelta(days=1)  # and Monday's 180 at 08:00
    assert found.times[-5:] == (MONDAY,) * 5
    # 250 already scheduled for anna at the same time go first; 250 of Tuesday leave Monday's 50 slots
    scheduled = [*_first_mails(250, MONDAY, anna, new=False), *_first_mails(250, MONDAY + seq.DAY, anna, new=False)]
    found = seq.limit_forecast([*scheduled, *_first_mails(100, MONDAY, anna)], queued={}, day_zone=BERLIN)
    (f,) = found.senders
    assert (f.ahead, f.held, f.days) == (500, 50, ((dt.date(2026, 11, 23), 50), (dt.date(2026, 11, 24), 50)))
    assert found.times[-1] == MONDAY + seq.DAY  # beside the 250 scheduled for Tuesday 08:00
    assert seq.limit_forecast(_first_mails(3, MONDAY, ben), queued={}, day_zone=BERLIN).senders == ()


@pytest.mark.store
async def test_the_outlook_of_an_enrollment_reads_what_was_queued_and_what_is_scheduled_for_the_sender(
    store: Store, tmp_path: Path
) -> None:
    rules = limited(2)
    sched = scheduler.Scheduler(store, rules, mail_transport.MaildirTransport(str(tmp_path / "outbox")))
    for n in range(4):
        await enroll(sched, store, f"L{n}", MONDAY)
    assert ((report := await sched.tick(MONDAY)).queued, report.held) == (2, 2)  # L2 and L3 wait for Tuesday
    tuesday, wednesday = MONDAY + dt.timedelta(days=1), MONDAY + dt.timedelta(days=2)
    assert sorted(await store.scheduled_steps(), key=lambda g: g.due) == [
        rows.ScheduledSteps("inbound-nurture", 0, "anna", "anna", tuesday, 2),  # held back by the limit
        rows.ScheduledSteps("inbound-nurture", 1, "anna", "anna", wednesday, 2),  # L0's and L1's nudges
    ]
    assert await store.queued_by_sender(MONDAY - seq.DAY, ["anna@example.com", "x@example.com"]) == {
        "anna@example.com": [(MONDAY, 2)]}
    # welcome sends as the record's owner, anna, on a calendar of every day: L0's would be due at once
    welcome = rules.sequences["welcome"]
    later = MONDAY + dt.timedelta(hours=1)
    results = await enrolling.enroll_many(store, rules, welcome, record_ids=["L0"], enrolled_by="anna", now=later,
                                          dry_run=True)  # fmt: skip
    outlook = await enrolling.limit_outlook(store, rules, welcome, results, now=later)
    assert outlook is not None
    (f,) = outlook.senders
    assert (f.sender, f.used, f.ahead, f.held) == ("anna", 2, 4, 1)
    # Tuesday's two slots go to L2 and L3, who waited first, Wednesday's to the nudges: Thursday
    thursday = MONDAY + dt.timedelta(days=3)
    assert outlook.first_mails == {"L0": (later, thursday)}
    tally = enrolling.tally(results, outlook)
    assert tally.limits == (f,) and tally.held == {"L0": thursday}
    # enrolled for real, it is not counted twice (the store's scheduled steps have it now)
    done = await enrolling.enroll_many(store, rules, welcome, record_ids=["L0"], enrolled_by="anna", now=later)
    again = await enrolling.limit_outlook(store, rules, welcome, done, now=later)
    assert again is not None and again.senders == outlook.senders and again.first_mails == outlook.first_mails
    assert await enrolling.limit_outlook(store, RULES, welcome, [], now=later) is None
