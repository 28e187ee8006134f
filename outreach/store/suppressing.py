"""The store's verbs for the suppression list: the addresses kept off every sequence and campaign.

Mixed into Store. Events write to the list (an unsubscribe, a complaint, a permanent bounce: `Changes.suppress` in
the event's transaction); an operator reads it, and adds to it (outreach/app/suppressions.py, through
`Store.changing`) or takes an address off it (`remove_suppression`, which keeps why in the records' events).
Addresses are kept and compared in lower case.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from outreach.store import changes, rows, tables

UNSUPPRESSED = "unsuppressed"  # the event an address taken off the list leaves


def _suppression(m: Any) -> rows.Suppression:
    return rows.Suppression(email=m["email"], reason=m["reason"], at=m["at"], source=m["source"])


def _records_with(email: str) -> sa.Select[Any]:
    """Ids of the records (not deleted) whose address is `email`, in any case."""
    r = tables.records
    return (
        sa.select(r.c.id)
        .where(sa.func.lower(r.c.email) == email.lower(), r.c.deleted_at.is_(None))
        .order_by(r.c.id)
    )


class SuppressionVerbs:
    engine: AsyncEngine
    dialect: str
    _write_lock: Callable[[AsyncConnection], Awaitable[None]]

    async def list_suppressions(
        self, *, reason: str | None = None, search: str | None = None, limit: int | None = None
    ) -> tuple[list[rows.Suppression], int]:
        """Suppressed addresses, newest first, with how many match in all (`limit` aside): only those of a
        `reason`, only those whose address contains `search` (any case; a domain, a part of one)."""
        s = tables.suppressions
        where: list[sa.ColumnElement[bool]] = []
        if reason is not None:
            where.append(s.c.reason == reason)
        if search:
            where.append(s.c.email.contains(search.lower(), autoescape=True))
        query = sa.select(s).where(*where).order_by(s.c.at.desc(), s.c.email)
        if limit is not None:
            query = query.limit(limit)
        count = sa.select(sa.func.count()).select_from(s).where(*where)
        async with self.engine.connect() as conn:
            found = [_suppression(row._mapping) for row in await conn.execute(query)]
            total = int((await conn.execute(count)).scalar_one())
        return found, total

    async def get_suppression(self, email: str) -> rows.Suppression | None:
        """The address's entry on the suppression list (any case), or None."""
        s = tables.suppressions
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(s).where(s.c.email == email.lower()))).first()
        return _suppression(row._mapping) if row is not None else None

    async def records_with_email(self, email: str) -> list[str]:
        """Ids of the records (not deleted) whose address is `email`, in any case, in id order."""
        async with self.engine.connect() as conn:
            return [row.id for row in await conn.execute(_records_with(email))]

    async def remove_suppression(
        self, email: str, *, reason: str, now: dt.datetime, source: str = "cli"
    ) -> tuple[rows.Suppression, list[str]] | None:
        """Take an address off the suppression list, and keep why: in the same transaction, an `unsuppressed`
        event ({email, reason, was: the entry's reason}) on each record with the address, or one on no record when
        none has it. Returns the entry removed and those records; None when the address was not on the list."""
        s = tables.suppressions
        address = email.lower()
        async with self.engine.begin() as conn:
            await self._write_lock(conn)
            query = sa.select(s).where(s.c.email == address)
            if self.dialect == "postgresql":
                query = query.with_for_update()
            row = (await conn.execute(query)).first()
            if row is None:
                return None
            was = _suppression(row._mapping)
            records = [r.id for r in await conn.execute(_records_with(address))]
            await conn.execute(sa.delete(s).where(s.c.email == address))
            data = {"email": address, "reason": reason, "was": was.reason}
            for record_id in records or [None]:
                await changes.insert_event(conn, record_id, UNSUPPRESSED, now, data, source)
        return was, records
