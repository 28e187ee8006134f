"""The store in memory that RuleTests and `simulate` run on (outreach/store/memory.py): statements run at once on
the event loop's thread, through SQLAlchemy's aiosqlite dialect, with nothing private of aiosqlite."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import AsyncIterator

import pytest

from outreach.app import importing as import_rows
from outreach.app import rules as app_rules
from outreach.store import memory
from tests.worlds import RULES

pytestmark = pytest.mark.store

NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
async def kept() -> AsyncIterator[memory.MemoryStore]:
    m = memory.MemoryStore()
    try:
        yield m
    finally:
        await m.close()


async def test_no_thread_is_started_and_every_statement_runs_on_the_loops_thread(kept: memory.MemoryStore) -> None:
    before = threading.active_count()
    store = await kept.fresh(RULES.settings.fields)
    await app_rules.apply(store, RULES, now=NOW)
    assert (await store.import_records([import_rows.Row(2, "L1", "lead", "jo@example.org", {})], now=NOW)).committed
    assert [r.id for r in await store.list_records(now=NOW)] == ["L1"]
    assert threading.active_count() == before  # aiosqlite would run a thread for the connection


async def test_a_fresh_store_is_empty_but_keeps_the_definitions_applied(kept: memory.MemoryStore) -> None:
    store = await kept.fresh(RULES.settings.fields)
    await app_rules.apply(store, RULES, now=NOW)
    await store.import_records([import_rows.Row(2, "L1", "lead", "jo@example.org", {})], now=NOW)
    base = {"email": "jo@example.org", "sequence": "welcome", "sequence_hash": "h", "enrolled_by": "anna",
            "step_index": 0, "steps_done": 0, "started_at": NOW, "awaiting_task": False}  # fmt: skip
    first = await store.insert_enrollment({**base, "record_id": "L1", "status": "active",
                                           "next_due_at": NOW + dt.timedelta(days=2)}, now=NOW)  # fmt: skip
    assert kept.next_step_due() == NOW + dt.timedelta(days=2)
    assert kept.next_retry_due() is None
    again = await kept.fresh(RULES.settings.fields)
    assert again is store
    assert await store.list_records(now=NOW) == [] and await store.enrollments() == []
    assert kept.next_step_due() is None
    assert ("Sequence", "welcome") in await store.active_definitions()  # the same rule set stays applied
    await store.import_records([import_rows.Row(2, "L1", "lead", "jo@example.org", {})], now=NOW)
    assert await store.insert_enrollment({**base, "record_id": "L1", "status": "active", "next_due_at": NOW},
                                         now=NOW) == first  # ids start again  # fmt: skip


async def test_where_records_stand_in_a_stage_is_read_for_the_runner(kept: memory.MemoryStore) -> None:
    store = await kept.fresh(RULES.settings.fields)
    rows = [import_rows.Row(2, "L1", "lead", "jo@example.org", {"stage": "New"}),
            import_rows.Row(3, "L2", "lead", "kim@example.net", {}),
            import_rows.Row(4, "C1", "contact", "sam@example.com", {"stage": "New"})]  # fmt: skip
    await store.import_records(rows, now=NOW)
    assert kept.staged("lead", "stage") == [("L1", "New", NOW)]
    assert kept.reminder_states("partner-leads") == {}
