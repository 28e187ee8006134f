"""One contract, every backend: the same cases on SQLite and PostgreSQL (each run in its own schema)."""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from outreach.app import events
from outreach.app import rules as app_rules
from outreach.rules import criteria, timing
from outreach.rules.criteria import Op
from outreach.store import Store, StoreBusy, StoreError, bulk, migrate, tables
from outreach.store import criteria as sql_criteria
from outreach.store import store as store_module
from outreach.store.sequencing import Pending
from outreach.store.store import NotFound
from tests.stores import FIELDS, PG_URL, active_enrollment, in_database_file
from tests.worlds import NOW, Row, RowError, rows

pytestmark = pytest.mark.store

# `store` (an empty store), `backend` (an empty database of each dialect) and `pg_schema`: tests/conftest.py

LEADS = (
    Row(2, "L1", "lead", "jo@example.org", {"first_name": "Jo", "score": 80, "country": "DE", "owner": "anna",
                                            "stage": "New", "signed_up_at": dt.datetime(2026, 1, 5, tzinfo=dt.UTC)}),
    Row(3, "L2", "lead", "kim@example.net", {"first_name": "Kim", "score": 12.5, "country": "NO", "company": "Fjord AS",
                                             "purchased": True}),
    Row(4, "L3", "lead", None, {"company": "ACME GmbH", "stage": "Qualified",
                                "signed_up_at": dt.datetime(2026, 11, 1, tzinfo=dt.UTC)}),
    Row(5, "C1", "contact", "sam@example.com", {"country": "AT", "purchased": False}),
)  # fmt: skip


async def imported(store: Store) -> Store:
    result = await store.import_records(rows(*LEADS), now=NOW)
    assert result.committed and result.inserted == 4
    return store


# --- schema ------------------------------------------------------------------------------


async def test_a_new_database_is_at_the_newest_revision(store: Store) -> None:
    assert await store.revision() == migrate.head()


# SQLite's reflection cannot read an index on an expression (the live-enrollment index, on lower(email)), so Alembic
# leaves it out of the comparison there; the migration's own test checks it on both dialects.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index")
async def test_migrating_step_by_step_gives_exactly_the_tables_of_the_code(backend: tuple[str, str | None]) -> None:
    url, schema = backend
    engine = store_module._engine(url, schema)
    revisions = [r.revision for r in reversed(list(ScriptDirectory.from_config(migrate.config()).walk_revisions()))]
    for revision in revisions:
        await migrate.upgrade(engine, revision)
        assert await migrate.current(engine) == revision
    async with engine.connect() as conn:
        diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), tables.metadata))
    await engine.dispose()
    assert diff == []


async def test_postgresql_refuses_an_old_schema_until_db_upgrade(pg_schema: str) -> None:
    # PostgreSQL-only: SQLite, the embedded default, upgrades itself on first use
    url, schema = PG_URL, pg_schema
    with pytest.raises(StoreError, match="run `outreach db upgrade`"):
        await Store.open(url, upgrade=False, schema=schema)
    s = await Store.open(url, upgrade=True, schema=schema)
    await s.close()
    s = await Store.open(url, upgrade=False, schema=schema)
    await s.close()


async def test_a_url_that_does_not_parse_or_connect_gets_one_line() -> None:
    with pytest.raises(StoreError, match="does not parse"):
        await Store.open("not a url")
    with pytest.raises(StoreError, match="names 'mysql'; outreach uses sqlite or postgresql"):
        await Store.open("mysql://root@127.0.0.1/test")
    with pytest.raises(
        StoreError, match=r"cannot connect to postgresql://bob:\*\*\*@127.0.0.1:1/x: .*refused|failed"
    ) as info:
        await Store.open("postgresql://bob:secret@127.0.0.1:1/x")
    assert "secret" not in str(info.value) and "\n" not in str(info.value)


async def test_a_second_daemon_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    # SQLite-only: PostgreSQL shares due work between daemons with SKIP LOCKED instead
    url = f"sqlite+aiosqlite:///{tmp_path / 'one.db'}"
    first, second = await Store.open(url), await Store.open(url)
    try:
        first.hold_single_daemon()
        with pytest.raises(StoreBusy, match=r"another outreach daemon \(pid \d+\) already runs on .*one.db"):
            second.hold_single_daemon()
    finally:
        await first.close()
        await second.close()
    third = await Store.open(url)
    third.hold_single_daemon()  # the lock went with the first daemon
    await third.close()


async def test_a_new_sqlite_database_its_wal_and_its_directories_are_their_owner_s_only(tmp_path: Path) -> None:
    # SQLite-only: a file on disk. Issue 18, item 3: every record's address and every message are in it.
    old = os.umask(0o022)
    try:
        store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'var' / 'data' / 'o.db'}")
        try:
            store.hold_single_daemon()
            await store.import_records(rows(Row(2, "L1", "lead", "jo@example.org", {})), now=NOW)
            made = sorted(p.name for p in (tmp_path / "var" / "data").iterdir())
            assert made == ["o.db", "o.db-shm", "o.db-wal", "o.db.daemon-lock"]
            modes = {name: stat.S_IMODE((tmp_path / "var" / "data" / name).stat().st_mode) for name in made}
            assert modes == dict.fromkeys(made, 0o600)
        finally:
            await store.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "var").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "var" / "data").stat().st_mode) == 0o700
    tmp_path.joinpath("shared").mkdir(mode=0o755)
    tmp_path.joinpath("shared").chmod(0o755)
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'shared' / 'o.db'}")
    await store.close()
    assert stat.S_IMODE((tmp_path / "shared").stat().st_mode) == 0o755  # a directory that was there keeps its mode
    assert stat.S_IMODE((tmp_path / "shared" / "o.db").stat().st_mode) == 0o600


# --- records ----------------------------------------------------------------------------


async def test_imported_records_come_back_typed(store: Store) -> None:
    await imported(store)
    jo = await store.get_record("L1")
    assert (jo.type, jo.email, jo.owner, jo.stage) == ("lead", "jo@example.org", "anna", "New")
    assert jo.stage_entered_at == NOW and jo.created_at == NOW
    assert jo.fields == {"first_name": "Jo", "score": 80, "country": "DE",
                         "signed_up_at": dt.datetime(2026, 1, 5, tzinfo=dt.UTC)}  # fmt: skip
    assert (await store.get_record("L2")).fields["purchased"] is True


async def test_a_bad_row_rejects_the_whole_file_and_names_its_line(store: Store) -> None:
    result = await store.import_records(
        rows(LEADS[0], RowError(3, "invalid email 'x@'"), LEADS[1], RowError(9, "unknown field 'nick'")), now=NOW
    )
    assert not result.committed and result.inserted == 0
    assert [(p.line, p.message) for p in result.problems] == [(3, "invalid email 'x@'"), (9, "unknown field 'nick'")]
    assert await store.list_records(now=NOW) == []


async def test_skip_invalid_writes_the_good_rows_and_lists_the_bad(store: Store) -> None:
    result = await store.import_records(rows(LEADS[0], RowError(3, "bad"), LEADS[1]), now=NOW, skip_invalid=True)
    assert result.committed and result.inserted == 2 and result.problem_count == 1
    assert [r.id for r in await store.list_records(now=NOW)] == ["L1", "L2"]


async def test_an_existing_id_or_email_is_refused_without_update(store: Store) -> None:
    await imported(store)
    result = await store.import_records(
        rows(Row(2, "L1", "lead", "jo@example.org"), Row(3, None, "lead", "kim@example.net")), now=NOW
    )
    assert [p.line for p in result.problems] == [2, 3]
    assert "use --update" in result.problems[0].message and "kim@example.net" in result.problems[1].message


async def test_update_matches_by_id_or_by_email_and_records_a_stage_change(store: Store) -> None:
    await imported(store)
    later = NOW + dt.timedelta(hours=1)
    result = await store.import_records(
        rows(
            Row(2, "L1", "lead", "jo@example.org", {"stage": "Contacted", "score": 90}),
            Row(3, None, "lead", "kim@example.net", {"company": "Fjord ASA"}),
            Row(4, "L9", "lead", "new@example.org"),
        ),
        now=later,
        update=True,
    )
    assert (result.inserted, result.updated, result.committed) == (1, 2, True)
    jo = await store.get_record("L1")
    assert jo.stage == "Contacted" and jo.stage_entered_at == later and jo.fields["score"] == 90
    assert jo.fields["first_name"] == "Jo"  # other fields stay
    assert (await store.get_record("L2")).fields["company"] == "Fjord ASA"
    assert [e.kind for e in await store.events("L1")] == ["stage_changed", "updated"]


async def test_an_update_without_an_email_keeps_the_address_and_a_given_stage_time(store: Store) -> None:
    await imported(store)
    entered = NOW - dt.timedelta(days=3)
    result = await store.import_records(
        rows(Row(2, "L1", "lead", None, {"stage": "Qualified", "stage_entered_at": entered})), now=NOW, update=True
    )
    assert result.updated == 1
    jo = await store.get_record("L1")
    assert (jo.email, jo.stage, jo.stage_entered_at) == ("jo@example.org", "Qualified", entered)
    await store.import_records(rows(Row(2, "L1", "lead", None, {"stage": "Qualified"})), now=NOW, update=True)
    assert (await store.get_record("L1")).stage_entered_at == entered  # the same stage again is no change


def leaf(field: str, op: Op, value: Any) -> criteria.Leaf:
    return criteria.Leaf(field, op, value)


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (leaf("country", Op.EQ, "DE"), ["L1"]),
        (leaf("country", Op.NE, "DE"), ["C1", "L2", "L3"]),  # a record without the field is "not DE"
        (leaf("country", Op.IN, ("NO", "AT")), ["C1", "L2"]),
        (leaf("country", Op.NOT_IN, ("NO", "AT")), ["L1", "L3"]),
        (leaf("company", Op.CONTAINS, "gmbh"), ["L3"]),  # case does not matter
        (leaf("company", Op.STARTS_WITH, "fj"), ["L2"]),
        (leaf("score", Op.GT, 50), ["L1"]),
        (leaf("score", Op.LTE, 12.5), ["L2"]),
        (leaf("purchased", Op.EQ, True), ["L2"]),
        (leaf("purchased", Op.EQ, False), ["C1"]),
        (leaf("email", Op.EXISTS, False), ["L3"]),
        (leaf("stage", Op.EQ, "New"), ["L1"]),
        (leaf("signed_up_at", Op.OLDER_THAN, timing.parse_duration("30 days")), ["L1"]),
        (leaf("signed_up_at", Op.NEWER_THAN, timing.parse_duration("30 days")), ["L3"]),
        (leaf("signed_up_at", Op.GT, dt.datetime(2026, 6, 1, tzinfo=dt.UTC)), ["L3"]),
        (leaf("stage_entered_at", Op.LTE, NOW), ["L1", "L3"]),
        (criteria.Not(leaf("country", Op.EQ, "DE")), ["C1", "L2", "L3"]),
        (criteria.Not(leaf("purchased", Op.EQ, True)), ["C1", "L1", "L3"]),
        (criteria.All((leaf("type", Op.EQ, "lead"), leaf("score", Op.EXISTS, True))), ["L1", "L2"]),
        (criteria.AnyOf((leaf("country", Op.EQ, "AT"), leaf("stage", Op.EQ, "Qualified"))), ["C1", "L3"]),
        (criteria.All(()), ["C1", "L1", "L2", "L3"]),
        (criteria.AnyOf(()), []),
    ],
)
async def test_criteria_select_the_same_records_in_sql(
    store: Store, where: criteria.Criteria, expected: list[str]
) -> None:
    await imported(store)
    assert [r.id for r in await store.list_records(where, now=NOW)] == expected


async def test_a_like_wildcard_in_criteria_is_taken_literally(store: Store) -> None:
    await store.import_records(rows(Row(2, "X1", "lead", None, {"company": "100% Sales_Co"}), *LEADS[:1]), now=NOW)
    found = await store.list_records(leaf("company", Op.CONTAINS, "0% s"), now=NOW)
    assert [r.id for r in found] == ["X1"]
    assert await store.list_records(leaf("company", Op.CONTAINS, "_"), now=NOW) != await store.list_records(now=NOW)


async def test_set_records_a_stage_change_and_its_time(store: Store) -> None:
    await imported(store)
    later = NOW + dt.timedelta(days=2)
    record = await store.set_fields("L1", {"stage": "Contacted", "score": 95}, now=later)
    assert record.stage == "Contacted" and record.stage_entered_at == later and record.fields["score"] == 95
    kinds = [(e.kind, dict(e.data)) for e in await store.events("L1")]
    assert kinds[0] == ("stage_changed", {"from": "New", "to": "Contacted"})
    same = await store.set_fields("L1", {"stage": "Contacted"}, now=later + dt.timedelta(hours=1))
    assert same.stage_entered_at == later  # not a change


async def test_convert_turns_a_lead_into_a_contact_and_is_an_event(store: Store) -> None:
    await imported(store)
    contact = await events.convert(store, "L1", now=NOW)
    assert contact.type == "contact" and contact.converted_at == NOW
    assert [e.kind for e in await store.events("L1")] == ["converted"]
    with pytest.raises(StoreError, match="only leads are converted"):
        await events.convert(store, "C1", now=NOW)


async def test_a_deleted_record_leaves_lists_and_is_an_event(store: Store) -> None:
    await imported(store)
    await events.delete(store, "L2", now=NOW)
    assert "L2" not in [r.id for r in await store.list_records(now=NOW)]
    assert (await store.get_record("L2")).deleted_at == NOW
    assert [e.kind for e in await store.events("L2")] == ["deleted"]
    with pytest.raises(NotFound):
        await events.delete(store, "L2", now=NOW)


async def test_tasks_are_added_listed_and_completed(store: Store) -> None:
    await imported(store)
    due = NOW + dt.timedelta(hours=4)
    task = await store.add_task("L1", "Call the lead", type="call", due_at=due, owner="anna", now=NOW)
    await store.add_task("L2", "Send details", now=NOW)
    assert [t.subject for t in await store.list_tasks()] == ["Call the lead", "Send details"]
    assert [t.id for t in await store.list_tasks("L1")] == [task.id]
    done = await store.complete_task(task.id, now=due)
    assert done.completed_at == due
    assert [t.subject for t in await store.list_tasks()] == ["Send details"]
    with pytest.raises(StoreError, match="was completed"):
        await store.complete_task(task.id, now=due)
    with pytest.raises(NotFound):
        await store.add_task("nobody", "x", now=NOW)
    assert [e.kind for e in await store.events("L1")] == ["task_created", "task_completed"]


async def test_an_appointment_is_kept_and_is_an_event(store: Store) -> None:
    await imported(store)
    starts = NOW + dt.timedelta(days=3)
    appointment = await store.add_appointment("L1", starts, "Demo", now=NOW)
    assert appointment.starts_at == starts
    (event,) = await store.events("L1")
    assert event.kind == "appointment" and event.data["starts_at"] == starts.isoformat()


# --- definitions ---------------------------------------------------------------------------


async def test_apply_keeps_every_version_and_stops_enrollments_of_a_removed_sequence(store: Store) -> None:
    await imported(store)
    first = {("Sequence", "nurture"): ("h1", {"kind": "Sequence", "v": 1}), ("Template", "intro"): ("t1", {"v": 1})}
    assert await app_rules.apply_definitions(store, first, now=NOW) == {
        "added": [("Sequence", "nurture"), ("Template", "intro")], "changed": [], "removed": [], "renamed": [],
    }  # fmt: skip
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.insert(tables.enrollments),
            [
                {"record_id": rid, "email": f"{rid}@x.org", "sequence": "nurture", "sequence_hash": "h1",
                 "enrolled_by": "anna", "status": status, "step_index": 0, "steps_done": 0, "started_at": NOW}
                for rid, status in (("L1", "active"), ("L2", "blocked"), ("L3", "completed"))
            ],
        )  # fmt: skip
    assert await store.enrollment_counts() == {("nurture", "h1"): 2}
    second = {("Sequence", "nurture"): ("h2", {"kind": "Sequence", "v": 2}), ("Template", "intro"): ("t1", {"v": 1})}
    assert (await app_rules.apply_definitions(store, second, now=NOW))["changed"] == [("Sequence", "nurture")]
    active = await store.active_definitions()
    assert active[("Sequence", "nurture")].hash == "h2" and active[("Sequence", "nurture")].body["v"] == 2
    done = await app_rules.apply_definitions(store, {("Template", "intro"): ("t1", {"v": 1})},
                                             now=NOW + dt.timedelta(days=1))
    assert done["removed"] == [("Sequence", "nurture")]
    assert await store.enrollment_counts() == {}
    async with store.engine.connect() as conn:
        versions = (await conn.execute(sa.select(sa.func.count()).select_from(tables.definitions))).scalar()
        stopped = (await conn.execute(
            sa.select(tables.enrollments.c.record_id, tables.enrollments.c.reason)
            .where(tables.enrollments.c.status == "stopped").order_by(tables.enrollments.c.record_id)
        )).all()  # fmt: skip
    assert versions == 3
    assert [tuple(x) for x in stopped] == [("L1", "sequence removed"), ("L2", "sequence removed")]


async def test_one_live_enrollment_per_address_and_sequence(store: Store) -> None:
    await imported(store)
    values = {"record_id": "L1", "email": "jo@example.org", "sequence": "s", "sequence_hash": "h",
              "enrolled_by": "anna", "step_index": 0, "steps_done": 0, "started_at": NOW}  # fmt: skip
    async with store.engine.begin() as conn:
        await conn.execute(sa.insert(tables.enrollments).values(status="completed", **values))
        await conn.execute(sa.insert(tables.enrollments).values(status="active", **values))
    with pytest.raises(sa.exc.IntegrityError):
        async with store.engine.begin() as conn:
            await conn.execute(sa.insert(tables.enrollments).values(status="blocked", **values))


async def test_one_live_enrollment_per_address_and_sequence_whatever_the_case_of_the_address(store: Store) -> None:
    # issue 18, item 6: Sam.Jones@... and sam.jones@... are one person, as for the suppression list
    await imported(store)
    values = {"record_id": "L1", "sequence": "s", "sequence_hash": "h", "enrolled_by": "anna", "step_index": 0,
              "steps_done": 0, "started_at": NOW}  # fmt: skip
    async with store.engine.begin() as conn:
        await conn.execute(sa.insert(tables.enrollments).values(status="active", email="Jo@example.org", **values))
        await conn.execute(sa.insert(tables.enrollments).values(status="completed", email="jo@example.org", **values))
    with pytest.raises(sa.exc.IntegrityError):
        async with store.engine.begin() as conn:
            await conn.execute(sa.insert(tables.enrollments).values(status="blocked", email="JO@example.org", **values))
    assert await store.live_in_sequence("jo@EXAMPLE.org", "s") and not await store.live_in_sequence("jo@example.org", "t")


async def test_the_migration_to_case_blind_addresses_stops_the_later_of_two_live_duplicates(
    backend: tuple[str, str | None],
) -> None:
    # Migration 0008: the old index let Sam.Jones@ and sam.jones@ both be live in one sequence; the first enrolled
    # stays live, the later ones are stopped with the reason and an event, and the new index holds.
    url, schema = backend
    engine = store_module._engine(url, schema)
    await migrate.upgrade(engine, "0007")
    common = {"sequence_hash": "h", "enrolled_by": "anna", "step_index": 0, "steps_done": 0, "started_at": NOW,
              "next_due_at": NOW}  # fmt: skip
    async with engine.begin() as conn:
        for rid in ("L1", "L2", "L3"):
            await conn.execute(sa.insert(tables.records).values(id=rid, type="lead", fields={}, created_at=NOW,
                                                                updated_at=NOW))  # fmt: skip
        enrollments = [("L1", "Sam.Jones@example.org", "s", "active"), ("L2", "sam.jones@example.org", "s", "blocked"),
                       ("L3", "SAM.JONES@example.org", "s", "active"), ("L2", "sam.jones@example.org", "t", "active"),
                       ("L3", "sam.jones@example.org", "s", "completed")]  # fmt: skip
        for rid, email, sequence, status in enrollments:
            await conn.execute(sa.insert(tables.enrollments).values(record_id=rid, email=email, sequence=sequence,
                                                                    status=status, **common))  # fmt: skip
        last = NOW + dt.timedelta(hours=5)  # the latest event: the migration reads no clock
        await conn.execute(sa.insert(tables.events).values(record_id="L1", kind="opened", at=last, data={},
                                                           source="web"))  # fmt: skip
    await migrate.upgrade(engine)
    e = tables.enrollments
    async with engine.connect() as conn:
        found = (await conn.execute(sa.select(e.c.id, e.c.status, e.c.reason, e.c.next_due_at, e.c.ended_at)
                                    .order_by(e.c.id))).all()  # fmt: skip
        stopped = (await conn.execute(sa.select(tables.events.c.record_id, tables.events.c.data, tables.events.c.source,
                                                tables.events.c.at)
                                      .where(tables.events.c.kind == "sequence_stopped")
                                      .order_by(tables.events.c.record_id))).all()  # fmt: skip
    first = found[0].id
    reason = f"duplicate of enrollment {first} (the same address in another case)"
    assert [(r.status, r.reason, r.next_due_at, r.ended_at) for r in found] == [
        ("active", None, NOW, None), ("stopped", reason, None, last), ("stopped", reason, None, last),
        ("active", None, NOW, None), ("completed", None, NOW, None),
    ]
    assert [(r.record_id, r.data["reason"], r.source, r.at) for r in stopped] == [
        ("L2", reason, "migration", last), ("L3", reason, "migration", last)]  # fmt: skip
    with pytest.raises(sa.exc.IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(sa.insert(tables.enrollments).values(record_id="L2", email="sam.JONES@example.org",
                                                                    sequence="s", status="active", **common))  # fmt: skip
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            query = "SELECT sql FROM sqlite_master WHERE name = 'uq_enrollments_live_email'"
        else:
            query = ("SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_enrollments_live_email' "
                     "AND schemaname = current_schema()")
        definition = (await conn.exec_driver_sql(query)).scalar_one()
    await engine.dispose()
    assert "lower(email)" in definition.replace("(email)::text", "email").replace("\"", "")


async def test_a_file_error_in_the_middle_of_an_import_leaves_nothing_behind(store: Store) -> None:
    def broken() -> Iterator[Row | RowError]:
        yield from LEADS[:3]
        raise ValueError("the file ends inside a quoted field")

    with pytest.raises(ValueError, match="quoted field"):
        await store.import_records(broken(), now=NOW)
    assert await store.list_records(now=NOW) == []


# --- the scheduler's batch writes ------------------------------------------------------------------------


async def test_a_due_batch_writes_what_sqlalchemy_reads_back_unchanged_and_only_the_columns_that_changed(
    store: Store,
) -> None:
    await imported(store)
    due = NOW - dt.timedelta(minutes=1)
    enrollment = active_enrollment(due)
    first = await store.insert_enrollment(enrollment, now=due)
    second = await store.insert_enrollment({**enrollment, "record_id": "L2", "email": "kim@example.net"}, now=due)
    later = dt.datetime(2026, 11, 25, 9, 30, 15, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    message = {"enrollment_id": first, "record_id": "L1", "template": "intro", "step_id": "intro",
               "sender": "anna@example.com", "recipient": "jo@example.org", "subject": "Grüße",
               "message_id": "<m1@example.com>", "message": b"From: a\r\n\r\nhi\r\n\x00\xff", "state": "queued",
               "attempts": 0, "created_at": NOW}  # fmt: skip

    async with store.due_batch(NOW, 10) as batch:
        assert sorted(r["id"] for r in batch.rows) == [first, second]
        assert batch.records == await store.records_by_id(["L1", "L2"])  # the claimed rows' records, read with them
        claimed = {r["id"]: r for r in batch.rows}
        await batch.save({**claimed[first], "step_index": 1, "steps_done": 1, "next_due_at": later,
                          "last_step_at": NOW, "thread_message_id": "<m1@example.com>", "awaiting_task": True})  # fmt: skip
        await batch.save(dict(claimed[second]))  # nothing changed: nothing written
        await batch.enqueue(message)
        await batch.event("L1", "sequence_email", NOW, {"step": "intro", "subject": "Grüße", "enrollment": first})
        assert batch.saves == [{"id": first, "step_index": 1, "steps_done": 1, "next_due_at": later,
                                "last_step_at": NOW, "thread_message_id": "<m1@example.com>",
                                "awaiting_task": True}]  # fmt: skip

    e, o, ev = tables.enrollments, tables.outbox, tables.events
    async with store.engine.connect() as conn:
        saved = (await conn.execute(sa.select(e).where(e.c.id == first))).one()._mapping
        untouched = (await conn.execute(sa.select(e).where(e.c.id == second))).one()._mapping
        queued = (await conn.execute(sa.select(o))).one()._mapping
        event = (await conn.execute(sa.select(ev).where(ev.c.kind == "sequence_email"))).one()._mapping
    assert (saved["step_index"], saved["steps_done"], saved["awaiting_task"]) == (1, 1, True)
    assert saved["next_due_at"] == later and saved["next_due_at"].tzinfo is not None
    assert saved["last_step_at"] == NOW and saved["started_at"] == due
    assert (saved["status"], saved["email"], saved["thread_message_id"]) == ("active", "jo@example.org",
                                                                           "<m1@example.com>")  # fmt: skip
    assert (untouched["step_index"], untouched["next_due_at"], untouched["awaiting_task"]) == (0, due, False)
    assert {k: queued[k] for k in message} == message
    assert (event["record_id"], event["at"], event["source"]) == ("L1", NOW, "engine")
    assert event["data"] == {"step": "intro", "subject": "Grüße", "enrollment": first}


async def test_pending_says_in_one_look_what_a_tick_finds_to_do(store: Store) -> None:
    """The scheduler skips a phase when `pending` finds nothing for it: each flag must see its own work."""
    assert await store.pending(NOW) == Pending(None, due=False, tasks_done=False, mail=False)
    await imported(store)
    later = NOW + dt.timedelta(days=1)
    enrollment = active_enrollment(later, started_at=NOW)
    waiting = await store.insert_enrollment(enrollment, now=NOW)
    found = await store.pending(NOW)
    assert found.record_changed == NOW and not (found.due or found.tasks_done or found.mail)
    assert (await store.pending(later)).due  # due at its time, not before

    e, t, o = tables.enrollments, tables.tasks, tables.outbox
    async with store.engine.begin() as conn:
        await conn.execute(sa.update(e).where(e.c.id == waiting).values(awaiting_task=True, next_due_at=None))
        task = (await conn.execute(sa.insert(t).values(
            record_id="L1", subject="Call", type="call", priority="normal", created_at=NOW, enrollment_id=waiting,
            step_id="call"))).inserted_primary_key[0]  # fmt: skip
    assert not (await store.pending(later)).tasks_done  # the task is open: nothing to resume
    await store.complete_task(task, now=NOW)
    assert (await store.pending(NOW)).tasks_done and not (await store.pending(later)).due

    message = {"record_id": "L1", "template": "intro", "sender": "anna@example.com", "recipient": "jo@example.org",
               "subject": "Hi", "message_id": "<p1@example.com>", "message": b"x", "attempts": 1, "created_at": NOW}  # fmt: skip
    async with store.engine.begin() as conn:
        await conn.execute(sa.insert(o).values(state="deferred", next_attempt_at=later, **message))
    assert not (await store.pending(NOW)).mail and (await store.pending(later)).mail  # deferred: due at its retry
    async with store.engine.begin() as conn:
        await conn.execute(sa.update(o).values(state="sent", next_attempt_at=None))
    assert not (await store.pending(later)).mail
    async with store.engine.begin() as conn:
        await conn.execute(sa.insert(o).values(state="queued", **{**message, "message_id": "<p2@example.com>"}))
    assert (await store.pending(NOW)).mail


@pytest.mark.parametrize("days", [-400, -30, 0, 31, 400])
async def test_time_criteria_compiled_once_with_edges_select_as_compiled_at_each_instant(
    store: Store, days: int
) -> None:
    """The scheduler builds a criteria statement once and binds `now` at each run (store.statement, Edges)."""
    await imported(store)
    r = tables.records
    where = criteria.AnyOf((
        leaf("signed_up_at", Op.OLDER_THAN, timing.parse_duration("300 days")),  # a custom field: JSON text
        criteria.All((leaf("stage_entered_at", Op.NEWER_THAN, timing.parse_duration("2 days")),  # a column
                      leaf("created_at", Op.OLDER_THAN, timing.parse_duration("1h")))),
    ))  # fmt: skip

    def build() -> tuple[sa.Select[tuple[str]], sql_criteria.Edges]:
        edges = sql_criteria.Edges("e")
        return sa.select(r.c.id).where(sql_criteria.compile_criteria(where, store.fields, edges)).order_by(
            r.c.id
        ), edges

    at = NOW + dt.timedelta(days=days)
    query, edges = store.statement(("test", where), build)
    assert store.statement(("test", where), build)[0] is query  # built once
    async with store.engine.connect() as conn:
        found = [row[0] for row in await conn.execute(query, edges.values(at))]
    assert found == [x.id for x in await store.list_records(where, now=at)]
    assert found == {-400: [], -30: [], 0: ["L1"], 31: ["L1"], 400: ["L1", "L3"]}[days]  # `now` does move it


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'outreach.db'}", fields=FIELDS, upgrade=True)
    try:
        yield s
    finally:
        await s.close()


async def test_rows_read_from_the_sqlite_driver_equal_what_sqlalchemy_reads(sqlite_store: Store) -> None:
    """The scheduler reads due enrollments and their records straight from SQLite's driver (bulk.select_sqlite);
    PostgreSQL reads them through SQLAlchemy."""
    store = sqlite_store
    await imported(store)
    await store.set_fields("L1", {"stage": "Contacted"}, now=NOW + dt.timedelta(hours=1))
    await events.delete(store, "L2", now=NOW + dt.timedelta(hours=2))
    later = dt.datetime(2026, 11, 25, 9, 30, 15, 123456, tzinfo=dt.UTC)
    base = {"email": "jo@example.org", "sequence": "s", "sequence_hash": "h1", "enrolled_by": "anna",
            "step_index": 0, "steps_done": 0, "started_at": NOW}  # fmt: skip
    await store.insert_enrollment({**base, "record_id": "L1", "status": "active", "next_due_at": NOW,
                                   "awaiting_task": False, "thread_subject": "Grüße"}, now=NOW)  # fmt: skip
    await store.insert_enrollment({**base, "record_id": "L3", "email": "x@example.org", "status": "blocked",
                                   "reason": "bounced", "next_due_at": later, "awaiting_task": True}, now=NOW)  # fmt: skip
    r, e = tables.records, tables.enrollments
    async with store.engine.connect() as conn:
        for table in (r, e):
            expected = [
                dict(x._mapping)
                for x in await conn.execute(sa.select(table).order_by(table.c[table.primary_key.columns.keys()[0]]))
            ]
            got = await bulk.select_sqlite(conn, table, "1 = 1", (), f"ORDER BY {table.primary_key.columns.keys()[0]}")
            assert got == expected and len(got) >= 2
            assert [type(v) for row in got for v in row.values()] == [type(v) for row in expected for v in row.values()]
    by_id = await store.records_by_id(["L1", "L2", "L3", "nobody"])
    assert sorted(by_id) == ["L1", "L2", "L3"]
    assert by_id["L1"] == await store.get_record("L1") and by_id["L2"].deleted_at is not None
    async with store.due_batch(NOW, 10) as batch:
        assert [(x["record_id"], x["next_due_at"], x["awaiting_task"]) for x in batch.rows] == [("L1", NOW, False)]


# --- durability: what a commit waits for, and the WAL -----------------------------------------------------


async def _durability(conn: Any, dialect: str) -> str:
    """SQLite's `synchronous` (2 FULL: each commit waits for the disk, 1 NORMAL) or PostgreSQL's
    `synchronous_commit` on this connection."""
    sql = "PRAGMA synchronous" if dialect == "sqlite" else "SHOW synchronous_commit"
    return str((await conn.exec_driver_sql(sql)).scalar_one())


async def test_a_due_batch_commits_without_waiting_for_the_disk_and_every_other_commit_waits(store: Store) -> None:
    """The at-most-once argument (docs/operations.md): queueing a batch need not be durable at once, because
    sending starts with a commit that is, and that one makes the earlier ones durable too."""
    relaxed, strict = ("1", "2") if store.dialect == "sqlite" else ("off", "on")
    await imported(store)
    due = NOW - dt.timedelta(minutes=1)
    enrollment = active_enrollment(due)
    first = await store.insert_enrollment(enrollment, now=due)
    async with store.due_batch(NOW, 10) as batch:
        assert await _durability(batch.conn, store.dialect) == relaxed
        await batch.save({"id": first, "step_index": 1})
        connection = batch.conn.sync_connection.connection.dbapi_connection  # type: ignore[union-attr]
    with pytest.raises(RuntimeError, match="a bug"):  # a batch that fails is rolled back and reset too
        async with store.due_batch(NOW, 10) as batch:
            raise RuntimeError("a bug")
    async with store.engine.connect() as conn:  # the same pooled connection, as every other verb gets it
        if store.dialect == "sqlite":
            assert conn.sync_connection.connection.dbapi_connection is connection  # type: ignore[union-attr]
        assert await _durability(conn, store.dialect) == strict
    assert (await store.get_enrollment(first) or {})["step_index"] == 1


async def test_sqlite_leaves_the_wal_to_the_daemon_s_checkpoint_which_writes_it_into_the_database_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outreach.db"
    store = await Store.open(f"sqlite:///{path}", fields=FIELDS)
    try:
        async with store.engine.connect() as conn:
            pages = (await conn.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar_one()
        assert pages == store_module.WAL_AUTOCHECKPOINT_PAGES
        await store.checkpoint()
        many = (Row(i + 2, f"R{i}", "lead", f"r{i}@example.org", {"first_name": "x" * 200}) for i in range(3000))
        await store.import_records(many, now=NOW)
        assert in_database_file(path, "SELECT count(*) FROM records") == 0  # in the WAL only
        copied = await store.checkpoint()
        assert copied > 100 and in_database_file(path, "SELECT count(*) FROM records") == 3000
        assert await store.checkpoint() == copied  # nothing new: the same frames, all in the file already
    finally:
        await store.close()
    memory = await Store.open("sqlite://", fields=FIELDS)
    try:
        assert await memory.checkpoint() == 0
    finally:
        await memory.close()

