"""The store's verbs for sequences and the outbox: enrollments, due batches, halts, suppressions, sending state.

Mixed into Store. Enrollments go in and out as plain column mappings; the
engine's dataclass is built from them by the scheduler. Due work is claimed
with FOR UPDATE SKIP LOCKED on PostgreSQL so several daemons share it (SQLite
runs one daemon, see Store.hold_single_daemon).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from outreach.store import bulk, changes, tables
from outreach.store import rows as rows_module


class AlreadyLive(Exception):
    """The address is active (or blocked) in the sequence already."""


SYNCHRONOUS = "FULL"  # SQLite's setting for every other commit (its default in WAL mode)
_IN_CHUNK = 900  # values in one IN (...): under every SQLite build's limit on bound parameters (999 before 3.32)


@dataclasses.dataclass
class Batch:
    """Due enrollments claimed in one transaction, and the writes that apply the engine's decisions to them.

    Enrollment updates, outbox messages and events are collected and written with
    one statement each at `flush` (per-row statements cost more than SQLite's own
    work); tasks are written at once, since their ids go into events. An update
    names only the columns that changed from the claimed row, so that indexes on
    the others are left alone.
    """

    conn: AsyncConnection
    rows: list[dict[str, Any]]
    records: dict[str, rows_module.Record] = dataclasses.field(default_factory=dict)  # of the rows, by id
    saves: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    messages: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    _claimed: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._claimed = {row["id"]: row for row in self.rows}

    async def save(self, values: Mapping[str, Any]) -> None:
        row = changes.enrollment_update(values, self._claimed.get(values["id"]))
        if row is not None:
            self.saves.append(row)

    async def enqueue(self, message: dict[str, Any]) -> None:
        """Queue an outbox row (the batch keeps the dict)."""
        self.messages.append(message)

    async def add_task(self, values: Mapping[str, Any]) -> int:
        result = await self.conn.execute(sa.insert(tables.tasks).values(**values))
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    async def event(self, record_id: str, kind: str, at: dt.datetime, data: Mapping[str, Any]) -> None:
        self.events.append({"record_id": record_id, "kind": kind, "at": at, "data": data, "source": "engine"})

    async def flush(self) -> None:
        for group in _by_shape(self.saves):
            await bulk.update(self.conn, tables.enrollments, "id", group)
        for group in _by_shape(self.messages):
            await bulk.insert(self.conn, tables.outbox, group)
        for group in _by_shape(self.events):
            await bulk.insert(self.conn, tables.events, group)
        self.saves, self.messages, self.events = [], [], []


def _by_shape(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Rows grouped by the columns they name (in that order): one executemany needs one shape."""
    out: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(tuple(row), []).append(row)
    return list(out.values())


def _pending() -> sa.Select[Any]:
    r, e, t, o = tables.records, tables.enrollments, tables.tasks, tables.outbox
    now = sa.bindparam("now", type_=tables.UTCDateTime())
    changed = sa.select(sa.func.max(r.c.updated_at)).scalar_subquery()
    due = sa.exists().where(e.c.status == "active", e.c.awaiting_task.is_(False), e.c.next_due_at <= now)
    tasks = sa.exists().where(
        e.c.awaiting_task == sa.true(), e.c.status == "active", t.c.enrollment_id == e.c.id,
        t.c.step_id.is_not(None), t.c.completed_at.is_not(None),
    )  # fmt: skip
    mail = sa.exists().where(
        sa.or_(o.c.state == "queued", sa.and_(o.c.state == "deferred", o.c.next_attempt_at <= now))
    )
    return sa.select(changed, due, tasks, mail)


# Statements of every tick, built once: one costs more to build than SQLite takes to run it on a small store.
_PENDING = _pending()
_NOW = sa.bindparam("now", type_=tables.UTCDateTime())
_E, _O = tables.enrollments, tables.outbox
_DUE = (
    sa.select(_E)
    .where(_E.c.status == "active", _E.c.awaiting_task.is_(False), _E.c.next_due_at <= _NOW)
    .order_by(_E.c.next_due_at, _E.c.id)
    .limit(sa.bindparam("limit"))
)
_DUE_LOCKED = _DUE.with_for_update(skip_locked=True)
_DUE_SQLITE = "status = 'active' AND awaiting_task = 0 AND next_due_at <= ?"  # _DUE, read from the driver
# A claim picks ids through the (state, id) and (state, next_attempt_at) indexes, queued and due deferred
# messages apart, and reads the bodies of those it took only: one query over both states ordered by id read and
# sorted every queued row, bodies included (12.7 ms a claim with 20,000 queued, against 0.7 ms with 100).
_CLAIM_QUEUED = sa.select(_O.c.id).where(_O.c.state == "queued").order_by(_O.c.id).limit(sa.bindparam("limit"))
_CLAIM_DEFERRED = (
    sa.select(_O.c.id)
    .where(_O.c.state == "deferred", _O.c.next_attempt_at <= _NOW)
    .order_by(_O.c.id)
    .limit(sa.bindparam("limit"))
)
_CLAIM_READ = sa.select(
    _O.c.id, _O.c.sender, _O.c.recipient, _O.c.message, _O.c.attempts, _O.c.enrollment_id, _O.c.record_id
).where(_O.c.id.in_(sa.bindparam("ids", expanding=True)))
_MARK_SENDING = (
    sa.update(_O)
    .where(_O.c.id.in_(sa.bindparam("ids", expanding=True)))
    .values(state="sending", attempt_id=sa.bindparam("attempt_id"), daemon_id=sa.bindparam("daemon_id"),
            attempts=_O.c.attempts + 1)
)


@dataclasses.dataclass(frozen=True)
class Pending:
    """What there is to do at a tick, as one look at the store found it."""

    record_changed: dt.datetime | None  # when a record last changed
    due: bool  # an active enrollment's step is due
    tasks_done: bool  # a task step's task was completed and its enrollment waits on it
    mail: bool  # the outbox holds mail to send (queued, or deferred and due)


@dataclasses.dataclass(frozen=True)
class SendOutcome:
    """How one claimed message went: ok, or not with the reply and when to try again (None: never)."""

    outbox_id: int
    ok: bool
    detail: str = ""
    retry_at: dt.datetime | None = None
    attempted: bool = True  # False: held back before sending (a domain's cap); the claim's attempt is given back
    in_doubt: bool = False  # handed over, the answer lost: `unknown`, never tried again by itself


def _aware(value: Any) -> dt.datetime:
    """min() of a UTCDateTime column comes back untyped on SQLite: text or a naive datetime in UTC."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class SequenceVerbs:
    engine: AsyncEngine
    dialect: str
    _records_in: Callable[[AsyncConnection, list[str]], Awaitable[dict[str, rows_module.Record]]]
    _record_of: Callable[[Mapping[Any, Any]], rows_module.Record]

    # --- enrolling -------------------------------------------------------------------------

    async def live_in_sequence(self, email: str, sequence: str) -> bool:
        """Whether the address is live (active or blocked) in the sequence, compared without case as the unique
        index compares it (and as suppressions are: Sam.Jones@... is sam.jones@...)."""
        e = tables.enrollments
        query = sa.select(e.c.id).where(sa.func.lower(e.c.email) == sa.func.lower(sa.literal(email, sa.String)),
                                        e.c.sequence == sequence, e.c.status.in_(changes.LIVE))  # fmt: skip
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    async def unsubscribed_at(self, email: str) -> dt.datetime | None:
        s = tables.suppressions
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(s.c.at).where(s.c.email == email.lower()))).first()
        return row[0] if row else None

    async def insert_enrollment(self, values: Mapping[str, Any], *, now: dt.datetime, source: str = "cli") -> int:
        """Store a new enrollment; raises AlreadyLive when the address is live in the sequence already."""
        data = {k: v for k, v in values.items() if k != "id" and k in tables.enrollments.c}
        try:
            async with self.engine.begin() as conn:
                result = await conn.execute(sa.insert(tables.enrollments).values(**data))
                new_id = int(result.inserted_primary_key[0])  # type: ignore[index]
                await changes.insert_event(
                    conn,
                    values["record_id"],
                    "enrolled",
                    now,
                    {"sequence": values["sequence"], "enrollment": new_id, "by": values["enrolled_by"]},
                    source,
                )
        except sa.exc.IntegrityError:
            raise AlreadyLive(f"{values['email']} is already active in {values['sequence']}") from None
        return new_id

    async def enrolling_facts(self, emails: Sequence[str], sequence: str) -> tuple[set[str], dict[str, dt.datetime]]:
        """What enrolling many addresses needs to know, in two queries a chunk: those of `emails` live in the
        sequence and when each unsubscribed, both by lower-cased address (compared without case, as
        `live_in_sequence` and the suppression list compare)."""
        e, s = tables.enrollments, tables.suppressions
        live: set[str] = set()
        unsubscribed: dict[str, dt.datetime] = {}
        wanted = sorted({x.lower() for x in emails})
        async with self.engine.connect() as conn:
            for i in range(0, len(wanted), _IN_CHUNK):
                lowered = wanted[i : i + _IN_CHUNK]
                query = sa.select(e.c.email).where(
                    e.c.sequence == sequence, sa.func.lower(e.c.email).in_(lowered), e.c.status.in_(changes.LIVE)
                )
                live.update(r[0].lower() for r in await conn.execute(query))
                found = await conn.execute(sa.select(s.c.email, s.c.at).where(s.c.email.in_(lowered)))
                unsubscribed.update((r[0], r[1]) for r in found)
        return live, unsubscribed

    async def insert_enrollments(
        self, many: Sequence[Mapping[str, Any]], *, now: dt.datetime, source: str = "cli"
    ) -> list[int]:
        """Store new enrollments in one transaction, each with its "enrolled" event (as `insert_enrollment` does
        one): their ids in order. AlreadyLive, and nothing written, when any address is live in its sequence."""
        if not many:
            return []
        e = tables.enrollments
        data = [{k: v for k, v in values.items() if k != "id" and k in e.c} for values in many]
        try:
            async with self.engine.begin() as conn:
                await bulk.insert(conn, e, data)
                # Their ids, by record and address: one live enrollment per address and sequence (the unique
                # index). Cheaper than INSERT ... RETURNING, which SQLAlchemy sends a row at a time on SQLite to
                # keep the order.
                found: dict[tuple[str, str, str], int] = {}
                for sequence in {v["sequence"] for v in data}:
                    record_ids = sorted({v["record_id"] for v in data if v["sequence"] == sequence})
                    for i in range(0, len(record_ids), _IN_CHUNK):
                        query = sa.select(e.c.id, e.c.record_id, e.c.email).where(
                            e.c.record_id.in_(record_ids[i : i + _IN_CHUNK]), e.c.sequence == sequence,
                            e.c.status.in_(changes.LIVE),
                        )  # fmt: skip
                        found.update(((sequence, r.record_id, r.email), int(r.id)) for r in await conn.execute(query))
                ids = [found[(v["sequence"], v["record_id"], v["email"])] for v in data]
                await bulk.insert(conn, tables.events, [
                    {"record_id": v["record_id"], "kind": "enrolled", "at": now,
                     "data": {"sequence": v["sequence"], "enrollment": new_id, "by": v["enrolled_by"]},
                     "source": source}
                    for v, new_id in zip(many, ids, strict=True)
                ])  # fmt: skip
        except (sa.exc.IntegrityError, sqlite3.IntegrityError):  # the latter from the driver itself (bulk.insert)
            raise AlreadyLive("an address is already active in its sequence") from None
        return ids

    async def get_enrollment(self, enrollment_id: int) -> dict[str, Any] | None:
        e = tables.enrollments
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(e).where(e.c.id == enrollment_id))).first()
        return dict(row._mapping) if row else None

    async def enrollments(
        self,
        *,
        record_id: str | None = None,
        record_ids: list[str] | None = None,
        sequence: str | None = None,
        live_only: bool = False,
    ) -> list[dict[str, Any]]:
        e = tables.enrollments
        query = sa.select(e).order_by(e.c.started_at, e.c.id)
        if record_id is not None:
            query = query.where(e.c.record_id == record_id)
        if record_ids is not None:
            query = query.where(e.c.record_id.in_(record_ids))
        if sequence is not None:
            query = query.where(e.c.sequence == sequence)
        if live_only:
            query = query.where(e.c.status.in_(changes.LIVE))
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    async def save_enrollment(self, values: Mapping[str, Any], *, event: tuple[str, Mapping[str, Any]] | None = None,
                              now: dt.datetime | None = None, source: str = "cli") -> None:  # fmt: skip
        """Write an enrollment's new state, with an event on its record when given."""
        async with self.engine.begin() as conn:
            batch = Batch(conn, [])
            await batch.save(values)
            await batch.flush()
            if event is not None and now is not None:
                await changes.insert_event(conn, values["record_id"], event[0], now, event[1], source)

    # --- the scheduler's work ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def due_batch(self, now: dt.datetime, limit: int) -> AsyncIterator[Batch]:
        """Active enrollments due at `now`, claimed until the block ends (its writes commit together).

        The commit does not wait for the disk (SQLite `synchronous=NORMAL` for it, PostgreSQL
        `synchronous_commit=off`): a power cut right after may lose the last batches whole, so that their steps
        run again, but nothing of them was sent. Sending starts with a commit that does wait (`claim_outbox`),
        and that one makes every earlier commit durable too, since both databases write their log in order.
        """
        sqlite = self.dialect == "sqlite"
        relaxed = False
        async with self.engine.connect() as conn:
            try:
                async with conn.begin():
                    if sqlite:
                        rows = await bulk.select_sqlite(conn, tables.enrollments, _DUE_SQLITE,
                                                        (bulk.sqlite_stamp(now), limit),
                                                        "ORDER BY next_due_at, id LIMIT ?")  # fmt: skip
                    else:
                        rows = [dict(r._mapping) for r in await conn.execute(_DUE_LOCKED, {"now": now, "limit": limit})]
                    if rows and sqlite:  # before anything is written
                        await bulk.pragma(conn, "synchronous=NORMAL")
                        relaxed = True
                    elif rows:  # ends with the transaction
                        await conn.exec_driver_sql("SET LOCAL synchronous_commit TO off")
                    records = await self._records_in(conn, sorted({r["record_id"] for r in rows})) if rows else {}
                    batch = Batch(conn, rows, records)
                    yield batch
                    await batch.flush()
            finally:
                if relaxed and not conn.invalidated:  # the connection goes back to the pool as it came
                    await bulk.pragma(conn, f"synchronous={SYNCHRONOUS}")

    async def pending(self, now: dt.datetime) -> Pending:
        """What a tick may find to do, in one query (each part an index lookup)."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(_PENDING, {"now": now})).one()
        return Pending(row[0], bool(row[1]), bool(row[2]), bool(row[3]))

    async def last_record_change(self) -> dt.datetime | None:
        """When a record was last changed (an index lookup): auto-enrollment need not look before then."""
        r = tables.records
        async with self.engine.connect() as conn:
            value: dt.datetime | None = (await conn.execute(sa.select(sa.func.max(r.c.updated_at)))).scalar()
        return value

    async def finished_step_tasks(self, limit: int) -> list[tuple[dict[str, Any], dt.datetime]]:
        """Enrollments waiting on a task step whose task is now completed, with when it was."""
        e, t = tables.enrollments, tables.tasks
        query = (
            sa.select(e, t.c.completed_at.label("task_completed_at"))
            .join(t, sa.and_(t.c.enrollment_id == e.c.id, t.c.step_id.is_not(None)))
            .where(e.c.awaiting_task == sa.true(), e.c.status == "active", t.c.completed_at.is_not(None))
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            out = []
            for row in await conn.execute(query):
                values = dict(row._mapping)
                out.append((values, values.pop("task_completed_at")))
            return out

    # --- the outbox --------------------------------------------------------------------------------

    async def claim_outbox(self, now: dt.datetime, limit: int, attempt_id: str,
                           daemon_id: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """Queued (or deferred and due) messages, marked `sending` with this attempt id and the claiming daemon's
        id, committed before any send."""
        locked = self.dialect == "postgresql"
        async with self.engine.begin() as conn:
            ids: list[int] = []
            for query in (_CLAIM_QUEUED, _CLAIM_DEFERRED):
                query = query.with_for_update(skip_locked=True) if locked else query
                ids += [r[0] for r in await conn.execute(query, {"now": now, "limit": limit})]
            ids = sorted(ids)[:limit]  # the oldest first, whichever their state
            if not ids:
                return []
            rows = [dict(r._mapping) for r in await conn.execute(_CLAIM_READ, {"ids": ids})]
            await conn.execute(_MARK_SENDING, {"ids": ids, "attempt_id": attempt_id, "daemon_id": daemon_id})
        rows.sort(key=lambda r: r["id"])
        return rows

    async def outbox_counts(self) -> dict[str, int]:
        """Messages by state."""
        o = tables.outbox
        async with self.engine.connect() as conn:
            return {row[0]: int(row[1]) for row in await conn.execute(
                sa.select(o.c.state, sa.func.count()).group_by(o.c.state))}  # fmt: skip

    async def blocked_reasons(self, limit: int = 10) -> list[tuple[str, int]]:
        """The commonest reasons enrollments are blocked, with how many each."""
        e = tables.enrollments
        query = (
            sa.select(e.c.reason, sa.func.count().label("n"))
            .where(e.c.status == "blocked")
            .group_by(e.c.reason)
            .order_by(sa.desc("n"), e.c.reason)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [(row[0] or "", int(row[1])) for row in await conn.execute(query)]

    async def daily_usage(self, since: dt.datetime) -> dict[str, tuple[int, dt.datetime]]:
        """Mail per sender address queued after `since` (all but what failed): (how many, the oldest's time)."""
        o = tables.outbox
        query = (
            sa.select(o.c.sender, sa.func.count(), sa.func.min(o.c.created_at))
            .where(o.c.created_at > since, o.c.state != "failed")
            .group_by(o.c.sender)
        )
        async with self.engine.connect() as conn:
            return {row[0]: (int(row[1]), _aware(row[2])) for row in await conn.execute(query)}

    async def queued_by_sender(
        self, since: dt.datetime, senders: Sequence[str]
    ) -> dict[str, list[tuple[dt.datetime, int]]]:
        """The mail of these sender addresses queued after `since`, as `daily_usage` counts it: how many at each
        time, oldest first (a tick queues many at one `now`). For the forecast of their daily limits."""
        o = tables.outbox
        found: dict[str, list[tuple[dt.datetime, int]]] = {}
        async with self.engine.connect() as conn:
            for i in range(0, len(senders), _IN_CHUNK):
                query = (
                    sa.select(o.c.sender, o.c.created_at, sa.func.count())
                    .where(o.c.created_at > since, o.c.state != "failed", o.c.sender.in_(senders[i : i + _IN_CHUNK]))
                    .group_by(o.c.sender, o.c.created_at)
                    .order_by(o.c.created_at)
                )
                for sender, at, n in await conn.execute(query):
                    found.setdefault(sender, []).append((_aware(at), int(n)))
        return found

    async def scheduled_steps(self) -> list[rows_module.ScheduledSteps]:
        """The steps active enrollments wait to run at a time (not for a task), grouped by what says who sends them
        and when: the sequence, the step, the enrolling user, the record's owner and the due time, with how many."""
        e, r = tables.enrollments, tables.records
        columns = (e.c.sequence, e.c.step_index, e.c.enrolled_by, r.c.owner, e.c.next_due_at)
        query = (
            sa.select(*columns, sa.func.count())
            .join(r, r.c.id == e.c.record_id)
            .where(e.c.status == "active", e.c.awaiting_task.is_(False), e.c.next_due_at.is_not(None))
            .group_by(*columns)
        )
        async with self.engine.connect() as conn:
            return [rows_module.ScheduledSteps(row[0], int(row[1]), row[2], row[3], _aware(row[4]), int(row[5]))
                    for row in await conn.execute(query)]  # fmt: skip

    @contextlib.asynccontextmanager
    async def finishing_sends(self, done: Sequence[SendOutcome], now: dt.datetime) -> AsyncIterator[changes.FinishedSends]:
        """What became of claimed messages, written in one transaction: sent, deferred until a retry, in doubt
        (`unknown`: the relay may have it), or failed.

        A failed message (refused for good, or out of attempts) becomes `failed`; the application layer writes
        what that means for its enrollment and record through the FinishedSends yielded (`failed`: the outcome,
        its enrollment's id and its record's), in the same transaction.
        """
        o = tables.outbox
        sent = [{"id": d.outbox_id, "state": "sent", "sent_at": now, "last_error": None} for d in done if d.ok]
        deferred = [
            {"id": d.outbox_id, "state": "deferred", "last_error": d.detail[:1000], "next_attempt_at": d.retry_at}
            for d in done if not d.ok and d.retry_at is not None
        ]  # fmt: skip
        held = [d.outbox_id for d in done if not d.attempted]
        doubtful = [{"id": d.outbox_id, "state": "unknown", "last_error": d.detail[:1000], "next_attempt_at": None}
                    for d in done if d.in_doubt]  # fmt: skip
        lost = [d for d in done if not d.ok and d.retry_at is None and not d.in_doubt]
        async with self.engine.begin() as conn:
            await bulk.update(conn, o, "id", sent)
            await bulk.update(conn, o, "id", deferred)
            await bulk.update(conn, o, "id", doubtful)
            if held:
                await conn.execute(sa.update(o).where(o.c.id.in_(held)).values(attempts=o.c.attempts - 1))
            failed: list[changes.Failed] = []
            for d in lost:
                await conn.execute(sa.update(o).where(o.c.id == d.outbox_id)
                                   .values(state="failed", last_error=d.detail[:1000], next_attempt_at=None))  # fmt: skip
                row = (await conn.execute(sa.select(o.c.enrollment_id, o.c.record_id).where(o.c.id == d.outbox_id))).one()
                failed.append(changes.Failed(d.outbox_id, d.detail, row.enrollment_id, row.record_id))
            yield changes.FinishedSends(conn, self.dialect, self._record_of, failed=failed)

    async def outbox(self, *, state: str | None = None, record_id: str | None = None) -> list[dict[str, Any]]:
        o = tables.outbox
        query = sa.select(
            o.c.id,
            o.c.state,
            o.c.recipient,
            o.c.subject,
            o.c.template,
            o.c.step_id,
            o.c.enrollment_id,
            o.c.record_id,
            o.c.created_at,
            o.c.sent_at,
            o.c.last_error,
            o.c.message_id,
            o.c.attempts,
            o.c.next_attempt_at,
            o.c.sender,
        ).order_by(o.c.id)
        if state is not None:
            query = query.where(o.c.state == state)
        if record_id is not None:
            query = query.where(o.c.record_id == record_id)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    async def outbox_message(self, message_id: int) -> dict[str, Any] | None:
        """One message of the outbox: its columns, with `message` the bytes as queued (and sent as they are); None
        when there is no such message."""
        o = tables.outbox
        query = sa.select(*(c for c in o.c if c.name not in ("attempt_id", "link_key"))).where(o.c.id == message_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return dict(row._mapping) if row is not None else None

    async def requeue_candidates(
        self, *, ids: Sequence[int] = (), states: Sequence[str] = ("unknown", "failed"),
        since: dt.datetime | None = None, to_domain: str | None = None, limit: int = 100_000,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Messages an operator may send again: in one of `states` (unknown, failed), and, when given, among `ids`,
        queued at or after `since`, to an address at `to_domain` (any case); oldest first."""
        o = tables.outbox
        query = (
            sa.select(o.c.id, o.c.state, o.c.recipient, o.c.sender, o.c.created_at, o.c.last_error, o.c.attempts,
                      o.c.enrollment_id, o.c.record_id)
            .where(o.c.state.in_([x for x in states if x in ("unknown", "failed")]))
            .order_by(o.c.id)
            .limit(limit)
        )  # fmt: skip
        if ids:
            query = query.where(o.c.id.in_(list(ids)))
        if since is not None:
            query = query.where(o.c.created_at >= since)
        if to_domain is not None:
            query = query.where(sa.func.lower(o.c.recipient).like("%@" + to_domain.lower().replace("%", "")))
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    async def requeue(self, ids: Sequence[int]) -> int:
        """An operator's decision: send these messages again, those of them still `unknown` or `failed`, with a
        fresh count of attempts; how many were queued."""
        o = tables.outbox
        done = 0
        async with self.engine.begin() as conn:
            for i in range(0, len(ids), _IN_CHUNK):
                result = await conn.execute(
                    sa.update(o)
                    .where(o.c.id.in_(list(ids[i : i + _IN_CHUNK])), o.c.state.in_(("unknown", "failed")))
                    .values(state="queued", next_attempt_at=None, attempts=0)
                )
                done += result.rowcount
        return done
