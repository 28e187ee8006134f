"""One transaction in which the application layer reads what an event is about and writes what the engine decided.

`Store.changing()` opens it. The application layer reads the live enrollments (and the record) an event concerns
through it, asks the engine what the event means (outreach/engine/events.py), and writes that answer through it:
the event, the enrollments' new states, the suppressed addresses. All of it commits together or not at all, and
nothing here decides anything: a business rule in an UPDATE would be a decision in the wrong place.

Concurrency: on an SQLite file the transaction starts with BEGIN IMMEDIATE, so what it reads cannot change before
it writes (SQLite's driver would otherwise read outside the transaction, before its first write); on PostgreSQL
the enrollments it reads are locked FOR UPDATE, so the scheduler's claim (FOR UPDATE SKIP LOCKED) passes them by
until it commits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from outreach.store import bulk, campaigning, rows, tables
from outreach.store import criteria as sql_criteria

LIVE = ("active", "blocked")  # an enrollment's statuses while it can still send
_ENROLLMENT_COLUMNS = frozenset(tables.enrollments.c.keys())


def enrollment_update(values: Mapping[str, Any], read: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The row that brings an enrollment to `values` (its columns): its id and the columns that differ from the row
    as it was `read` (every column when it was not read), so that indexes on the others are left alone; None when
    nothing differs."""
    if read is None:
        return {k: v for k, v in values.items() if k in _ENROLLMENT_COLUMNS}
    changed = {k: v for k, v in values.items() if k in _ENROLLMENT_COLUMNS and read.get(k, v) != v}
    return {"id": values["id"], **changed} if changed else None


async def insert_event(
    conn: AsyncConnection, record_id: str | None, kind: str, at: dt.datetime, data: Mapping[str, Any], source: str
) -> None:
    await conn.execute(
        sa.insert(tables.events).values(record_id=record_id, kind=kind, at=at, data=dict(data), source=source)
    )


@dataclasses.dataclass
class Changes:
    """Reads and writes inside one transaction (see the module's docstring)."""

    conn: AsyncConnection
    dialect: str
    record_of: Callable[[Mapping[Any, Any]], rows.Record]
    _read: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict, repr=False)

    # --- reading ---------------------------------------------------------------------------------------

    async def enrollments(
        self,
        *,
        ids: Collection[int] | None = None,
        record_ids: Collection[str] | None = None,
        emails: Collection[str] | None = None,
        sequences: Collection[str] | None = None,
        live_only: bool = True,
    ) -> list[dict[str, Any]]:
        """Enrollments by id, record, address (any case) or sequence (the criteria given all hold), live ones only
        unless `live_only` is False; in id order, locked until the transaction ends (PostgreSQL)."""
        e = tables.enrollments
        query = sa.select(e).order_by(e.c.id)
        if ids is not None:
            query = query.where(e.c.id.in_(list(ids)))
        if record_ids is not None:
            query = query.where(e.c.record_id.in_(list(record_ids)))
        if emails is not None:
            query = query.where(sa.func.lower(e.c.email).in_(sorted({x.lower() for x in emails})))
        if sequences is not None:
            query = query.where(e.c.sequence.in_(list(sequences)))
        if live_only:
            query = query.where(e.c.status.in_(LIVE))
        if self.dialect == "postgresql":
            query = query.with_for_update()
        found = [dict(r._mapping) for r in await self.conn.execute(query)]
        self._read.update((row["id"], row) for row in found)
        return found

    async def record(self, record_id: str) -> rows.Record | None:
        """The record, deleted or not (None: no such record); locked until the transaction ends (PostgreSQL)."""
        r = tables.records
        query = sa.select(r).where(r.c.id == record_id)
        if self.dialect == "postgresql":
            query = query.with_for_update()
        row = (await self.conn.execute(query)).first()
        return self.record_of(row._mapping) if row is not None else None

    async def suppressed(self, email: str) -> bool:
        s = tables.suppressions
        return (await self.conn.execute(sa.select(s.c.email).where(s.c.email == email.lower()))).first() is not None

    # --- writing ---------------------------------------------------------------------------------------

    async def event(self, record_id: str | None, kind: str, at: dt.datetime, data: Mapping[str, Any],
                    source: str) -> None:  # fmt: skip
        await insert_event(self.conn, record_id, kind, at, data, source)

    async def save_enrollment(self, values: Mapping[str, Any]) -> None:
        """An enrollment's new state (its columns); only the columns that differ from what was read are written."""
        row = enrollment_update(values, self._read.get(values["id"]))
        if row is not None:
            await bulk.update(self.conn, tables.enrollments, "id", [row])

    async def suppress(self, email: str, reason: str, at: dt.datetime, source: str) -> bool:
        """Keep an address off every sequence and campaign; False when it was already (its first reason stays)."""
        if await self.suppressed(email):
            return False
        await self.conn.execute(
            sa.insert(tables.suppressions).values(email=email.lower(), reason=reason, at=at, source=source[:200])
        )
        return True

    async def hit(self, outbox_id: int, kind: str, link: int | None, at: dt.datetime, automated: str | None,
                  user_agent: str) -> None:  # fmt: skip
        """An open or a click of a message's tracked link, and why it looks automated (None: a person)."""
        await self.conn.execute(sa.insert(tables.link_hits).values(
            outbox_id=outbox_id, kind=kind, link=link, at=at, automated=automated[:200] if automated else None,
            user_agent=user_agent[:300],
        ))  # fmt: skip

    async def update_record(self, record_id: str, values: Mapping[str, Any]) -> None:
        """Columns of a record (converted_at, deleted_at, type, updated_at ...), as the application layer says."""
        await self.conn.execute(sa.update(tables.records).where(tables.records.c.id == record_id).values(**values))

    async def set_fields(self, record_id: str, values: Mapping[str, Any], now: dt.datetime) -> None:
        """Fields of a record, built-in or custom (a campaign's trigger action); a stage change restarts the
        record's time in its stage, as `records set` does."""
        r = tables.records
        old = (await self.conn.execute(sa.select(r.c.stage, r.c.fields).where(r.c.id == record_id))).first()
        if old is None:
            return
        columns = {k: v for k, v in values.items() if k in rows.BUILTIN_COLUMNS}
        custom = {k: sql_criteria.json_value(v) for k, v in values.items() if k not in rows.BUILTIN_COLUMNS}
        update: dict[str, Any] = {**columns, "updated_at": now}
        if custom:
            update["fields"] = {**dict(old.fields or {}), **custom}
        if "stage" in columns and columns["stage"] != old.stage:
            update["stage_entered_at"] = now
        await self.conn.execute(sa.update(r).where(r.c.id == record_id).values(**update))

    @contextlib.asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A part of the transaction that can fail alone: its writes are undone and the rest goes on."""
        async with self.conn.begin_nested():
            yield

    async def add_task(self, values: Mapping[str, Any]) -> int:
        """A task (its columns); returns its id."""
        done = await self.conn.execute(sa.insert(tables.tasks).values(**values))
        return int(done.inserted_primary_key[0])  # type: ignore[index]

    # --- campaigns -------------------------------------------------------------------------------------

    async def campaign_runs(self) -> list[dict[str, Any]]:
        """Every campaign's run, locked for this transaction (it writes them back)."""
        return await campaigning.runs(self.conn, lock=True)

    async def save_campaign_run(self, values: Mapping[str, Any]) -> None:
        await campaigning.save_run(self.conn, values)

    async def campaign_hit(self, outbox_id: int, kind: str, at: dt.datetime,
                           automated: bool) -> tuple[str, int, str, tuple[str, ...]] | None:  # fmt: skip
        return await campaigning.hit(self.conn, outbox_id, kind, at, automated)

    async def campaign_bounced(self, outbox_id: int, at: dt.datetime) -> tuple[str, int, str] | None:
        return await campaigning.bounced(self.conn, outbox_id, at)


@dataclasses.dataclass(frozen=True)
class Failed:
    """A claimed message that failed for good: its outbox id, the server's reply, its enrollment and record."""

    outbox_id: int
    detail: str
    enrollment_id: int | None
    record_id: str | None


@dataclasses.dataclass
class FinishedSends(Changes):
    """The transaction that wrote what became of claimed messages (Store.finishing_sends), and those that failed."""

    failed: list[Failed] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Renamed:
    """A definition renamed as a rule set was applied: its kind, the name it had, its new name, and the hash of the
    version that was in force under the old name."""

    kind: str
    old: str
    new: str
    old_hash: str


@dataclasses.dataclass
class AppliedDefinitions(Changes):
    """The transaction that made a rule set's definitions the ones in force (Store.applying_definitions), and what
    it added, changed and removed: {"added" | "changed" | "removed": [(kind, name), ...]}, and renamed."""

    done: dict[str, list[tuple[str, str]]] = dataclasses.field(default_factory=dict)
    renamed: list[Renamed] = dataclasses.field(default_factory=list)
    previous: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)  # changed: the hash before

    async def definition_body(self, kind: str, name: str, digest: str) -> dict[str, Any] | None:
        """A stored version's document, read in this transaction."""
        d = tables.definitions
        query = sa.select(d.c.body).where(d.c.kind == kind, d.c.name == name, d.c.hash == digest)
        body = (await self.conn.execute(query)).scalar()
        return dict(body) if body is not None else None
