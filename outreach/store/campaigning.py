"""The store's verbs for bulk campaigns: runs, picking recipients in batches, rendering them into the outbox,
statistics and recipient lists. Mixed into Store; `campaign_*` verbs of `changes.Changes` serve the transactions of
`apply`, of an open or click, and of a bounce.

Picking (`campaign_expansion`) reads the next batch of candidates after the run's cursor, in record id order, with
what the engine needs to decide on each (its address, whether it is deleted or suppressed, whether a follow-up's
`except` criteria match it now), and writes the decisions, the new cursor and the run's status in one transaction:
a restart resumes after the last batch written, and nobody is picked twice (one row per campaign, step and record).
Rendering (`campaign_rendering`) takes queued recipients in id order and writes their outbox rows and their new
status together, so a message is rendered once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from outreach.rules import criteria as rules_criteria
from outreach.rules.criteria import FieldType
from outreach.store import bulk, rows, tables
from outreach.store import criteria as sql_criteria

_CHUNK = 500  # values per IN list
_COMPOUND = 400  # SELECTs in one UNION ALL: under SQLite's limit of 500
RUN_COLUMNS = tuple(c.name for c in tables.campaign_runs.c)


@dataclasses.dataclass(frozen=True)
class Scope:
    """Whom a step of a campaign picks from. The campaign mail (step 0): the module's records matching `where`
    (a view's criteria or the campaign's own) or those of `record_ids`. A follow-up: the recipients of the
    campaign mail who received it, or (`opened_only`) opened it, less those its `except` criteria match now."""

    campaign: str
    step: int
    module: str
    now: dt.datetime  # anchors older_than / newer_than
    where: rules_criteria.Criteria | None = None
    record_ids: tuple[str, ...] = ()
    opened_only: bool = False
    except_: rules_criteria.Criteria | None = None


class Picked(NamedTuple):
    """A candidate of a batch, as read: the engine decides whether it is mailed. A named tuple: a campaign makes
    100,000 of them, and a frozen dataclass takes three times as long to make."""

    record_id: str
    email: str | None
    deleted: bool
    suppressed: str | None
    excepted: bool = False
    bounced: bool = False


@dataclasses.dataclass
class Expansion:
    """A batch of candidates after the cursor, and the writes that keep the decisions on them."""

    conn: AsyncConnection
    scope: Scope
    cursor: str | None  # the last record id looked at before this batch
    candidates: list[Picked]
    mailed_before: set[str]  # of the batch's addresses (lower case), those this step already mails
    after: str | None  # the cursor once this batch is written: the last record id it looked at
    more: bool  # records may follow `after` (else this batch is the step's last)
    recipients: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def add(self, record_id: str, email: str | None, status: str, reason: str | None) -> None:
        self.recipients.append({"campaign": self.scope.campaign, "step": self.scope.step, "record_id": record_id,
                                "email": email.lower() if email else None, "status": status, "reason": reason,
                                "automated_opens": 0})  # fmt: skip

    async def flush(self, cursor: str | None, *, finished_at: dt.datetime | None) -> None:
        await bulk.insert(self.conn, tables.campaign_recipients, self.recipients)
        s = self.scope
        if s.step == 0:
            r = tables.campaign_runs
            values: dict[str, Any] = {"cursor": cursor}
            if finished_at is not None:
                values |= {"finished_at": finished_at, "status": "sent"}
            await self.conn.execute(sa.update(r).where(r.c.campaign == s.campaign).values(**values))
        else:
            t = tables.campaign_steps
            values = {"cursor": cursor}
            if finished_at is not None:
                values |= {"finished_at": finished_at, "status": "sent"}
            await self.conn.execute(sa.update(t).where(t.c.campaign == s.campaign, t.c.step == s.step).values(**values))


@dataclasses.dataclass(frozen=True)
class Queued:
    """A recipient whose mail is to be rendered, with its record."""

    id: int
    campaign: str
    step: int
    record: rows.Record


@dataclasses.dataclass
class Rendering:
    """Queued recipients, and the writes that put their mail in the outbox."""

    conn: AsyncConnection
    queued: list[Queued]
    messages: list[tuple[int, dict[str, Any]]] = dataclasses.field(default_factory=list)
    held: dict[int, tuple[str, dt.datetime]] = dataclasses.field(default_factory=dict)
    refused: dict[int, str] = dataclasses.field(default_factory=dict)

    def enqueue(self, recipient_id: int, message: Mapping[str, Any]) -> None:
        self.messages.append((recipient_id, dict(message)))

    def hold(self, recipient_id: int, reason: str, until: dt.datetime) -> None:
        """The recipient's mail waits (a send window, a daily limit) until `until`; it stays queued with the
        reason, and the recipients behind it are rendered meanwhile."""
        self.held[recipient_id] = (reason[:300], until)

    def refuse(self, recipient_id: int, reason: str) -> None:
        """The recipient's mail cannot be made (no sender, a template that does not render): skipped, and why."""
        self.refused[recipient_id] = reason[:300]

    async def flush(self) -> None:
        if self.messages:
            await bulk.insert(self.conn, tables.outbox, [m for _, m in self.messages])
            o = tables.outbox
            ids: dict[str, int] = {}
            mids = [m["message_id"] for _, m in self.messages]
            for i in range(0, len(mids), _CHUNK):
                found = await self.conn.execute(sa.select(o.c.id, o.c.message_id).where(o.c.message_id.in_(mids[i : i + _CHUNK])))
                ids.update((row.message_id, row.id) for row in found)
            await bulk.update(self.conn, tables.campaign_recipients, "id", [
                {"id": rid, "status": "mailed", "outbox_id": ids[m["message_id"]], "reason": None}
                for rid, m in self.messages
            ])  # fmt: skip
        if self.held:
            await bulk.update(self.conn, tables.campaign_recipients, "id", [
                {"id": rid, "reason": why, "held_until": until} for rid, (why, until) in self.held.items()
            ])  # fmt: skip
        if self.refused:
            await bulk.update(self.conn, tables.campaign_recipients, "id", [
                {"id": rid, "status": "skipped", "reason": why} for rid, why in self.refused.items()
            ])  # fmt: skip
        self.messages, self.held, self.refused = [], {}, {}


class CampaignVerbs:
    engine: AsyncEngine
    dialect: str
    fields: Mapping[str, FieldType]
    _record_of: Callable[[Mapping[Any, Any]], rows.Record]

    async def _write_lock(self, conn: AsyncConnection) -> None: ...

    async def campaign_runs(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The runs (every one, or those named), as rows."""
        async with self.engine.connect() as conn:
            return await runs(conn, names)

    async def campaign_steps(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The follow-ups that started, as rows."""
        t = tables.campaign_steps
        query = sa.select(t).order_by(t.c.campaign, t.c.step)
        if names is not None:
            query = query.where(t.c.campaign.in_(list(names)))
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    async def save_campaign_run(self, values: Mapping[str, Any]) -> None:
        async with self.engine.begin() as conn:
            await self._write_lock(conn)
            await save_run(conn, values)

    async def start_campaign_run(self, campaign: str, now: dt.datetime) -> bool:
        """A scheduled campaign whose time came starts sending; False when it is no longer scheduled (stopped or
        deleted meanwhile, or started by another daemon). One conditional UPDATE: nothing read before is written
        back over a change made meanwhile."""
        r = tables.campaign_runs
        async with self.engine.begin() as conn:
            await self._write_lock(conn)
            done = await conn.execute(sa.update(r).where(r.c.campaign == campaign, r.c.status == "scheduled",
                                                         r.c.send_at <= now)
                                      .values(status="sending", started_at=now, reason=None))  # fmt: skip
            return bool(done.rowcount)

    async def start_campaign_step(self, campaign: str, step: int, now: dt.datetime) -> bool:
        """A follow-up starts going; False when it had already started (another daemon, a second tick)."""
        t = tables.campaign_steps
        try:
            async with self.engine.begin() as conn:
                await self._write_lock(conn)
                found = await conn.execute(sa.select(t.c.step).where(t.c.campaign == campaign, t.c.step == step))
                if found.first() is not None:
                    return False
                await conn.execute(sa.insert(t).values(campaign=campaign, step=step, status="sending",
                                                       started_at=now))  # fmt: skip
        except sa.exc.IntegrityError:  # another daemon on PostgreSQL inserted it between our read and write
            return False
        return True

    @contextlib.asynccontextmanager
    async def campaign_expansion(self, scope: Scope, limit: int) -> AsyncIterator[Expansion | None]:
        """The next `limit` candidates of a step after its cursor (record id order), in one transaction with the
        writes of what was decided about them; None when the step is not picking (any more). The step's row is
        read and locked here, in the transaction that moves its cursor: of two daemons on PostgreSQL the second
        waits, then reads the cursor the first wrote (SQLite: BEGIN IMMEDIATE), so nobody is picked twice."""
        async with self.engine.begin() as conn:
            await self._write_lock(conn)
            if scope.step == 0:
                r = tables.campaign_runs
                query = sa.select(r.c.cursor).where(r.c.campaign == scope.campaign, r.c.status == "sending")
            else:
                t = tables.campaign_steps
                query = sa.select(t.c.cursor).where(t.c.campaign == scope.campaign, t.c.step == scope.step,
                                                    t.c.status == "sending")  # fmt: skip
            row = (await conn.execute(query.with_for_update() if self.dialect == "postgresql" else query)).first()
            if row is None:
                yield None
                return
            candidates, after, more = await _candidates(conn, scope, row.cursor, limit, self.fields)
            mailed = await _mailed(conn, scope, sorted({c.email.lower() for c in candidates if c.email}))
            x = Expansion(conn, scope, row.cursor, candidates, mailed, after, more)
            yield x

    @contextlib.asynccontextmanager
    async def campaign_rendering(self, steps: Sequence[tuple[str, int]], limit: int,
                                 now: dt.datetime) -> AsyncIterator[Rendering]:  # fmt: skip
        """Up to `limit` queued recipients of the given (campaign, step)s whose mail does not wait past `now`,
        oldest first, with their records; only of campaigns still sending or sent. On PostgreSQL the runs are
        read FOR SHARE: a stop or delete (which updates its run first) waits for this transaction to commit, then
        takes back what it rendered, or this one waits for the stop and finds the campaign stopped."""
        cr, r, runs = tables.campaign_recipients, tables.records, tables.campaign_runs
        async with self.engine.begin() as conn:
            await self._write_lock(conn)
            names = sorted({campaign for campaign, _ in steps})
            live_query = sa.select(runs.c.campaign).where(runs.c.campaign.in_(names),
                                                          runs.c.status.in_(("sending", "sent")))  # fmt: skip
            if self.dialect == "postgresql":
                live_query = live_query.with_for_update(read=True)
            live = set((await conn.execute(live_query)).scalars())
            queued: list[Queued] = []
            for campaign, step in steps:
                if len(queued) >= limit or campaign not in live:
                    continue
                # the recipient's id under its own name: the record's columns (`id` among them) make its Record
                query = (sa.select(cr.c.id.label("recipient_id"), cr.c.campaign, cr.c.step, r)
                         .join(r, r.c.id == cr.c.record_id)
                         .where(cr.c.campaign == campaign, cr.c.step == step, cr.c.status == "queued",
                                sa.or_(cr.c.held_until.is_(None), cr.c.held_until <= now))
                         .order_by(cr.c.id).limit(limit - len(queued)))  # fmt: skip
                if self.dialect == "postgresql":  # another daemon renders others: a message is rendered once
                    query = query.with_for_update(of=cr, skip_locked=True)
                for row in await conn.execute(query):
                    m = row._mapping
                    queued.append(Queued(m["recipient_id"], m["campaign"], m["step"], self._record_of(m)))
            yield Rendering(conn, queued)

    async def campaign_backlog(self) -> int:
        """Campaign mail rendered and not yet handed to the relay: rendering waits while there is enough."""
        o = tables.outbox
        query = sa.select(sa.func.count()).where(o.c.state.in_(("queued", "deferred")), o.c.campaign.is_not(None))
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def campaign_queued_steps(self, steps: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
        """Of these (campaign, step)s, those with recipients whose mail is not rendered yet: one statement of an
        index lookup each (the campaigns done long ago cost a lookup, not a read of their recipients)."""
        cr = tables.campaign_recipients
        found: set[tuple[str, int]] = set()
        async with self.engine.connect() as conn:
            for i in range(0, len(steps), _COMPOUND):
                parts = [sa.select(sa.literal(campaign).label("campaign"), sa.literal(step).label("step")).where(
                    sa.exists().where(cr.c.campaign == campaign, cr.c.step == step, cr.c.status == "queued"))
                    for campaign, step in steps[i : i + _COMPOUND]]  # fmt: skip
                query = parts[0] if len(parts) == 1 else sa.union_all(*parts)
                found.update((row[0], int(row[1])) for row in await conn.execute(query))
        return found

    async def set_campaign_status(self, campaign: str, values: Mapping[str, Any]) -> int:
        """A run's new status (stop, start, delete). Stopping or deleting takes back its mail rendered but not yet
        taken by the relay (queued, or deferred for a retry): those recipients are queued again, so that a start
        sends them and a delete does not.
        Returns how many messages were taken back."""
        o, cr = tables.outbox, tables.campaign_recipients
        async with self.engine.begin() as conn:
            await self._write_lock(conn)
            r = tables.campaign_runs  # the run first: its row lock orders this against a render (campaign_rendering)
            await conn.execute(sa.update(r).where(r.c.campaign == campaign).values(**values))
            taken = 0
            if values.get("status") in ("stopped", "deleted"):
                # deferred: the relay answered with a temporary failure; the retry would send it after the stop
                ids = list((await conn.execute(sa.select(o.c.id).where(
                    o.c.campaign == campaign, o.c.state.in_(("queued", "deferred"))))).scalars())  # fmt: skip
                for i in range(0, len(ids), _CHUNK):
                    part = ids[i : i + _CHUNK]
                    await conn.execute(sa.update(cr).where(cr.c.outbox_id.in_(part)).values(status="queued", outbox_id=None, held_until=None))
                    await conn.execute(sa.delete(o).where(o.c.id.in_(part)))
                taken = len(ids)
            return taken

    async def campaign_counts(self, campaign: str) -> dict[int, dict[str, Any]]:
        """Per step: recipients by status and skip reason, opens, automated opens, clicks, bounces (the recipients'
        rows), and the states of its mail (the outbox's (campaign, step_id, state) index: reading a state from the
        outbox row itself means walking past its message on SQLite, which grows with the message's size)."""
        cr, o = tables.campaign_recipients, tables.outbox
        out: dict[int, dict[str, Any]] = {}
        why = sa.case((cr.c.status == "skipped", cr.c.reason), else_=None).label("why")
        by_status = (
            sa.select(cr.c.step, cr.c.status, why, sa.func.count(), sa.func.count(cr.c.opened_at),
                      sa.func.count(cr.c.clicked_at), sa.func.count(cr.c.bounced_at),
                      sa.func.sum(sa.case((sa.and_(cr.c.opened_at.is_(None), cr.c.automated_opens > 0), 1), else_=0)))
            .where(cr.c.campaign == campaign)
            .group_by(cr.c.step, cr.c.status, why)
        )  # fmt: skip
        by_state = (sa.select(o.c.step_id, o.c.state, sa.func.count()).where(o.c.campaign == campaign)
                    .group_by(o.c.step_id, o.c.state))  # fmt: skip

        def step_of(step: int) -> dict[str, Any]:
            return out.setdefault(step, {"skipped": {}, "states": {}, "queued": 0, "opened": 0, "clicked": 0,
                                         "bounced": 0, "automated_opens": 0})  # fmt: skip

        async with self.engine.connect() as conn:
            for step, status, reason, n, opened, clicked, bounced, automated in await conn.execute(by_status):
                c = step_of(step)
                if status == "skipped":
                    key = str(reason or "skipped").split(":")[0]
                    c["skipped"][key] = c["skipped"].get(key, 0) + n
                    continue
                if status == "queued":
                    c["queued"] += n
                c["opened"] += opened
                c["clicked"] += clicked
                c["bounced"] += bounced
                c["automated_opens"] += int(automated or 0)
            for step_id, state, n in await conn.execute(by_state):  # a mailed recipient's mail, by its state
                c = step_of(int(step_id or 0))
                c["states"][state] = c["states"].get(state, 0) + n
        return out

    async def campaign_recipient_list(self, campaign: str, step: int, category: str,
                                      limit: int | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """Who of a step is in a category of the statistics: recipients, skipped, pending, sent, delivered,
        not_delivered, bounced, opened, clicked, unclicked, unknown."""
        cr, o, r = tables.campaign_recipients, tables.outbox, tables.records
        mailed = cr.c.status == "mailed"
        delivered = sa.and_(mailed, o.c.state.in_(("sent", "bounced")), cr.c.bounced_at.is_(None))
        conditions: dict[str, sa.ColumnElement[bool]] = {
            "recipients": cr.c.status != "skipped",
            "skipped": cr.c.status == "skipped",
            "pending": sa.or_(cr.c.status == "queued", o.c.state.in_(("queued", "sending", "deferred"))),
            "sent": sa.and_(mailed, o.c.state.in_(("sent", "bounced"))),
            "delivered": delivered,
            "not_delivered": sa.and_(mailed, sa.or_(o.c.state == "failed", cr.c.bounced_at.is_not(None))),
            "bounced": cr.c.bounced_at.is_not(None),
            "opened": cr.c.opened_at.is_not(None),
            "clicked": cr.c.clicked_at.is_not(None),
            "unclicked": sa.and_(delivered, cr.c.clicked_at.is_(None)),
            "unknown": sa.and_(mailed, o.c.state == "unknown"),
        }
        if category not in conditions:
            raise ValueError(f"unknown category {category!r}: one of {', '.join(conditions)}")
        query = (sa.select(cr.c.record_id, cr.c.email, cr.c.status, cr.c.reason, o.c.state, o.c.sent_at,
                           cr.c.opened_at, cr.c.clicked_at, cr.c.bounced_at, r.c.email.label("record_email"))
                 .select_from(cr.outerjoin(o, o.c.id == cr.c.outbox_id).outerjoin(r, r.c.id == cr.c.record_id))
                 .where(cr.c.campaign == campaign, cr.c.step == step, conditions[category])
                 .order_by(cr.c.record_id))  # fmt: skip
        if limit is not None:
            query = query.limit(limit)
        async with self.engine.connect() as conn:
            return [dict(row._mapping) for row in await conn.execute(query)]


async def runs(conn: AsyncConnection, names: Sequence[str] | None = None, *, lock: bool = False) -> list[dict[str, Any]]:
    """The runs, as rows; with `lock` (in a transaction that writes them back) locked on PostgreSQL until it
    commits, so a daemon's picking cannot move a cursor that the transaction would then write back stale."""
    r = tables.campaign_runs
    query = sa.select(r).order_by(r.c.campaign)
    if names is not None:
        query = query.where(r.c.campaign.in_(list(names)))
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return [dict(row._mapping) for row in await conn.execute(query)]


async def save_run(conn: AsyncConnection, values: Mapping[str, Any]) -> None:
    """Insert or update a run (every column of RUN_COLUMNS)."""
    r = tables.campaign_runs
    row = {c: values.get(c) for c in RUN_COLUMNS}
    done = await conn.execute(sa.update(r).where(r.c.campaign == row["campaign"]).values(**row))
    if not done.rowcount:
        await conn.execute(sa.insert(r).values(**row))


async def _candidates(conn: AsyncConnection, scope: Scope, cursor: str | None, limit: int,
                      fields: Mapping[str, FieldType]) -> tuple[list[Picked], str | None, bool]:  # fmt: skip
    """A batch: its candidates, the cursor after it, and whether more may follow."""
    r, s, cr, o = tables.records, tables.suppressions, tables.campaign_recipients, tables.outbox
    suppressed = s.c.reason.label("suppressed")
    if scope.step == 0:
        # The next `limit` records of the module in id order, each with whether the criteria match it: a walk
        # of the primary key from the cursor, so that the whole campaign reads each record once. With the
        # criteria in the WHERE clause SQLite's planner (without statistics) would take an index of an equality
        # instead, such as (type, stage), and read and sort every match after the cursor at each batch: the 50
        # batches of a campaign to 100,000 took 7.6 s in that query, and take 0.7 s in this one (bench/campaign.py).
        # `type || ''` serves no index, for the same reason.
        matched: sa.ColumnElement[Any] = sa.literal(True)
        if scope.where is not None:
            matched = sa.case((sql_criteria.compile_criteria(scope.where, fields, scope.now), True), else_=False)
        query = (sa.select(r.c.id, r.c.email, r.c.deleted_at.is_not(None), suppressed, matched)
                 .select_from(r.outerjoin(s, s.c.email == sa.func.lower(r.c.email)))
                 .where((r.c.type + "") == scope.module).order_by(r.c.id).limit(limit))  # fmt: skip
        if scope.record_ids:
            query = query.where(r.c.id.in_(list(scope.record_ids)))
        if cursor is not None:
            query = query.where(r.c.id > cursor)
        found = (await conn.execute(query)).all()
        picked = [Picked(rid, email, bool(deleted), why) for rid, email, deleted, why, matched in found if matched]
        return picked, found[-1][0] if found else cursor, len(found) >= limit
    excepted: sa.ColumnElement[Any] = sa.literal(False)
    if scope.except_ is not None:
        excepted = sa.case((sql_criteria.compile_criteria(scope.except_, fields, scope.now), True), else_=False)
    follow = (sa.select(cr.c.record_id, r.c.email, r.c.deleted_at, suppressed, excepted.label("excepted"),
                       cr.c.bounced_at)
             .select_from(cr.join(o, o.c.id == cr.c.outbox_id).join(r, r.c.id == cr.c.record_id)
                          .outerjoin(s, s.c.email == sa.func.lower(r.c.email)))
             .where(cr.c.campaign == scope.campaign, cr.c.step == 0, cr.c.status == "mailed",
                    o.c.state.in_(("sent", "bounced")))
             .order_by(cr.c.record_id).limit(limit))  # fmt: skip
    if scope.opened_only:
        follow = follow.where(cr.c.opened_at.is_not(None))
    if cursor is not None:
        follow = follow.where(cr.c.record_id > cursor)
    picked = [Picked(row.record_id, row.email, row.deleted_at is not None, row.suppressed, bool(row.excepted),
                     row.bounced_at is not None) for row in await conn.execute(follow)]  # fmt: skip
    return picked, picked[-1].record_id if picked else cursor, len(picked) >= limit


async def _mailed(conn: AsyncConnection, scope: Scope, addresses: Sequence[str]) -> set[str]:
    """Of these addresses (lower case), those the step already mails (picked in an earlier batch). On SQLite the
    statement goes to the driver as written: SQLAlchemy's IN of 500 values costs more than SQLite's lookups."""
    cr = tables.campaign_recipients
    mailed: set[str] = set()
    for i in range(0, len(addresses), _CHUNK):
        part = addresses[i : i + _CHUNK]
        if conn.dialect.name == "sqlite":
            found = await conn.exec_driver_sql(
                "SELECT email FROM campaign_recipients WHERE campaign = ? AND step = ? AND status != 'skipped'"
                f" AND email IN ({', '.join('?' * len(part))})", (scope.campaign, scope.step, *part))  # fmt: skip
        else:
            found = await conn.execute(sa.select(cr.c.email).where(
                cr.c.campaign == scope.campaign, cr.c.step == scope.step, cr.c.status != "skipped",
                cr.c.email.in_(part)))  # fmt: skip
        mailed.update(found.scalars())
    return mailed


# --- inside other transactions (Changes) ------------------------------------------------------------


async def hit(conn: AsyncConnection, outbox_id: int, kind: str, at: dt.datetime,
              automated: bool) -> tuple[str, int, str, tuple[str, ...]] | None:  # fmt: skip
    """An open or click of a campaign message: kept with its recipient. Returns (campaign, step, record id, the
    triggers that fire now: `opened` and/or `clicked`, each at its first occurrence by a person); None when the
    message is no campaign's. A click by a person counts as an open too (their mail program did not load the
    pixel). An automated one only counts."""
    cr = tables.campaign_recipients
    found = (await conn.execute(sa.select(cr.c.campaign, cr.c.step, cr.c.record_id)
                                .where(cr.c.outbox_id == outbox_id))).first()  # fmt: skip
    if found is None:
        return None
    mine = cr.c.outbox_id == outbox_id
    if automated:
        if kind == "open":
            await conn.execute(sa.update(cr).where(mine).values(automated_opens=cr.c.automated_opens + 1))
        return found.campaign, found.step, found.record_id, ()
    fired = []
    for trigger, column in (("opened", cr.c.opened_at), ("clicked", cr.c.clicked_at)):
        if trigger == "clicked" and kind != "click":
            continue
        done = await conn.execute(sa.update(cr).where(mine, column.is_(None)).values({column.name: at}))
        if done.rowcount:
            fired.append(trigger)
    return found.campaign, found.step, found.record_id, tuple(fired)


async def bounced(conn: AsyncConnection, outbox_id: int, at: dt.datetime) -> tuple[str, int, str] | None:
    """A campaign message bounced: kept with its recipient. Returns (campaign, step, record id) the first time,
    when the `bounced` trigger fires; None otherwise."""
    cr = tables.campaign_recipients
    mine = cr.c.outbox_id == outbox_id
    done = await conn.execute(sa.update(cr).where(mine, cr.c.bounced_at.is_(None)).values(bounced_at=at))
    if not done.rowcount:
        return None
    found = (await conn.execute(sa.select(cr.c.campaign, cr.c.step, cr.c.record_id).where(mine))).first()
    return (found.campaign, found.step, found.record_id) if found is not None else None
