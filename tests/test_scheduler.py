"""Sequences through the store and the Maildir transport, tick by tick on a virtual clock, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import re
import shutil
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa

from outreach.app import enrolling, events, scheduler
from outreach.app import rules as app_rules
from outreach.engine import events as engine_events
from outreach.engine import sequences as seq
from outreach.mail import links
from outreach.mail import transport as mail_transport
from outreach.rules import loader, timing
from outreach.store import Store, tables
from tests.conftest import FIXTURES, ROOT
from tests.worlds import MONDAY, PEOPLE, RULES, ruleset, seeded_store

pytestmark = pytest.mark.store

UTC = dt.UTC
HOSTILE = FIXTURES / "hostile" / "templates.yaml"
LINKS = links.Links("https://t.example.com", links.Keys((b"k" * 32,)), opens=False, clicks=False)


@dataclasses.dataclass
class World:
    store: Store
    scheduler: scheduler.Scheduler
    outbox: Path

    def mail(self) -> list[object]:
        return mail_transport.read_all(self.outbox) if self.outbox.exists() else []


@pytest.fixture
async def world(backend: tuple[str, str | None], tmp_path: Path) -> AsyncIterator[World]:
    store = await seeded_store(backend, PEOPLE)
    outbox = tmp_path / "outbox"
    sched = scheduler.Scheduler(store, RULES, mail_transport.MaildirTransport(str(outbox)),
                                links=LINKS)  # fmt: skip
    try:
        yield World(store, sched, outbox)
    finally:
        await store.close()


async def enroll(w: World, record_id: str, at: dt.datetime, sequence: str = "inbound-nurture") -> seq.Enrollment:
    record = await w.store.get_record(record_id)
    result = await enrolling.enroll(w.store, RULES, record, RULES.sequences[sequence], enrolled_by="anna", now=at)
    assert isinstance(result, seq.Enrollment), result
    return result


async def status(w: World, enrollment_id: int) -> tuple[str, str | None, int]:
    row = await w.store.get_enrollment(enrollment_id)
    assert row is not None
    return row["status"], row["reason"], row["steps_done"]


async def test_a_sequence_runs_to_the_end_with_business_days_a_thread_and_a_task(world: World) -> None:
    w = world
    e = await enroll(w, "L1", MONDAY)
    report = await w.scheduler.tick(MONDAY)
    assert (report.queued, report.sent) == (1, 1)
    (intro,) = w.mail()
    assert intro["Subject"] == "Quick question, Jo" and intro["To"] == "jo@example.org"
    assert intro["From"] == "Anna Berger <anna@example.com>" and intro["X-Outreach-Step"] == "intro"

    assert str(await w.scheduler.tick(MONDAY + dt.timedelta(days=1))) == "nothing to do"  # Tuesday: waiting
    await w.scheduler.tick(dt.datetime(2026, 11, 25, 8, 0, tzinfo=UTC))  # Wednesday 09:00 Berlin
    nudge = w.mail()[1]
    assert nudge["Subject"] == "Re: Quick question, Jo"
    assert nudge["In-Reply-To"] == intro["Message-ID"] and intro["Message-ID"] in nudge["References"]

    report = await w.scheduler.tick(dt.datetime(2026, 11, 26, 8, 0, tzinfo=UTC))  # Thursday: the call task
    assert report.tasks == 1
    (task,) = await w.store.list_tasks("L1")
    assert task.subject == "Call the lead" and task.type == "call" and task.enrollment_id == e.id
    assert str(await w.scheduler.tick(dt.datetime(2026, 12, 10, 8, 0, tzinfo=UTC))) == "nothing to do"  # waits

    await w.store.complete_task(task.id, now=dt.datetime(2026, 12, 10, 9, 0, tzinfo=UTC))  # Thursday
    await w.scheduler.tick(dt.datetime(2026, 12, 10, 9, 1, tzinfo=UTC))
    assert await status(w, e.id) == ("active", None, 3)
    report = await w.scheduler.tick(dt.datetime(2026, 12, 14, 9, 0, tzinfo=UTC))  # 2 business days: Monday
    assert report.sent == 1 and report.completed == 1
    promo = w.mail()[2]
    assert promo["Subject"] == "What teams like yours do with Example" and "In-Reply-To" not in promo
    (url,) = re.fullmatch(r"<(https://t\.example\.com/u/[^>]+)>", promo["List-Unsubscribe"]).groups()  # type: ignore[union-attr]
    token = links.verify(LINKS.keys, url.rsplit("/", 1)[1])
    assert token.kind == links.UNSUBSCRIBE
    assert b"example.org" not in base64.urlsafe_b64decode(url.rsplit("/", 1)[1])  # the address is not in the URL
    (row,) = [m for m in await w.store.outbox(record_id="L1") if m["step_id"] == "promo"]
    found = await w.store.message_by_link(token.key.hex())
    assert found is not None and found.outbox_id == row["id"] and found.language == "de"
    assert await status(w, e.id) == ("completed", None, 4)
    activity = await w.store.events("L1")
    kinds = [ev.kind for ev in activity]
    assert kinds.count("sequence_email") == 3 and "enrolled" in kinds and "task_created" in kinds
    assert kinds.index("enrolled") < kinds.index("sequence_email")  # same instant: events first, as written
    assert [ev.at for ev in activity] == sorted(ev.at for ev in activity)
    mails = [ev for ev in activity if ev.kind == "sequence_email"]
    assert [(m.data["sequence"], m.data["step"], m.data["subject"]) for m in mails] == [
        ("inbound-nurture", "intro", intro["Subject"]), ("inbound-nurture", "nudge", nudge["Subject"]),
        ("inbound-nurture", "promo", promo["Subject"]),
    ]  # fmt: skip
    assert [m.data["message_id"] for m in mails] == [intro["Message-ID"], nudge["Message-ID"], promo["Message-ID"]]
    async with w.store.engine.connect() as conn:  # the outbox row is the activity: no event row written twice
        written = (await conn.execute(sa.select(sa.func.count()).select_from(tables.events)
                                      .where(tables.events.c.kind == "sequence_email"))).scalar()  # fmt: skip
    assert written == 0


async def test_a_conversion_stops_the_sequence_and_nothing_more_is_sent(world: World) -> None:
    w = world
    e = await enroll(w, "L1", MONDAY)
    await w.scheduler.tick(MONDAY)
    await events.convert(w.store, "L1", now=MONDAY + dt.timedelta(hours=2))
    assert await status(w, e.id) == ("stopped", "converted", 1)
    await w.scheduler.tick(dt.datetime(2026, 11, 30, 8, 0, tzinfo=UTC))
    assert len(w.mail()) == 1


async def test_a_reply_event_stops_every_live_sequence_of_the_person(world: World) -> None:
    w = world
    a = await enroll(w, "W1", MONDAY)
    b = await enroll(w, "W1", MONDAY, "welcome")
    done = await events.record(w.store, "W1", engine_events.Kind.REPLIED, now=MONDAY + dt.timedelta(hours=1))
    assert done.stopped == 2
    assert (await status(w, a.id))[:2] == ("stopped", "replied") == (await status(w, b.id))[:2]


async def test_a_missing_merge_field_blocks_with_the_reason_and_a_retry_sends(world: World) -> None:
    w = world
    e = await enroll(w, "L2", MONDAY)
    report = await w.scheduler.tick(MONDAY)
    assert report.blocked == 1 and w.mail() == []
    assert await status(w, e.id) == ("blocked", "missing merge field record.first_name", 0)
    await w.store.set_fields("L2", {"first_name": "Kim"}, now=MONDAY + dt.timedelta(hours=1))
    again = await enrolling.retry(w.store, e.id, now=MONDAY + dt.timedelta(hours=1))
    assert again["status"] == "active" and again["reason"] is None
    assert (await w.scheduler.tick(MONDAY + dt.timedelta(hours=1))).sent == 1
    assert w.mail()[0]["Subject"] == "Quick question, Kim"


async def test_a_template_past_the_render_limits_blocks_with_the_reason_and_the_others_go_on(world: World) -> None:
    """As a missing merge field does: the slow template's enrollment is blocked after its render time, the
    others are sent in the same tick."""
    w = world
    hostile = {doc.data["name"]: doc.data["text"] for doc in loader.read_file(str(HOSTILE))[0]}
    intro = dataclasses.replace(RULES.templates["intro"], text=hostile["nested-ranges"])
    w.scheduler = scheduler.Scheduler(w.store, dataclasses.replace(RULES, templates={**RULES.templates, "intro": intro}),
                                      mail_transport.MaildirTransport(str(w.outbox)), links=LINKS)  # fmt: skip
    slow = await enroll(w, "L1", MONDAY)
    good = await enroll(w, "W1", MONDAY, "welcome")
    report = await w.scheduler.tick(MONDAY)
    assert report.blocked == 1 and report.sent == 1
    assert await status(w, slow.id) == ("blocked", "template intro went past a limit: it took longer than 1 s to "
                                        "render (Settings limits.render_time)", 0)  # fmt: skip
    assert await status(w, good.id) == ("active", None, 1)


async def test_a_batch_of_slow_steps_is_written_in_parts_and_the_tick_goes_on_at_the_same_time(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon restarted in the middle of slow renders (by systemd's watchdog, say) keeps what was done."""
    w = world
    hostile = {doc.data["name"]: doc.data["text"] for doc in loader.read_file(str(HOSTILE))[0]}
    intro = dataclasses.replace(RULES.templates["intro"], text=hostile["nested-ranges"])
    w.scheduler = scheduler.Scheduler(w.store, dataclasses.replace(RULES, templates={**RULES.templates, "intro": intro}),
                                      mail_transport.MaildirTransport(str(w.outbox)), links=LINKS)  # fmt: skip
    monkeypatch.setattr(scheduler, "BATCH_SECONDS", 0.0)
    batches = 0
    real = w.store.due_batch

    def counted(now: dt.datetime, limit: int) -> object:
        nonlocal batches
        batches += 1
        return real(now, limit)

    monkeypatch.setattr(w.store, "due_batch", counted)
    slow = [await enroll(w, record, MONDAY) for record in ("L1", "W1")]
    report = await w.scheduler.tick(MONDAY)
    assert report.blocked == 2 and batches == 2  # one step each, written apart
    assert [(await status(w, e.id))[0] for e in slow] == ["blocked", "blocked"]


async def test_without_a_send_window_a_plain_day_after_friday_is_sent_on_monday_not_on_saturday(world: World) -> None:
    # issue 18, item 5: a Monday-Friday calendar holds for every send, windowed or not
    w = world
    calendars = dict(RULES.settings.calendars)
    calendars["default"] = dataclasses.replace(calendars["default"], send_window=None)
    nurture = RULES.sequences["inbound-nurture"]
    daily = dataclasses.replace(nurture, steps=(
        nurture.steps[0], dataclasses.replace(nurture.steps[1], wait=timing.parse_duration("1 day")), *nurture.steps[2:]
    ))  # fmt: skip
    rules = dataclasses.replace(RULES, settings=dataclasses.replace(RULES.settings, calendars=calendars),
                                sequences={**RULES.sequences, "inbound-nurture": daily})  # fmt: skip
    sched = scheduler.Scheduler(w.store, rules, mail_transport.MaildirTransport(str(w.outbox)), links=LINKS)
    friday = dt.datetime(2026, 11, 27, 10, 0, tzinfo=UTC)  # 11:00 in Berlin
    record = await w.store.get_record("L1")
    assert isinstance(await enrolling.enroll(w.store, rules, record, daily, enrolled_by="anna", now=friday),
                      seq.Enrollment)  # fmt: skip
    assert (await sched.tick(friday)).sent == 1
    for weekend in (friday + dt.timedelta(days=1), friday + dt.timedelta(days=2, hours=12)):
        assert str(await sched.tick(weekend)) == "nothing to do"
    monday = dt.datetime(2026, 11, 29, 23, 0, tzinfo=UTC)  # 00:00 in Berlin
    assert (await sched.tick(monday)).sent == 1
    assert [m["X-Outreach-Step"] for m in w.mail()] == ["intro", "nudge"]


async def test_refusals_duplicate_and_unsubscribed(world: World) -> None:
    w = world
    await enroll(w, "L1", MONDAY)
    record = await w.store.get_record("L1")
    nurture = RULES.sequences["inbound-nurture"]
    assert await enrolling.enroll(w.store, RULES, record, nurture, enrolled_by="anna", now=MONDAY) == (
        "jo@example.org is already active in inbound-nurture"
    )
    await events.unsubscribe(w.store, "W1", now=MONDAY)
    mila = await w.store.get_record("W1")
    why = await enrolling.enroll(w.store, RULES, mila, nurture, enrolled_by="anna", now=MONDAY + dt.timedelta(days=1))
    assert why == "mila@example.org unsubscribed on 2026-11-23 08:00 UTC and cannot be enrolled"


async def test_auto_enrollment_enrolls_each_record_once_per_version_as_its_owner(world: World) -> None:
    w = world
    assert (await w.scheduler.tick(MONDAY)).enrolled == 0
    await w.store.set_fields("W1", {"source": "website"}, now=MONDAY + dt.timedelta(minutes=1))  # a sign-up
    report = await w.scheduler.tick(MONDAY + dt.timedelta(minutes=2))
    assert report.enrolled == 1
    (welcome,) = w.mail()
    assert welcome["To"] == "mila@example.org" and welcome["From"] == "Anna Berger <anna@example.com>"
    (row,) = await w.store.enrollments(record_id="W1")
    await enrolling.stop(w.store, enrollment_id=row["id"], by="anna", now=MONDAY)
    await w.store.set_fields("W1", {"score": 5}, now=MONDAY + dt.timedelta(minutes=5))  # changed after the last look
    assert (await w.scheduler.tick(MONDAY + dt.timedelta(minutes=6))).enrolled == 0
    fresh = scheduler.Scheduler(w.store, RULES, w.scheduler.transport)  # a restarted daemon looks at everything
    assert (await fresh.tick(MONDAY + dt.timedelta(minutes=10))).enrolled == 0
    assert len(await w.store.enrollments(record_id="W1")) == 1


class FlakyTransport:
    """A relay that answers with temporary failures first, then accepts; or refuses for good."""

    def __init__(self, failures: int, permanent: bool = False) -> None:
        self.failures, self.permanent, self.sent = failures, permanent, 0

    async def send(self, sender: str, recipients: Sequence[str], message: bytes) -> mail_transport.SendResult:
        if self.permanent:
            return mail_transport.SendResult(False, permanent=True, detail="550 5.1.1 no such user")
        if self.failures:
            self.failures -= 1
            return mail_transport.SendResult(False, detail="451 4.3.0 try again later")
        self.sent += 1
        return mail_transport.SendResult(True)

    async def close(self) -> None:
        pass


async def test_a_temporary_failure_is_retried_later_and_a_permanent_one_blocks(world: World) -> None:
    w = world
    flaky = FlakyTransport(failures=1)
    w.scheduler.transport = flaky
    await enroll(w, "L1", MONDAY)
    report = await w.scheduler.tick(MONDAY)
    assert (report.queued, report.sent, report.deferred) == (1, 0, 1)
    assert (await w.scheduler.tick(MONDAY + dt.timedelta(seconds=30))).sent == 0  # backoff: not yet
    assert (await w.scheduler.tick(MONDAY + dt.timedelta(minutes=2))).sent == 1
    assert [m["state"] for m in await w.store.outbox()] == ["sent"]

    w.scheduler.transport = FlakyTransport(0, permanent=True)
    e = await enroll(w, "W1", MONDAY, "welcome")
    assert (await w.scheduler.tick(MONDAY + dt.timedelta(minutes=3))).failed == 1
    assert await status(w, e.id) == ("blocked", "undeliverable: 550 5.1.1 no such user", 1)


async def test_a_message_being_sent_at_a_crash_is_never_sent_twice(world: World) -> None:
    w = world
    await enroll(w, "L1", MONDAY)
    await w.scheduler.run_due(MONDAY, scheduler.TickReport())
    claimed = await w.store.claim_outbox(MONDAY, 10, "attempt-1")  # marked `sending` ... and the daemon dies here
    assert len(claimed) == 1
    assert await w.store.recover_outbox() == 1  # the next start
    assert (await w.scheduler.tick(MONDAY + dt.timedelta(minutes=1))).sent == 0
    assert w.mail() == [] and [m["state"] for m in await w.store.outbox(state="unknown")] == ["unknown"]
    assert await w.store.requeue([claimed[0]["id"]]) == 1  # an operator decides
    assert (await w.scheduler.tick(MONDAY + dt.timedelta(minutes=2))).sent == 1


async def test_next_step_edits_move_enrollments_after_their_next_step(world: World, tmp_path: Path) -> None:
    w = world
    e = await enroll(w, "L1", MONDAY)
    await w.scheduler.tick(MONDAY)  # intro sent on version 1
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    path = rules / "sequences" / "inbound-nurture.yaml"
    text = path.read_text().replace("on_edit: pin", "on_edit: next_step")
    path.write_text(
        text.replace(
            "  - {id: call,  task: Call the lead, task_type: call, wait: 1 business day, due_within: 4h}\n", ""
        )
    )
    edited = ruleset(rules)
    await app_rules.apply(w.store, edited, now=MONDAY + dt.timedelta(hours=1))
    w.scheduler = scheduler.Scheduler(w.store, edited, w.scheduler.transport)
    await w.scheduler.tick(dt.datetime(2026, 11, 25, 8, 0, tzinfo=UTC))  # the nudge, then onto the new version
    row = await w.store.get_enrollment(e.id)
    assert row is not None and row["sequence_hash"] == edited.sequences["inbound-nurture"].source.hash
    assert row["step_index"] == 2 and row["next_due_at"] == dt.datetime(2026, 11, 27, 8, 0, tzinfo=UTC)  # promo


async def test_one_enrollment_that_fails_is_blocked_and_the_others_go_on(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    bad = await enroll(w, "L1", MONDAY)
    good = await enroll(w, "W1", MONDAY)
    real = seq.decide

    def decide(e: seq.Enrollment, *args: object, **kwargs: object) -> seq.Decision:
        if e.id == bad.id:
            raise RuntimeError("a bug")
        return real(e, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(seq, "decide", decide)
    report = await w.scheduler.tick(MONDAY)
    assert report.sent == 1 and report.blocked == 1
    assert await status(w, bad.id) == ("blocked", "internal error: RuntimeError: a bug", 0)
    assert (await status(w, good.id))[0] == "active"


class BrokenTransport:
    async def send(self, sender: str, recipients: Sequence[str], message: bytes) -> mail_transport.SendResult:
        raise ConnectionResetError("the relay hung up")

    async def close(self) -> None:
        pass


async def test_a_transport_that_raises_defers_the_message(world: World) -> None:
    w = world
    w.scheduler.transport = BrokenTransport()
    await enroll(w, "L1", MONDAY)
    report = await w.scheduler.tick(MONDAY)
    assert report.deferred == 1
    (m,) = await w.store.outbox()
    assert m["state"] == "deferred" and "ConnectionResetError: the relay hung up" in m["last_error"]


async def test_an_edited_sequence_does_not_enroll_again_those_who_had_it(world: World, tmp_path: Path) -> None:
    w = world
    await w.store.set_fields("W1", {"source": "website"}, now=MONDAY)
    assert (await w.scheduler.tick(MONDAY + dt.timedelta(minutes=1))).enrolled == 1
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    path = rules / "sequences" / "welcome.yaml"
    path.write_text(path.read_text().replace("wait: 3 days", "wait: 4 days"))
    edited = ruleset(rules)
    await app_rules.apply(w.store, edited, now=MONDAY + dt.timedelta(hours=1))
    w.scheduler = scheduler.Scheduler(w.store, edited, w.scheduler.transport)
    assert (await w.scheduler.tick(MONDAY + dt.timedelta(hours=2))).enrolled == 0
    assert len(w.mail()) == 1  # one welcome, not two


async def test_an_enrollment_that_fails_half_way_leaves_no_message_behind(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    e = await enroll(w, "L1", MONDAY)

    def after_step(*args: object, **kwargs: object) -> seq.Enrollment:
        raise RuntimeError("after the message was queued")

    monkeypatch.setattr(seq, "after_step", after_step)
    report = await w.scheduler.tick(MONDAY)
    assert report.blocked == 1 and report.sent == 0
    assert await w.store.outbox() == [] and w.mail() == []
    assert (await status(w, e.id))[1] == "internal error: RuntimeError: after the message was queued"
