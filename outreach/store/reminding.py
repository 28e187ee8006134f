"""The store's verbs for stage-duration reminders: a process's records with their reminder states and activity.

Mixed into Store. Only records that can be overdue are read: those in a stage
with a `max` that they entered before the stage's cutoff (the scheduler passes
`now - max`, or a bound below it for business days), and those that have a
reminder state (whose period may have just ended). A pass over one process runs
in one transaction: it reads, then writes the new states, the queued reminder
mail and the events together. On PostgreSQL a transaction-scoped advisory lock
per schema and process makes the passes of several daemons take turns, so the
second finds the reminders sent; SQLite runs one daemon.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Callable, Hashable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from outreach.rules import criteria as rules_criteria
from outreach.rules.criteria import FieldType
from outreach.store import bulk, rows, tables
from outreach.store import criteria as sql_criteria

STATE_COLUMNS = tuple(c.name for c in tables.reminder_state.c if c.name not in ("process", "record_id"))
_CHUNK = 500  # ids per IN list: well under SQLite's and asyncpg's parameter limits


@dataclasses.dataclass(frozen=True)
class Scope:
    """Which records a pass looks at: a process's module and criteria, and the cutoff of each stage with a max."""

    process: str
    module: str
    where: rules_criteria.Criteria | None
    stage_field: str
    cutoffs: Mapping[str, dt.datetime]  # stage -> records that entered it before this may be overdue
    now: dt.datetime  # anchors older_than / newer_than in `where`


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A record a pass looks at: its reminder state row (None: none yet) and what was done for it in its stage."""

    record: rows.Record
    state: Mapping[str, Any] | None
    tasks_created_at: tuple[dt.datetime, ...] = ()
    appointments: tuple[tuple[dt.datetime, dt.datetime], ...] = ()  # (entered, starts)


@dataclasses.dataclass(frozen=True)
class _PassStatements:
    leavers: sa.Delete  # states of records that left the process
    candidates: sa.Select[Any]
    tasks: sa.Select[Any]
    meetings: sa.Select[Any]
    edges: sql_criteria.Edges

    def values(self, scope: Scope) -> dict[str, Any]:
        return {**self.edges.values(scope.now), "process": scope.process, "module": scope.module}


@dataclasses.dataclass
class ReminderPass:
    """One process's candidates, read in the pass's transaction, and the writes that apply its decisions."""

    conn: AsyncConnection
    process: str
    candidates: list[Candidate]
    saves: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    deletes: list[str] = dataclasses.field(default_factory=list)
    messages: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def save(self, record_id: str, state: Mapping[str, Any]) -> None:
        """Store a record's state (every column of STATE_COLUMNS)."""
        self.saves.append({"process": self.process, "record_id": record_id, **{c: state[c] for c in STATE_COLUMNS}})

    def delete(self, record_id: str) -> None:
        self.deletes.append(record_id)

    def enqueue(self, message: Mapping[str, Any]) -> None:
        self.messages.append(dict(message))

    def event(self, record_id: str, kind: str, at: dt.datetime, data: Mapping[str, Any]) -> None:
        self.events.append({"record_id": record_id, "kind": kind, "at": at, "data": dict(data), "source": "engine"})

    async def flush(self) -> None:
        s = tables.reminder_state
        gone = [*self.deletes, *(row["record_id"] for row in self.saves)]
        for i in range(0, len(gone), _CHUNK):
            await self.conn.execute(
                sa.delete(s).where(s.c.process == self.process, s.c.record_id.in_(gone[i : i + _CHUNK]))
            )
        await bulk.insert(self.conn, s, self.saves)
        for group in _by_shape(self.messages):
            await bulk.insert(self.conn, tables.outbox, group)
        await bulk.insert(self.conn, tables.events, self.events)
        self.saves, self.deletes, self.messages, self.events = [], [], [], []


def _by_shape(items: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    out: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for item in items:
        out.setdefault(tuple(item), []).append(item)
    return list(out.values())


class ReminderVerbs:
    engine: AsyncEngine
    dialect: str
    fields: Mapping[str, FieldType]
    _record: Callable[[sa.Row[Any]], rows.Record]
    statement: Callable[[Hashable, Callable[[], Any]], Any]

    @contextlib.asynccontextmanager
    async def reminder_pass(self, scope: Scope, known: Sequence[str]) -> AsyncIterator[ReminderPass]:
        """One process's pass in one transaction (on PostgreSQL, after another daemon's pass of it ended).

        States of processes not in `known` (removed from the rules) and of records that left the
        process (deleted, converted, no longer matching `where`) are deleted first.
        """
        s = tables.reminder_state
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":  # per schema: other installations in the database are not in the way
                key = sa.func.hashtext(
                    sa.func.concat("outreach reminders ", sa.func.current_schema(), " ", scope.process)
                )
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
            await conn.execute(sa.delete(s).where(s.c.process.not_in(list(known))))
            statements = self._statements_of(scope)
            await conn.execute(statements.leavers, statements.values(scope))
            batch = ReminderPass(conn, scope.process, await self._candidates(conn, scope, None, everyone=False))
            yield batch
            await batch.flush()

    async def reminder_candidates(
        self, scope: Scope, *, record_ids: Sequence[str] | None = None, everyone: bool = False
    ) -> list[Candidate]:
        """The records a pass would look at (read only), for `processes overdue` and `records show`.

        With `everyone`, every record that follows the process, overdue or not; with `record_ids`, only those.
        """
        async with self.engine.connect() as conn:
            return await self._candidates(conn, scope, record_ids, everyone=everyone)

    async def reminder_states(self, process: str | None = None) -> list[dict[str, Any]]:
        s = tables.reminder_state
        query = sa.select(s).order_by(s.c.process, s.c.record_id)
        if process is not None:
            query = query.where(s.c.process == process)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    # --- inside -------------------------------------------------------------------------------

    def _statements_of(self, scope: Scope, *, everyone: bool = False, by_id: bool = False) -> _PassStatements:
        """A process's statements, built once (the pass runs every few minutes) and bound to each pass's `now`."""
        lengths = tuple((name, scope.now - cutoff) for name, cutoff in scope.cutoffs.items())
        key = ("reminders", scope.process, scope.module, scope.where, scope.stage_field, lengths, everyone, by_id)
        found: _PassStatements = self.statement(key, lambda: self._build(scope, lengths, everyone=everyone,
                                                                         by_id=by_id))  # fmt: skip
        return found

    def _build(
        self, scope: Scope, lengths: tuple[tuple[str, dt.timedelta], ...], *, everyone: bool, by_id: bool
    ) -> _PassStatements:
        r, s, t, a = tables.records, tables.reminder_state, tables.tasks, tables.appointments
        edges = sql_criteria.Edges("edge_")
        # Records that follow the process: live, of its module, matching its criteria.
        member = sa.and_(
            r.c.type == sa.bindparam("module"),
            r.c.deleted_at.is_(None),
            sql_criteria.compile_criteria(scope.where, self.fields, edges) if scope.where else sa.true(),
        )
        process = sa.bindparam("process", type_=sa.String())
        leavers = sa.delete(s).where(s.c.process == process, s.c.record_id.not_in(sa.select(r.c.id).where(member)))
        where = member
        if not everyone:  # in a stage with a max, entered before its cutoff; or with a state (its period may end)
            in_stage = rules_criteria.Leaf
            overdue = sa.or_(sa.false(), *(
                sa.and_(sql_criteria.compile_criteria(in_stage(scope.stage_field, rules_criteria.Op.EQ, name),
                                                      self.fields, edges),
                        r.c.stage_entered_at.is_not(None),
                        r.c.stage_entered_at < edges.edge("stage_entered_at", FieldType.DATETIME, length))
                for name, length in lengths
            ))  # fmt: skip
            has_state = sa.exists().where(s.c.process == process, s.c.record_id == r.c.id).correlate(r)
            where = sa.and_(member, sa.or_(overdue, has_state))
        if by_id:
            where = sa.and_(where, r.c.id.in_(sa.bindparam("ids", expanding=True)))
        state_cols = [c.label(f"state_{c.name}") for c in s.c if c.name in STATE_COLUMNS]
        candidates = (
            sa.select(r, *state_cols)
            .select_from(r.outerjoin(s, sa.and_(s.c.process == process, s.c.record_id == r.c.id)))
            .where(where)
            .order_by(r.c.id)
        )
        # What was done for them since they entered their stage: only that can stop a reminder.
        tasks = (
            sa.select(t.c.record_id, t.c.created_at)
            .join(r, r.c.id == t.c.record_id)
            .where(where, t.c.created_at >= r.c.stage_entered_at)
        )
        meetings = (
            sa.select(a.c.record_id, a.c.created_at, a.c.starts_at)
            .join(r, r.c.id == a.c.record_id)
            .where(where, a.c.created_at >= r.c.stage_entered_at)
        )
        return _PassStatements(leavers, candidates, tasks, meetings, edges)

    async def _candidates(
        self, conn: AsyncConnection, scope: Scope, record_ids: Sequence[str] | None, *, everyone: bool
    ) -> list[Candidate]:
        statements = self._statements_of(scope, everyone=everyone, by_id=record_ids is not None)
        values = statements.values(scope)
        if record_ids is not None:
            values["ids"] = list(record_ids)
        found: list[tuple[rows.Record, dict[str, Any] | None]] = []
        for row in await conn.execute(statements.candidates, values):
            m = row._mapping
            state = {c: m[f"state_{c}"] for c in STATE_COLUMNS} if m["state_stage"] is not None else None
            found.append((self._record(row), state))
        if not found:
            return []
        tasks: dict[str, list[dt.datetime]] = {}
        for row in await conn.execute(statements.tasks, values):
            tasks.setdefault(row.record_id, []).append(row.created_at)
        meetings: dict[str, list[tuple[dt.datetime, dt.datetime]]] = {}
        for row in await conn.execute(statements.meetings, values):
            meetings.setdefault(row.record_id, []).append((row.created_at, row.starts_at))
        return [
            Candidate(
                record, state, tuple(sorted(tasks.get(record.id, ()))), tuple(sorted(meetings.get(record.id, ())))
            )
            for record, state in found
        ]
