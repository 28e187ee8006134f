"""How a campaign's recipients are picked, batch by batch (issue 16's speed: bench/campaign.py): a walk of the
module's records in id order from the run's cursor, a window of `PICK` records at a time, each record tested
against the criteria as it is passed. A window the criteria match nothing of picks nobody and does not end the
step; the cursor is the last record looked at; other modules take no place in a window. On SQLite the walk is the
primary key's, with no sort: the planner, left to itself, would read and sort every match at each batch."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from outreach.app import campaigns
from outreach.app import rules as app_rules
from outreach.store import Store
from tests.worlds import RULES, Row, rows

APPLIED = dt.datetime(2027, 3, 1, 8, 0, tzinfo=dt.UTC)
SEND = dt.datetime(2027, 3, 2, 18, 1, tzinfo=dt.UTC)  # the example campaign spring-webinar's send_at, a minute on
CAMPAIGN = "spring-webinar"  # to the View dach-qualified: stage Qualified, country DE, AT or CH, not purchased


def lead(n: int, record_id: str, email: str | None, module: str = "lead", **fields: Any) -> Row:
    base: dict[str, Any] = {"first_name": record_id, "owner": "anna", "stage": "Qualified", "country": "DE"}
    return Row(n, record_id, module, email, {**base, **fields})


PEOPLE = (
    lead(2, "L1", "Sam@example.org"),
    lead(3, "L2", "kim@example.org"),
    lead(4, "L25", "con@example.org", module="contact"),  # another module: not in any window
    lead(5, "L3", "fr@example.org", country="FR"),  # the next window: neither matches
    lead(6, "L4", "new@example.org", stage="New"),
    lead(7, "L5", "sam@example.org"),  # the address of L1, in another case, two windows later
    lead(8, "L6", "mia@example.org"),
)


@pytest.fixture
async def world(backend: tuple[str, str | None], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Store]:
    """The example rules applied over PEOPLE; two records a window, and a tick's picking yields after each one."""
    url, schema = backend
    store = await Store.open(url, fields=RULES.settings.fields, upgrade=True, schema=schema)
    await store.import_records(rows(*PEOPLE), now=APPLIED)
    await app_rules.apply(store, RULES, now=APPLIED)
    monkeypatch.setattr(campaigns, "PICK", 2)
    monkeypatch.setattr(campaigns, "BATCH_SECONDS", 0.0)
    try:
        yield store
    finally:
        await store.close()


async def state(store: Store) -> tuple[str, str | None, list[tuple[str, str, str | None]]]:
    (run,) = await store.campaign_runs([CAMPAIGN])
    found = await campaigns.recipients(store, CAMPAIGN, 0, "recipients")
    skipped = await campaigns.recipients(store, CAMPAIGN, 0, "skipped")
    return run["status"], run["cursor"], sorted((r["record_id"], r["status"], r["reason"]) for r in found + skipped)


@pytest.mark.store
async def test_a_window_the_criteria_match_nothing_of_moves_the_cursor_and_does_not_end_the_step(world: Store) -> None:
    work = campaigns.Campaigns(world, RULES)
    report = await work.run(SEND)
    assert (report.picked, report.skipped) == (2, 0)
    status, cursor, found = await state(world)
    assert (status, cursor) == ("sending", "L2")
    assert [r[0] for r in found] == ["L1", "L2"]

    report = await work.run(SEND)  # L3 and L4: the View matches neither; the contact L25 is no lead
    assert (report.picked, report.skipped) == (0, 0)
    status, cursor, found = await state(world)
    assert (status, cursor) == ("sending", "L4")
    assert [r[0] for r in found] == ["L1", "L2"]

    report = await work.run(SEND)  # L5 (L1's address, a batch of its own later) and L6: a full window
    assert (report.picked, report.skipped) == (1, 1)
    assert (await state(world))[:2] == ("sending", "L6")

    await work.run(SEND)  # nothing after L6: the step ends
    status, cursor, found = await state(world)
    assert (status, cursor) == ("sent", "L6")
    assert [(r, s, why) for r, s, why in found if s == "skipped"] == [("L5", "skipped", "same address twice")]
    assert {r for r, _, _ in found} == {"L1", "L2", "L5", "L6"}


@pytest.mark.store
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # SQLite's planner, without statistics, chose badly
async def test_on_sqlite_the_candidates_are_read_along_the_primary_key_without_a_sort(world: Store) -> None:
    seen: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if "FROM records LEFT OUTER JOIN suppressions" in statement:
            seen.append((statement, parameters))

    sa.event.listen(world.engine.sync_engine, "before_cursor_execute", keep)
    try:
        work = campaigns.Campaigns(world, RULES)
        await work.run(SEND)
        await work.run(SEND)
    finally:
        sa.event.remove(world.engine.sync_engine, "before_cursor_execute", keep)
    assert len(seen) == 2
    statement, parameters = seen[-1]  # the second batch's, after a cursor
    async with world.engine.connect() as conn:
        plan = " / ".join(row[-1] for row in await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters))
    assert "records USING INDEX sqlite_autoindex_records_1" in plan, plan
    assert "TEMP B-TREE" not in plan, plan
