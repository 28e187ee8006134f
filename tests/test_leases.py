"""Leases on SQLite and PostgreSQL: one holder at a time, taken over once expired; a daemon's `sending` rows
become `unknown` only once its own lease has expired; `outreach status` reads them."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from outreach.app import status
from outreach.store import Store, tables

pytestmark = pytest.mark.store

T0 = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)
TTL = dt.timedelta(seconds=30)


async def test_a_lease_has_one_holder_until_it_expires(store: Store) -> None:
    assert await store.take_lease("mailbox:anna", "a", T0, TTL) is True
    assert await store.take_lease("mailbox:anna", "b", T0 + dt.timedelta(seconds=10), TTL) is False
    assert await store.take_lease("mailbox:anna", "a", T0 + dt.timedelta(seconds=20), TTL) is True  # renewed
    assert await store.take_lease("mailbox:anna", "b", T0 + dt.timedelta(seconds=45), TTL) is False  # still a's
    assert await store.take_lease("mailbox:anna", "b", T0 + dt.timedelta(seconds=51), TTL) is True  # a is gone
    assert await store.take_lease("mailbox:anna", "a", T0 + dt.timedelta(seconds=52), TTL) is False
    (lease,) = await store.leases()
    assert (lease.name, lease.holder, lease.expires_at) == ("mailbox:anna", "b", T0 + dt.timedelta(seconds=81))


async def test_released_leases_go_to_the_next_at_once(store: Store) -> None:
    for name in ("reminders", "housekeeping", "daemon:a"):
        assert await store.take_lease(name, "a", T0, TTL)
    await store.release_leases("a", keep="daemon:a")
    assert [x.name for x in await store.leases()] == ["daemon:a"]
    assert await store.take_lease("reminders", "b", T0 + dt.timedelta(seconds=1), TTL) is True


async def _sending(store: Store, daemon_id: str | None) -> int:
    async with store.engine.begin() as conn:
        result = await conn.execute(sa.insert(tables.outbox).values(
            sender="anna@example.com", recipient="jo@example.org", subject="s", message_id=f"<{daemon_id}-{T0}>",
            message=b"m", state="sending", attempts=1, created_at=T0, daemon_id=daemon_id))  # fmt: skip
        return int(result.inserted_primary_key[0])  # type: ignore[index]


async def _state(store: Store, outbox_id: int) -> str:
    async with store.engine.connect() as conn:
        return str((await conn.execute(sa.select(tables.outbox.c.state).where(tables.outbox.c.id == outbox_id))).scalar())


async def test_only_the_mail_in_flight_of_a_daemon_that_is_gone_becomes_unknown(store: Store) -> None:
    await store.take_lease("daemon:alive", "alive", T0, TTL)
    await store.take_lease("daemon:dead", "dead", T0 - dt.timedelta(minutes=5), TTL)  # expired 4.5 minutes ago
    mine, theirs, nobodys = await _sending(store, "alive"), await _sending(store, "dead"), await _sending(store, None)
    assert await store.recover_outbox(T0) == 2
    assert [await _state(store, i) for i in (mine, theirs, nobodys)] == ["sending", "unknown", "unknown"]
    assert await store.recover_outbox(T0 + dt.timedelta(minutes=1)) == 1  # once its lease expired too
    assert await _state(store, mine) == "unknown"


async def test_the_claim_names_the_daemon(store: Store) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(sa.insert(tables.outbox).values(
            sender="anna@example.com", recipient="jo@example.org", subject="s", message_id="<q>", message=b"m",
            state="queued", attempts=0, created_at=T0))  # fmt: skip
    (claimed,) = await store.claim_outbox(T0, 10, "attempt-1", "host:1:abc")
    async with store.engine.connect() as conn:
        row = (await conn.execute(sa.select(tables.outbox).where(tables.outbox.c.id == claimed["id"]))).one()
    assert (row.state, row.daemon_id, row.attempt_id) == ("sending", "host:1:abc", "attempt-1")


async def test_status_lists_daemons_alive_first_with_what_they_hold(store: Store) -> None:
    await store.take_lease("daemon:b", "b", T0, TTL, {"host": "web-2", "pid": 42, "last_tick": "2026-12-03T09:00:00",
                                                      "sent_today": 17})  # fmt: skip
    await store.take_lease("daemon:a", "a", T0 - dt.timedelta(minutes=5), TTL, {"host": "web-1", "pid": 7})
    await store.take_lease("reminders", "b", T0, TTL)
    await store.take_lease("mailbox:anna", "a", T0 - dt.timedelta(minutes=5), TTL)  # expired with its daemon
    found, work = await status.daemons(store, T0 + dt.timedelta(seconds=1))
    assert [(d.id, d.alive, d.holds, d.host, d.pid, d.sent_today) for d in found] == [
        ("b", True, ("reminders",), "web-2", 42, 17), ("a", False, (), "web-1", 7, None)]  # fmt: skip
    assert {x.name for x in work} == {"reminders", "mailbox:anna"}
    assert await store.forget_daemons(T0 - dt.timedelta(minutes=1)) == 1
    assert [d.id for d in (await status.daemons(store, T0))[0]] == ["b"]
