"""The store's verbs for signed links: the message a link's key names, and the recent clicks on its links."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from outreach.store import rows, tables


class LinkVerbs:
    engine: AsyncEngine

    async def message_by_link(self, key: str) -> rows.LinkedMessage | None:
        """The message whose links name `key` (hex), or None."""
        o = tables.outbox
        query = sa.select(o.c.id, o.c.record_id, o.c.recipient, o.c.enrollment_id, o.c.campaign, o.c.state,
                          o.c.sent_at, o.c.link_urls, o.c.language).where(o.c.link_key == key)  # fmt: skip
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        urls: list[Any] = row.link_urls or []
        return rows.LinkedMessage(row.id, row.record_id, row.recipient, row.enrollment_id, row.campaign, row.state,
                                  row.sent_at, tuple(str(u) for u in urls), row.language or "en")  # fmt: skip

    async def links_clicked(self, outbox_id: int, since: dt.datetime) -> set[int]:
        """The links of a message clicked since `since` (any, person or not)."""
        h = tables.link_hits
        query = sa.select(h.c.link).distinct().where(h.c.outbox_id == outbox_id, h.c.kind == "click", h.c.at >= since)
        async with self.engine.connect() as conn:
            return {r.link for r in await conn.execute(query) if r.link is not None}


class StatusVerbs:
    """What /healthz and /metrics read: that the database answers, and counts of what it holds."""

    engine: AsyncEngine

    async def ping(self) -> None:
        """One round trip to the database; its error when it does not answer."""
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def status(self, now: dt.datetime) -> rows.Status:
        o, e, m, h, ev = tables.outbox, tables.enrollments, tables.mailbox_state, tables.link_hits, tables.events
        automated = h.c.automated.is_not(None)
        async with self.engine.connect() as conn:
            messages = {r[0]: int(r[1]) for r in await conn.execute(
                sa.select(o.c.state, sa.func.count()).group_by(o.c.state))}  # fmt: skip
            enrollments = {r[0]: int(r[1]) for r in await conn.execute(
                sa.select(e.c.status, sa.func.count()).group_by(e.c.status))}  # fmt: skip
            due = (await conn.execute(sa.select(sa.func.count()).where(
                e.c.status == "active", e.c.next_due_at <= now, e.c.awaiting_task.is_(False)))).scalar_one()  # fmt: skip
            mailboxes = {r[0]: r[1] for r in await conn.execute(sa.select(m.c.mailbox, m.c.updated_at))}
            hits = {(r[0], bool(r[1])): int(r[2]) for r in await conn.execute(
                sa.select(h.c.kind, automated, sa.func.count()).group_by(h.c.kind, automated))}  # fmt: skip
            unsubscribes = (await conn.execute(
                sa.select(sa.func.count()).where(ev.c.kind == "unsubscribed"))).scalar_one()  # fmt: skip
        return rows.Status(messages, enrollments, int(due), mailboxes, hits, int(unsubscribes))
