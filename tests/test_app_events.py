"""The application layer's use cases over a real store, on SQLite and PostgreSQL: an event and what it means are
written together (outreach/app/events.py), enrollments are enrolled, stopped and retried (app/enrolling.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator

import pytest

from outreach import store as store_module
from outreach.app import enrolling, events
from outreach.app import importing as import_rows
from outreach.app import rules as app_rules
from outreach.engine import events as engine_events
from outreach.engine import sequences as seq
from outreach.rules import criteria, model
from outreach.store import Store, changes
from tests.worlds import RULES

pytestmark = pytest.mark.store

MONDAY = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
LATER = MONDAY + dt.timedelta(hours=3)

NURTURE = RULES.sequences["inbound-nurture"]
WELCOME = RULES.sequences["welcome"]
PEOPLE = (
    import_rows.Row(2, "L1", "lead", "jo@example.org", {"first_name": "Jo", "owner": "anna", "country": "DE"}),
    import_rows.Row(3, "L2", "lead", "kim@example.net", {"first_name": "Kim", "owner": "ben", "country": "DE"}),
    import_rows.Row(4, "C1", "contact", "Sam@Example.com", {"first_name": "Sam", "owner": "anna", "country": "AT"}),
)


@pytest.fixture
async def store(backend: tuple[str, str | None]) -> AsyncIterator[Store]:
    url, schema = backend
    s = await Store.open(url, fields=RULES.settings.fields, upgrade=True, schema=schema)
    try:
        result = await s.import_records(PEOPLE, now=MONDAY - dt.timedelta(days=1))
        assert result.committed
        await app_rules.apply(s, RULES, now=MONDAY - dt.timedelta(days=1))
        yield s
    finally:
        await s.close()


async def enrolled(store: Store, record_id: str, sequence: model.Sequence = NURTURE) -> seq.Enrollment:
    record = await store.get_record(record_id)
    e = await enrolling.enroll(store, RULES, record, sequence, enrolled_by="anna", now=MONDAY)
    assert isinstance(e, seq.Enrollment), e
    return e


async def state(store: Store, enrollment_id: int) -> tuple[str, str | None]:
    row = await store.get_enrollment(enrollment_id)
    assert row is not None
    return row["status"], row["reason"]


async def kinds(store: Store, record_id: str) -> list[str]:
    return [e.kind for e in await store.events(record_id)]


# --- events on a record ----------------------------------------------------------------------------------


async def test_an_unsubscribe_stops_every_live_sequence_and_suppresses_the_address_once(store: Store) -> None:
    a, b = await enrolled(store, "L1"), await enrolled(store, "L1", WELCOME)
    other = await enrolled(store, "L2")
    done = await events.unsubscribe(store, "L1", now=LATER, source="web")
    assert done == events.Recorded(stopped=2, suppressed=("jo@example.org",))
    assert await state(store, a.id) == ("stopped", "unsubscribed") == await state(store, b.id)
    assert await state(store, other.id) == ("active", None)
    assert await store.unsubscribed_at("jo@example.org") == LATER
    assert (await kinds(store, "L1")).count("unsubscribed") == 1
    again = await events.unsubscribe(store, "L1", now=LATER + dt.timedelta(hours=1), source="web")
    assert again == events.Recorded(stopped=0, suppressed=())  # a second one is recorded, and changes nothing
    assert await store.unsubscribed_at("jo@example.org") == LATER  # the first time stays
    refused = await enrolling.enroll(store, RULES, await store.get_record("L1"), NURTURE, enrolled_by="anna",
                                     now=LATER + dt.timedelta(days=1))  # fmt: skip
    assert refused == "jo@example.org unsubscribed on 2026-11-23 11:00 UTC and cannot be enrolled"


async def test_a_complaint_stops_the_sequences_and_suppresses_with_its_own_reason(store: Store) -> None:
    e = await enrolled(store, "C1")
    done = await events.complaint(store, "C1", now=LATER, data={"feedback": "abuse"}, source="imap")
    assert done == events.Recorded(stopped=1, suppressed=("sam@example.com",))
    assert await state(store, e.id) == ("stopped", "complained")
    (event,) = [x for x in await store.events("C1") if x.kind == "complained"]
    assert event.data == {"feedback": "abuse"} and event.source == "imap"


async def test_an_open_or_a_click_is_activity_only(store: Store) -> None:
    e = await enrolled(store, "L1")
    assert await events.opened(store, "L1", now=LATER, data={"campaign": None}) == events.Recorded()
    assert await events.clicked(store, "L1", now=LATER) == events.Recorded()
    assert await state(store, e.id) == ("active", None)
    assert (await kinds(store, "L1"))[-2:] == ["opened", "clicked"]
    assert await store.unsubscribed_at("jo@example.org") is None


async def test_an_event_on_no_record_writes_nothing(store: Store) -> None:
    with pytest.raises(store_module.NotFound, match="no record 'X9'"):
        await events.unsubscribe(store, "X9", now=LATER)
    assert await store.events("X9") == []


async def test_the_event_and_what_it_means_are_written_together_or_not_at_all(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    e = await enrolled(store, "L1")

    async def disk_full(*_args: object) -> bool:
        raise OSError("disk full")

    monkeypatch.setattr(changes.Changes, "suppress", disk_full)  # fails after the event and the stop are written
    with pytest.raises(OSError, match="disk full"):
        await events.unsubscribe(store, "L1", now=LATER)
    assert await state(store, e.id) == ("active", None)
    assert "unsubscribed" not in await kinds(store, "L1")
    assert await store.unsubscribed_at("jo@example.org") is None


async def test_a_conversion_turns_a_lead_into_a_contact_and_stops_its_sequences(store: Store) -> None:
    e = await enrolled(store, "L1")
    contact = await events.convert(store, "L1", now=LATER)
    assert (contact.type, contact.converted_at, contact.updated_at) == ("contact", LATER, LATER)
    assert await state(store, e.id) == ("stopped", "converted")
    with pytest.raises(store_module.StoreError, match="'L1' is a contact; only leads are converted"):
        await events.convert(store, "L1", now=LATER)
    with pytest.raises(store_module.NotFound):
        await events.convert(store, "nobody", now=LATER)
    assert (await kinds(store, "L1")).count("converted") == 1


async def test_a_deletion_hides_the_record_and_stops_its_sequences(store: Store) -> None:
    e = await enrolled(store, "L2")
    done = await events.delete(store, "L2", now=LATER)
    assert done.stopped == 1 and await state(store, e.id) == ("stopped", "deleted")
    assert "L2" not in [r.id for r in await store.list_records(now=LATER)]
    with pytest.raises(store_module.NotFound):
        await events.delete(store, "L2", now=LATER)
    with pytest.raises(store_module.NotFound):
        await events.convert(store, "L2", now=LATER)  # a deleted lead is converted no more


async def test_a_stage_change_task_and_appointment_are_activity(store: Store) -> None:
    e = await enrolled(store, "L1")
    record = await events.set_fields(store, "L1", {"stage": "Contacted"}, now=LATER)
    assert record.stage == "Contacted" and record.stage_entered_at == LATER
    task = await events.add_task(store, "L1", "Call Jo", now=LATER, owner="anna")
    await events.complete_task(store, task.id, now=LATER + dt.timedelta(hours=1))
    meeting = await events.add_appointment(store, "L1", LATER + dt.timedelta(days=2), "Demo", now=LATER)
    assert meeting.subject == "Demo"
    assert await state(store, e.id) == ("active", None)
    assert [k for k in await kinds(store, "L1") if k != "enrolled"] == [
        "stage_changed", "updated", "task_created", "appointment", "task_completed",
    ]  # fmt: skip  (in time order: the task was done an hour later)


async def test_record_refuses_the_kinds_that_change_the_record(store: Store) -> None:
    with pytest.raises(ValueError, match="use convert"):
        await events.record(store, "L1", engine_events.Kind.CONVERTED, now=LATER)


# --- enrolling, stopping and retrying by hand -------------------------------------------------------------


async def test_enroll_many_takes_ids_and_criteria_and_says_who_was_refused(store: Store) -> None:
    await enrolled(store, "L2")
    seen: list[tuple[int, int]] = []
    where = criteria.Leaf("country", criteria.Op.EQ, "DE")
    results = await enrolling.enroll_many(store, RULES, NURTURE, record_ids=["C1", "nobody"], where=where,
                                          enrolled_by="anna", now=MONDAY, progress=lambda *p: seen.append(p))  # fmt: skip
    outcome = {rid: (r if isinstance(r, str) else r.status) for rid, r in results}
    assert outcome == {
        "nobody": "no record 'nobody'", "C1": seq.Status.ACTIVE, "L1": seq.Status.ACTIVE,
        "L2": "kim@example.net is already active in inbound-nurture",
    }  # fmt: skip
    assert [rid for rid, _ in results] == ["nobody", "C1", "L1", "L2"]
    assert seen == [(3, 3)]  # one chunk
    refused = dict(results)
    assert isinstance(refused["L2"], seq.Refusal) and refused["L2"].kind == "already_active"
    (event,) = [x for x in await store.events("L1") if x.kind == "enrolled"]
    assert event.data == {"sequence": "inbound-nurture", "enrollment": refused["L1"].id, "by": "anna"}  # type: ignore[union-attr]
    live = await store.enrollments(sequence="inbound-nurture", live_only=True)
    assert sorted(e["record_id"] for e in live) == ["C1", "L1", "L2"]
    assert {e["id"] for e in live} >= {r.id for r in refused.values() if isinstance(r, seq.Enrollment)}
    t = enrolling.tally(results)
    assert (t.enrolled, t.refused) == (2, {"no_record": 1, "already_active": 1})
    assert t.first_mail == t.last_mail == refused["L1"].next_due_at  # type: ignore[union-attr]


async def test_enroll_many_writes_in_chunks_and_enrolls_a_shared_address_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(enrolling, "MANY_CHUNK", 2)
    more = [import_rows.Row(10 + i, f"X{i}", "lead", f"x{i % 4}@example.org", {"owner": "anna", "country": "FR"})
            for i in range(7)]  # fmt: skip
    assert (await store.import_records(more, now=MONDAY)).committed
    seen: list[tuple[int, int]] = []
    where = criteria.Leaf("country", criteria.Op.EQ, "FR")
    results = await enrolling.enroll_many(store, RULES, NURTURE, where=where, enrolled_by="anna", now=MONDAY,
                                          progress=lambda *p: seen.append(p))  # fmt: skip
    assert seen == [(2, 7), (4, 7), (6, 7), (7, 7)]
    kinds = {rid: (r.kind if isinstance(r, seq.Refusal) else "enrolled") for rid, r in results}
    # X4-X6 share X0-X2's addresses, enrolled by earlier chunks
    assert kinds == {"X0": "enrolled", "X1": "enrolled", "X2": "enrolled", "X3": "enrolled",
                     "X4": "already_active", "X5": "already_active", "X6": "already_active"}  # fmt: skip
    ids = [r.id for _, r in results if isinstance(r, seq.Enrollment)]
    rows = {e["id"]: e for e in await store.enrollments(sequence="inbound-nurture")}
    assert [rows[i]["record_id"] for i in ids] == ["X0", "X1", "X2", "X3"]  # each id is its own record's
    events = [x for rid in ("X0", "X3") for x in await store.events(rid) if x.kind == "enrolled"]
    assert [x.data["enrollment"] for x in events] == [ids[0], ids[3]]


async def test_a_dry_run_of_enroll_many_refuses_the_second_record_of_an_address_and_writes_nothing(
    store: Store,
) -> None:
    more = [import_rows.Row(10 + i, f"X{i}", "lead", addr, {"owner": "anna", "country": "FR"})
            for i, addr in enumerate(["a@example.org", "b@example.org", "a@example.org"])]  # fmt: skip
    assert (await store.import_records(more, now=MONDAY)).committed
    where = criteria.Leaf("country", criteria.Op.EQ, "FR")
    results = dict(await enrolling.enroll_many(store, RULES, NURTURE, where=where, enrolled_by="anna", now=MONDAY,
                                               dry_run=True))  # fmt: skip
    assert results["X2"] == "a@example.org is enrolled already in this run (record X0)"
    assert isinstance(results["X0"], seq.Enrollment) and results["X0"].id == 0
    assert await store.enrollments(sequence="inbound-nurture") == []


async def test_addresses_that_differ_only_in_case_are_one_person_in_a_sequence(store: Store) -> None:
    # issue 18, item 6: compared as the suppression list compares them
    more = [import_rows.Row(10 + i, f"X{i}", "lead", addr, {"owner": "anna", "country": "FR"})
            for i, addr in enumerate(["Sam.Jones@example.org", "sam.jones@example.org", "SAM.JONES@example.org"])]  # fmt: skip
    assert (await store.import_records(more, now=MONDAY)).committed
    where = criteria.Leaf("country", criteria.Op.EQ, "FR")
    for dry_run in (True, False):
        results = dict(await enrolling.enroll_many(store, RULES, NURTURE, where=where, enrolled_by="anna",
                                                   now=MONDAY, dry_run=dry_run))  # fmt: skip
        assert isinstance(results["X0"], seq.Enrollment)
        for rid in ("X1", "X2"):
            assert isinstance(results[rid], seq.Refusal) and results[rid].kind == "same_address", results[rid]  # type: ignore[union-attr]
        assert results["X1"] == "sam.jones@example.org is enrolled already in this run (record X0)"
    (live,) = await store.enrollments(sequence="inbound-nurture", live_only=True)
    assert live["email"] == "Sam.Jones@example.org"
    # a later run, and one record at a time, find it live whatever the case
    again = dict(await enrolling.enroll_many(store, RULES, NURTURE, record_ids=["X1"], enrolled_by="anna",
                                             now=LATER))  # fmt: skip
    assert again["X1"] == "sam.jones@example.org is already active in inbound-nurture"
    one = await enrolling.enroll(store, RULES, await store.get_record("X2"), NURTURE, enrolled_by="anna", now=LATER)
    assert one == "SAM.JONES@example.org is already active in inbound-nurture"
    assert await store.live_in_sequence("SAM.jones@EXAMPLE.org", "inbound-nurture")
    assert await store.enrolling_facts(["SAM.JONES@example.org"], "inbound-nurture") == (
        {"sam.jones@example.org"}, {})


async def test_the_live_index_refuses_an_address_in_another_case_even_when_the_facts_were_stale(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    more = [import_rows.Row(10, "X0", "lead", "Kim@example.net", {"owner": "anna", "country": "FR"})]
    assert (await store.import_records(more, now=MONDAY)).committed
    real = store.enrolling_facts

    async def stale(emails: list[str], sequence: str) -> tuple[set[str], dict[str, dt.datetime]]:
        facts = await real(emails, sequence)
        await enrolled(store, "L2")  # kim@example.net, by another writer, after the facts were read
        return facts

    monkeypatch.setattr(store, "enrolling_facts", stale)
    results = dict(await enrolling.enroll_many(store, RULES, NURTURE, record_ids=["X0"], enrolled_by="anna",
                                               now=MONDAY))  # fmt: skip
    assert results["X0"] == "Kim@example.net is already active in inbound-nurture"
    assert [e["record_id"] for e in await store.enrollments(sequence="inbound-nurture", live_only=True)] == ["L2"]


async def test_enroll_many_falls_back_to_one_by_one_when_another_writer_enrolled_an_address_meanwhile(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = store.enrolling_facts

    async def stale(emails: list[str], sequence: str) -> tuple[set[str], dict[str, dt.datetime]]:
        facts = await real(emails, sequence)
        await enrolled(store, "L2")  # another writer, after the facts were read
        return facts

    monkeypatch.setattr(store, "enrolling_facts", stale)
    results = dict(await enrolling.enroll_many(store, RULES, NURTURE, record_ids=["L1", "L2"], enrolled_by="anna",
                                               now=MONDAY))  # fmt: skip
    assert isinstance(results["L1"], seq.Enrollment) and results["L1"].id
    assert results["L2"] == "kim@example.net is already active in inbound-nurture"
    assert len(await store.enrollments(record_id="L2")) == 1


async def test_a_dry_run_enrolls_nobody(store: Store) -> None:
    planned = await enrolling.enroll(store, RULES, await store.get_record("L1"), NURTURE, enrolled_by="anna",
                                     now=MONDAY, dry_run=True)  # fmt: skip
    assert isinstance(planned, seq.Enrollment) and planned.id == 0
    assert await store.enrollments(record_id="L1") == []
    refused = await enrolling.enroll(store, RULES, await store.get_record("L1"), NURTURE, enrolled_by="zoe",
                                     now=MONDAY)  # fmt: skip
    assert refused == "'zoe' is not a user in Settings.users"


async def test_a_user_stops_an_enrollment_by_id_or_by_record_and_sequence(store: Store) -> None:
    a, b = await enrolled(store, "L1"), await enrolled(store, "L2")
    (stopped,) = await enrolling.stop(store, enrollment_id=a.id, by="anna", now=LATER)
    assert (stopped["id"], stopped["status"], stopped["reason"], stopped["ended_at"]) == (
        a.id, "stopped", "stopped by anna", LATER)
    await enrolling.stop(store, record_id="L2", sequence="inbound-nurture", by=None, now=LATER, source="test")
    assert await state(store, b.id) == ("stopped", "stopped by hand")
    (event,) = [x for x in await store.events("L2") if x.kind == "sequence_stopped"]
    assert event.data == {"sequence": "inbound-nurture", "reason": "stopped by hand"} and event.source == "test"
    with pytest.raises(store_module.StoreError, match=f"enrollment {a.id} is stopped already"):
        await enrolling.stop(store, enrollment_id=a.id, by="anna", now=LATER)
    with pytest.raises(store_module.NotFound, match="no such live enrollment"):
        await enrolling.stop(store, record_id="L1", sequence="inbound-nurture", by="anna", now=LATER)


async def test_a_blocked_enrollment_is_retried_and_nothing_else_is(store: Store) -> None:
    e = await enrolled(store, "L1")
    with pytest.raises(store_module.StoreError, match="is active, not blocked"):
        await enrolling.retry(store, e.id, now=LATER)
    async with store.changing() as tx:  # blocked, as a tick blocks it
        (row,) = await tx.enrollments(ids=[e.id])
        await tx.save_enrollment(enrolling.columns_of(seq.block(enrolling.enrollment_of(row), "missing merge field")))
    again = await enrolling.retry(store, e.id, now=LATER)
    assert (again["status"], again["reason"], again["next_due_at"]) == ("active", None, LATER)
    assert "sequence_retried" in await kinds(store, "L1")
    with pytest.raises(store_module.NotFound):
        await enrolling.retry(store, 9999, now=LATER)


async def test_enroll_many_refuses_a_sequence_whose_rules_are_not_the_applied_version(store: Store) -> None:
    edited = dataclasses.replace(NURTURE, source=dataclasses.replace(NURTURE.source, hash="e" * 64))
    with pytest.raises(enrolling.NotApplied, match="inbound-nurture in the rules is not the applied version"):
        await enrolling.enroll_many(store, RULES, edited, record_ids=["L1"], enrolled_by="anna", now=MONDAY)
    assert await store.enrollments(record_id="L1") == []
