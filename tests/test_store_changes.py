"""An event's transaction (Store.changing): what it reads cannot change before it writes, on either database.

On an SQLite file it holds the write lock from its first statement (SQLite's driver would otherwise read outside
the transaction); on PostgreSQL the enrollments it reads are locked, and the scheduler's claim passes them by.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from outreach.app import importing as import_rows
from outreach.store import Store
from tests.stores import PG_URL, active_enrollment

pytestmark = pytest.mark.store

NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
PEOPLE = (import_rows.Row(2, "L1", "lead", "jo@example.org", {}), import_rows.Row(3, "L2", "lead", "kim@example.net", {}))


async def seeded(url: str, schema: str | None = None) -> Store:
    store = await Store.open(url, upgrade=True, schema=schema)
    assert (await store.import_records(PEOPLE, now=NOW)).committed
    for row in PEOPLE:
        assert row.id is not None and row.email is not None
        await store.insert_enrollment(active_enrollment(NOW, record_id=row.id, email=row.email), now=NOW)
    return store


@pytest.fixture
async def sqlite_file(tmp_path: Path) -> AsyncIterator[tuple[Store, Path]]:
    path = tmp_path / "o.db"
    store = await seeded(f"sqlite:///{path}")
    try:
        yield store, path
    finally:
        await store.close()


async def test_on_an_sqlite_file_the_write_lock_is_held_before_anything_is_read(
    sqlite_file: tuple[Store, Path],
) -> None:
    store, path = sqlite_file
    other = sqlite3.connect(path, timeout=0)  # another process's writer, that does not wait
    try:
        async with store.changing() as tx:
            assert len(await tx.enrollments(record_ids=["L1"])) == 1  # so far only a read
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")  # the transaction ended: free again
        other.rollback()
    finally:
        other.close()


async def test_a_write_that_fails_inside_leaves_nothing_behind(sqlite_file: tuple[Store, Path]) -> None:
    store, _path = sqlite_file
    with pytest.raises(RuntimeError):
        async with store.changing() as tx:
            (row,) = await tx.enrollments(record_ids=["L1"])
            await tx.save_enrollment({**row, "status": "stopped", "reason": "replied"})
            await tx.event("L1", "replied", NOW, {}, "test")
            raise RuntimeError("the engine's answer could not be written whole")
    (row,) = await store.enrollments(record_id="L1")
    assert (row["status"], row["reason"]) == ("active", None)
    assert [e.kind for e in await store.events("L1")] == ["enrolled"]


async def test_only_the_columns_that_changed_are_written(sqlite_file: tuple[Store, Path]) -> None:
    store, _path = sqlite_file
    async with store.changing() as tx:
        (row,) = await tx.enrollments(record_ids=["L1"])
        unchanged = await store.get_enrollment(row["id"])
        assert unchanged is not None
        await tx.save_enrollment({**row, "reason": "held"})
    after = await store.get_enrollment(row["id"])
    assert after == {**unchanged, "reason": "held"}


@pytest.fixture
async def two_daemons(pg_schema: str) -> AsyncIterator[tuple[Store, Store]]:
    """PostgreSQL only: two stores (two daemons' connections) on one schema, with L1 and L2 due."""
    first = await seeded(PG_URL, pg_schema)
    second = await Store.open(PG_URL, schema=pg_schema)
    try:
        yield first, second
    finally:
        await second.close()
        await first.close()


async def test_on_postgresql_an_events_enrollments_are_passed_by_the_schedulers_claim(
    two_daemons: tuple[Store, Store],
) -> None:
    """PostgreSQL only: several daemons share the work there (SQLite runs one daemon)."""
    events_side, scheduler_side = two_daemons
    async with events_side.changing() as tx:
        (locked,) = await tx.enrollments(record_ids=["L1"])
        async with scheduler_side.due_batch(NOW, 10) as batch:
            assert [r["record_id"] for r in batch.rows] == ["L2"]  # L1 is the event's until it commits
        await tx.save_enrollment({**locked, "status": "stopped", "reason": "replied", "next_due_at": None})
    async with scheduler_side.due_batch(NOW, 10) as batch:
        assert [r["record_id"] for r in batch.rows] == ["L2"]  # and stopped once it has
