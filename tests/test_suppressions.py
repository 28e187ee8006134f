"""The suppression list by hand (outreach/app/suppressions.py over store/suppressing.py), on SQLite and PostgreSQL:
adding an address stops the live sequences of its records, once; taking it off keeps why; the list filters."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from outreach import store as store_module
from outreach.app import events as app_events
from outreach.app import importing as import_rows
from outreach.app import suppressions
from outreach.store import Store, rows, tables
from tests import stores

pytestmark = pytest.mark.store

NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(hours=2)

PEOPLE = (
    import_rows.Row(2, "L1", "lead", "Jo@example.org", {"first_name": "Jo"}),  # kept as imported: not lower case
    import_rows.Row(3, "L2", "lead", "kim@example.net", {"first_name": "Kim"}),
    import_rows.Row(4, "C1", "contact", "jo@example.org", {"first_name": "Jo"}),  # the same person as a contact
)


async def seeded(store: Store) -> dict[str, int]:
    """PEOPLE, and an active enrollment of each in sequence `s` (C1 in `u`: its address is L1's in another case,
    which is one person in a sequence; L1 in a second one, `t`, too): their ids."""
    assert (await store.import_records(PEOPLE, now=NOW - dt.timedelta(days=1))).committed
    ids = {}
    for person in PEOPLE:
        assert person.id is not None and person.email is not None
        values = stores.active_enrollment(NOW + dt.timedelta(days=1), record_id=person.id, email=person.email)
        values["sequence"] = "u" if person.id == "C1" else "s"
        ids[person.id] = await store.insert_enrollment(values, now=NOW - dt.timedelta(hours=1))
    ids["L1-t"] = await store.insert_enrollment(
        {**stores.active_enrollment(NOW + dt.timedelta(days=1), email="Jo@example.org"), "sequence": "t"},
        now=NOW - dt.timedelta(hours=1),
    )
    return ids


async def state(store: Store, enrollment_id: int) -> tuple[str, str | None]:
    row = await store.get_enrollment(enrollment_id)
    assert row is not None
    return row["status"], row["reason"]


async def events_of(store: Store, kind: str) -> list[tuple[str | None, dict[str, Any], str]]:
    """(record id, data, source) of every event of a kind, the ones on no record too, in the order written."""
    e = tables.events
    async with store.engine.connect() as conn:
        found = await conn.execute(sa.select(e.c.record_id, e.c.data, e.c.source).where(e.c.kind == kind)
                                   .order_by(e.c.id))  # fmt: skip
        return [(r.record_id, dict(r.data), r.source) for r in found]


# --- adding by hand ------------------------------------------------------------------------------------------


async def test_adding_an_address_stops_the_live_sequences_of_every_record_with_it(store: Store) -> None:
    ids = await seeded(store)

    done = await suppressions.add(store, " JO@Example.org ", now=NOW)

    assert done == suppressions.Added("jo@example.org", "manual", added=True, records=("C1", "L1"), stopped=3)
    assert await state(store, ids["L1"]) == ("stopped", "suppressed") == await state(store, ids["L1-t"])
    assert await state(store, ids["C1"]) == ("stopped", "suppressed")
    assert await state(store, ids["L2"]) == ("active", None)  # another address
    assert await store.get_suppression("jo@example.org") == rows.Suppression("jo@example.org", "manual", NOW, "cli")
    assert await store.unsubscribed_at("jo@example.org") == NOW  # what keeps the records from being enrolled again
    written = {"email": "jo@example.org", "reason": "manual"}
    assert await events_of(store, "suppressed") == [("C1", written, "cli"), ("L1", written, "cli")]


async def test_adding_an_address_on_the_list_already_changes_nothing(store: Store) -> None:
    ids = await seeded(store)
    assert (await app_events.unsubscribe(store, "L2", now=NOW, source="web")).suppressed == ("kim@example.net",)

    again = await suppressions.add(store, "kim@example.net", reason="complaint", now=LATER)

    assert not again.added and again.reason == "unsubscribed" and again.stopped == 0
    assert again.existing == rows.Suppression("kim@example.net", "unsubscribed", NOW, "web")
    assert await store.get_suppression("KIM@example.net") == again.existing  # the first reason and time stay
    assert await events_of(store, "suppressed") == []
    assert await state(store, ids["L1"]) == ("active", None)
    first = await suppressions.add(store, "jo@example.org", now=NOW)
    assert first.added and first.stopped == 3
    second = await suppressions.add(store, "jo@example.org", now=LATER)
    assert (second.added, second.stopped, second.records) == (False, 0, ())
    assert len(await events_of(store, "suppressed")) == 2  # C1 and L1, the first time only


async def test_an_address_no_record_has_is_suppressed_with_an_event_on_no_record(store: Store) -> None:
    await seeded(store)

    done = await suppressions.add(store, "Info <info@Kranich.example.de>", reason="bounced", now=NOW)

    assert done == suppressions.Added("info@kranich.example.de", "bounced", added=True)
    assert await store.get_suppression("info@kranich.example.de") == rows.Suppression(
        "info@kranich.example.de", "bounced", NOW, "cli"
    )
    assert await events_of(store, "suppressed") == [
        (None, {"email": "info@kranich.example.de", "reason": "bounced"}, "cli")
    ]


async def test_a_deleted_record_with_the_address_gets_no_event(store: Store) -> None:
    await seeded(store)
    await app_events.delete(store, "C1", now=NOW)

    done = await suppressions.add(store, "jo@example.org", now=LATER)

    assert done.records == ("L1",) and done.stopped == 2
    assert [record for record, _data, _source in await events_of(store, "suppressed")] == ["L1"]


@pytest.mark.parametrize("bad", ["jo@@example.org", "jo", "", "jo@example.org, kim@example.net"])
async def test_a_bad_address_is_refused_and_nothing_is_written(store: Store, bad: str) -> None:
    ids = await seeded(store)
    with pytest.raises(ValueError, match="invalid email"):
        await suppressions.add(store, bad, now=NOW)
    assert await suppressions.listing(store) == suppressions.Listing((), 0)
    assert await state(store, ids["L1"]) == ("active", None)


async def test_an_unknown_reason_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="unknown reason 'spam'"):
        await suppressions.add(store, "jo@example.org", reason="spam", now=NOW)
    with pytest.raises(ValueError, match="unknown reason 'spam'"):
        await suppressions.listing(store, reason="spam")
    assert await store.get_suppression("jo@example.org") is None


# --- taking an address off ---------------------------------------------------------------------------------------


async def test_removing_deletes_the_entry_and_keeps_why_with_the_old_reason(store: Store) -> None:
    ids = await seeded(store)
    await suppressions.add(store, "jo@example.org", reason="complaint", now=NOW)

    done = await suppressions.remove(store, "Jo@Example.org", reason=" opted in again on the webinar form ", now=LATER)

    assert done == suppressions.Removed(
        "jo@example.org", "opted in again on the webinar form",
        rows.Suppression("jo@example.org", "complaint", NOW, "cli"), ("C1", "L1"),
    )  # fmt: skip
    assert await store.get_suppression("jo@example.org") is None
    assert await store.unsubscribed_at("jo@example.org") is None  # the records can be enrolled again
    kept = {"email": "jo@example.org", "reason": "opted in again on the webinar form", "was": "complaint"}
    assert await events_of(store, "unsuppressed") == [("C1", kept, "cli"), ("L1", kept, "cli")]
    assert [e.kind for e in await store.events("L1")][-2:] == ["suppressed", "unsuppressed"]
    assert await state(store, ids["L1"]) == ("stopped", "suppressed")  # nothing is restarted


async def test_removing_an_address_no_record_has_leaves_an_event_on_no_record(store: Store) -> None:
    await suppressions.add(store, "info@kranich.example.de", reason="bounced", now=NOW)
    done = await suppressions.remove(store, "info@kranich.example.de", reason="mailbox fixed", now=LATER, source="api")
    assert done.records == () and done.was.reason == "bounced"
    assert await events_of(store, "unsuppressed") == [
        (None, {"email": "info@kranich.example.de", "reason": "mailbox fixed", "was": "bounced"}, "api")
    ]


@pytest.mark.parametrize("reason", ["", "   "])
async def test_removing_needs_a_reason(store: Store, reason: str) -> None:
    await suppressions.add(store, "jo@example.org", now=NOW)
    with pytest.raises(ValueError, match="a reason is required"):
        await suppressions.remove(store, "jo@example.org", reason=reason, now=LATER)
    assert await store.get_suppression("jo@example.org") is not None
    assert await events_of(store, "unsuppressed") == []


async def test_removing_an_address_not_on_the_list_is_an_error_and_writes_nothing(store: Store) -> None:
    await suppressions.add(store, "jo@example.org", now=NOW)
    with pytest.raises(store_module.NotFound, match=r"kim@example\.net is not on the suppression list"):
        await suppressions.remove(store, "Kim@example.net", reason="typo", now=LATER)
    assert await events_of(store, "unsuppressed") == []
    assert await store.get_suppression("jo@example.org") is not None


async def test_an_odd_address_a_bounce_put_on_the_list_can_be_removed(store: Store) -> None:
    async with store.changing() as tx:  # a bounce report may name what no import would accept
        assert await tx.suppress("postmaster@localhost", "bounced", NOW, "imap anna")
    done = await suppressions.remove(store, "Postmaster@LOCALHOST", reason="test address", now=LATER)
    assert done.email == "postmaster@localhost" and done.was.source == "imap anna"
    assert await store.get_suppression("postmaster@localhost") is None


# --- the list ------------------------------------------------------------------------------------------------


async def _listed(store: Store, **criteria: Any) -> tuple[list[str], int]:
    found = await suppressions.listing(store, **criteria)
    return [s.email for s in found.suppressions], found.total


async def test_the_list_is_newest_first_and_filters_by_reason_and_address(store: Store) -> None:
    entries = [
        ("jo@example.org", "unsubscribed", "web"), ("kim@example.net", "bounced", "imap anna"),
        ("sam@example.org", "complaint", "imap ben"), ("lea_huber@example.de", "bounced", "imap anna"),
        ("leaxhuber@example.de", "manual", "cli"),
    ]  # fmt: skip
    async with store.changing() as tx:
        for hour, (email, reason, source) in enumerate(entries):
            assert await tx.suppress(email, reason, NOW + dt.timedelta(hours=hour), source)
    everyone = ["leaxhuber@example.de", "lea_huber@example.de", "sam@example.org", "kim@example.net", "jo@example.org"]

    assert await _listed(store) == (everyone, 5)
    assert await _listed(store, reason="bounced") == (["lea_huber@example.de", "kim@example.net"], 2)
    assert await _listed(store, search="@Example.ORG") == (["sam@example.org", "jo@example.org"], 2)
    assert await _listed(store, search="example.org", reason="complaint") == (["sam@example.org"], 1)
    assert await _listed(store, search="lea_") == (["lea_huber@example.de"], 1)  # `_` is no wildcard
    assert await _listed(store, search="%") == ([], 0)
    assert await _listed(store, limit=2) == (everyone[:2], 5)  # the total counts past the limit
    assert await _listed(store, search="  ") == (everyone, 5)
    (first, *_rest) = (await suppressions.listing(store, limit=1)).suppressions
    assert first == rows.Suppression("leaxhuber@example.de", "manual", NOW + dt.timedelta(hours=4), "cli")
