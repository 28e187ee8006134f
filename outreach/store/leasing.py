"""Leases: which daemon does a piece of singleton work (a mailbox's poller, the reminder run, housekeeping), and
which daemons are alive. A lease names its holder and expires; a daemon renews what it holds well before then,
and when it dies another takes the work over once the lease has expired. Each daemon also holds `daemon:<id>`,
which says it is alive (and what it last did): the outbox rows it marked `sending` are its own, and become
`unknown` only once that lease has expired.

Times are the caller's `now` (the daemon's clock), so that tests can run leases on a clock of their own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from outreach.store import rows, tables

DAEMON = "daemon:"  # the prefix of the lease that says a daemon is alive


class LeaseVerbs:
    engine: AsyncEngine
    dialect: str

    async def take_lease(self, name: str, holder: str, now: dt.datetime, ttl: dt.timedelta,
                         info: Mapping[str, Any] | None = None) -> bool:  # fmt: skip
        """Take or renew the lease `name` for `holder` until now + ttl: True when `holder` holds it now (it was
        free, expired, or its own), False when another holder's lease runs."""
        lt = tables.leases
        values = {"holder": holder, "expires_at": now + ttl, "renewed_at": now, "info": dict(info or {})}
        async with self.engine.begin() as conn:
            done = await conn.execute(
                sa.update(lt).where(lt.c.name == name, sa.or_(lt.c.holder == holder, lt.c.expires_at <= now))
                .values(**values)
            )  # fmt: skip
            if done.rowcount:
                return True
            exists = (await conn.execute(sa.select(lt.c.name).where(lt.c.name == name))).first()
            if exists is not None:
                return False
        try:
            async with self.engine.begin() as conn:
                await conn.execute(sa.insert(lt).values(name=name, **values))
        except sa.exc.IntegrityError:  # another daemon inserted it first
            return False
        return True

    async def release_lease(self, name: str, holder: str) -> None:
        """Give a lease up (a daemon that stops), so another takes the work over at once."""
        lt = tables.leases
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(lt).where(lt.c.name == name, lt.c.holder == holder))

    async def release_leases(self, holder: str, *, keep: str | None = None) -> None:
        """Give up every lease of `holder` (but `keep`)."""
        lt = tables.leases
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(lt).where(lt.c.holder == holder, lt.c.name != (keep or "")))

    async def forget_daemons(self, before: dt.datetime) -> int:
        """Drop the leases of daemons that have been gone since before `before`."""
        lt = tables.leases
        async with self.engine.begin() as conn:
            done = await conn.execute(sa.delete(lt).where(lt.c.name.startswith(DAEMON), lt.c.expires_at < before))
            return int(done.rowcount or 0)

    async def leases(self) -> list[rows.Lease]:
        """Every lease, live or expired, by name."""
        lt = tables.leases
        async with self.engine.connect() as conn:
            found = await conn.execute(sa.select(lt).order_by(lt.c.name))
            return [rows.Lease(r.name, r.holder, r.expires_at, r.renewed_at, dict(r.info or {})) for r in found]

    async def recover_outbox(self, now: dt.datetime | None = None) -> int:
        """Messages left in `sending` by a daemon that is gone (its `daemon:` lease expired or never was) may or
        may not have gone out: they become `unknown`, are never sent again by themselves, and wait for an
        operator (outreach outbox requeue). Rows of a daemon whose lease runs are left alone. Without `now`,
        every `sending` row is taken (one daemon on SQLite, at its start)."""
        o, lt = tables.outbox, tables.leases
        query = sa.update(o).where(o.c.state == "sending")
        if now is not None:
            alive = sa.select(lt.c.holder).where(lt.c.name.startswith(DAEMON), lt.c.expires_at > now)
            query = query.where(sa.or_(o.c.daemon_id.is_(None), o.c.daemon_id.not_in(alive)))
        async with self.engine.begin() as conn:
            done = await conn.execute(query.values(state="unknown"))
            return int(done.rowcount or 0)
