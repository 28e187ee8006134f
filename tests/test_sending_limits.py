"""A sender's daily limit over a rolling 24 hours: held steps wait for a free slot, and are blocked ("quota
exceeded") when they could not go within a day of when they were due. Engine and store, SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from outreach.app import enrolling, scheduler
from outreach.engine import sequences as seq
from outreach.mail import limits
from outreach.mail import transport as mail_transport
from outreach.rules import model
from outreach.store import Store
from tests.worlds import MONDAY, RULES, Row

UTC = dt.UTC
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
async def test_a_step_that_cannot_go_within_a_day_of_its_due_time_is_blocked_with_quota_exceeded(
    store: Store, tmp_path: Path
) -> None:
    sched = scheduler.Scheduler(store, limited(1), mail_transport.MaildirTransport(str(tmp_path / "outbox")))
    sunday = MONDAY - dt.timedelta(days=1)
    first = await enroll(sched, store, "L1", sunday)  # both due when the window opens: Monday 07:00 UTC
    late = await enroll(sched, store, "L0", sunday)

    report = await sched.tick(MONDAY)  # the daemon was down until 08:00: L1 takes the one slot

    assert (report.queued, report.blocked) == (1, 1)
    row = await store.get_enrollment(late)
    assert row is not None and row["status"] == "blocked"
    # the slot frees Tuesday 08:00 UTC, 25 hours after L0 was due
    assert row["reason"] == "quota exceeded: daily limit of anna reached (1/1)"
    taken = await store.get_enrollment(first)
    assert taken is not None and taken["steps_done"] == 1


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
    late = seq.quota_hold(e, sequence, who, RULES.settings, dataclasses.replace(anna, daily_limit=300), used=300,
                          oldest=MONDAY + dt.timedelta(hours=1), now=MONDAY + dt.timedelta(hours=1))  # fmt: skip
    assert late == seq.Block("quota exceeded: daily limit of anna reached (300/300)")


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
