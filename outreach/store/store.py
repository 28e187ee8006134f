"""The store: one class with domain verbs over SQLite (embedded) or PostgreSQL (several daemons).

Callers never write SQL. `now` is always a parameter: nothing here reads the
clock and no statement asks the database for the time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import types
import uuid
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from outreach import files
from outreach.rules import criteria as rules_criteria
from outreach.rules import model
from outreach.rules.criteria import FieldType
from outreach.store import bulk, campaigning, changes, leasing, linking, migrate, reminding, rows, sequencing, tables
from outreach.store import criteria as sql_criteria
from outreach.store import inbound as inbound_verbs
from outreach.store import suppressing as suppression_verbs

DEFAULT_URL = "sqlite:///var/outreach.db"
IMPORT_BATCH = 2000
MAX_KEPT_PROBLEMS = 1000


class StoreError(Exception):
    """A problem with the database itself: a URL that does not parse, no connection, an old schema."""


class StoreBusy(StoreError):
    """Another daemon holds the store."""


class NotFound(StoreError):
    """No such record, task or enrollment."""


def resolve_url(cli: str | None, environ: Mapping[str, str], settings_url: str | None) -> str:
    """The database URL: --db, then $OUTREACH_DB, then Settings.database, then the embedded default."""
    return cli or environ.get("OUTREACH_DB") or settings_url or DEFAULT_URL


# SQLite's WAL: checkpointed by SQLite itself only past this many pages (256 MB of 4 KB pages; its default is
# 1,000), and cut back to this size when it starts again after a checkpoint.
WAL_AUTOCHECKPOINT_PAGES = 65536
WAL_KEEP_BYTES = 64 * 1024 * 1024


def _engine(url: str, schema: str | None) -> AsyncEngine:
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise StoreError(f"the database URL {url!r} does not parse: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
        database = parsed.database or ""
        kwargs: dict[str, Any] = {}
        if database in ("", ":memory:"):
            kwargs = {"poolclass": sa.pool.StaticPool}  # one shared connection keeps the memory database
        else:
            files.private_file(os.path.abspath(database))  # it holds every record and message
        engine = create_async_engine(parsed, **kwargs)

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            if database not in ("", ":memory:"):
                cursor.execute("PRAGMA journal_mode=WAL")
                # A burst of due steps is written to the WAL without copying it into the database file between
                # batches; the daemon checkpoints after a busy tick (Store.checkpoint). The bound is a backstop.
                cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
                cursor.execute(f"PRAGMA journal_size_limit={WAL_KEEP_BYTES}")
                cursor.execute(f"PRAGMA synchronous={sequencing.SYNCHRONOUS}")  # a due batch relaxes it for itself
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

        return engine
    if backend == "postgresql":
        parsed = parsed.set(drivername="postgresql+asyncpg")
        connect_args = {"server_settings": {"search_path": schema}} if schema else {}
        try:
            return create_async_engine(parsed, connect_args=connect_args, pool_pre_ping=True)
        except ModuleNotFoundError as exc:
            if exc.name != "asyncpg":
                raise
            # asyncpg is the optional extra `postgres`: SQLite, the default, needs no driver to install
            shown = parsed.set(drivername=backend).render_as_string(hide_password=True)
            raise StoreError(
                f"{shown} is a PostgreSQL database, and its driver asyncpg is not installed: "
                "pip install 'outreach[postgres]'"
            ) from None
    raise StoreError(f"the database URL {url!r} names {backend!r}; outreach uses sqlite or postgresql")


_IDS_AT_ONCE = 900  # values in one IN (...): under every SQLite build's limit on bound parameters
_RECORD = sa.select(tables.records).where(tables.records.c.id == sa.bindparam("id"))
_RECORDS_BY_ID = sa.select(tables.records).where(tables.records.c.id.in_(sa.bindparam("ids", expanding=True)))
_S = TypeVar("_S")
_MAX_STATEMENTS = 256


class Store(campaigning.CampaignVerbs, leasing.LeaseVerbs, linking.LinkVerbs, linking.StatusVerbs, sequencing.SequenceVerbs, reminding.ReminderVerbs, inbound_verbs.InboundVerbs,
            suppression_verbs.SuppressionVerbs):
    """Domain verbs over one database. Open with `await Store.open(url)`; close with `await store.close()`."""

    def __init__(self, engine: AsyncEngine, url: str) -> None:
        self.engine = engine
        self.url = url
        self.dialect = engine.dialect.name
        self._lock_file: Any = None
        self._file_backed = self.dialect == "sqlite" and sa.make_url(url).database not in (None, "", ":memory:")
        self.fields = rules_criteria.BUILTIN_FIELDS
        self._statements: dict[Hashable, Any] = {}

    @property
    def fields(self) -> Mapping[str, FieldType]:
        """The rule set's record fields (Settings.fields): how custom values are typed and compared. Set it
        whole (the scheduler does, from its rule set); what is derived from it is kept with it."""
        return self._fields

    @fields.setter
    def fields(self, value: Mapping[str, FieldType]) -> None:
        self._fields: Mapping[str, FieldType] = types.MappingProxyType(dict(value))
        self._fields_key = tuple(self._fields.items())
        self._datetime_fields = frozenset(name for name, kind in self._fields.items() if kind is FieldType.DATETIME)

    def statement(self, key: Hashable, build: Callable[[], _S]) -> _S:
        """A statement the scheduler runs again and again, built once per key and the record fields' types
        (building one in SQLAlchemy costs more than SQLite takes to run it on a small store)."""
        full = (key, self._fields_key)
        found = self._statements.get(full)
        if found is None:
            if len(self._statements) >= _MAX_STATEMENTS:  # old rule versions' criteria: start again
                self._statements.clear()
            found = self._statements[full] = build()
        return cast(_S, found)

    # --- opening -----------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        fields: Mapping[str, FieldType] | None = None,
        upgrade: bool | None = None,
        schema: str | None = None,
    ) -> Store:
        """Connect; SQLite (the embedded default) upgrades its schema itself, PostgreSQL when `upgrade`.

        Raises StoreError with one line saying what is wrong.
        """
        engine = _engine(url, schema)
        shown = sa.make_url(url).render_as_string(hide_password=True)
        try:
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except Exception as exc:
            await engine.dispose()
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise StoreError(f"cannot connect to {shown}: {reason}") from None
        store = cls(engine, shown)
        if fields is not None:
            store.fields = dict(fields)
        if upgrade is None:
            upgrade = store.dialect == "sqlite"
        if upgrade:
            await migrate.upgrade(engine)
        else:
            at = await migrate.current(engine)
            if at != migrate.head():
                await engine.dispose()
                raise StoreError(
                    f"{shown} is at schema revision {at or 'none'}; this outreach needs {migrate.head()}: "
                    "run `outreach db upgrade`"
                )
        return store

    async def close(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        await self.engine.dispose()

    async def checkpoint(self) -> int:
        """Copy what SQLite's WAL holds into the database file, without waiting for readers (PASSIVE); the
        daemon calls it after a tick that wrote. Returns the pages copied; 0 on PostgreSQL and in memory."""
        if self.dialect != "sqlite" or sa.make_url(self.url).database in (None, "", ":memory:"):
            return 0
        async with self.engine.connect() as conn:
            row: tuple[int, int, int] = tuple((await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")).one())
        return max(row[2], 0)  # (busy, frames in the WAL, frames copied); -1 when not in WAL mode

    @staticmethod
    def schema_head() -> str:
        """The newest schema revision this version of outreach knows (Alembic's head)."""
        return migrate.head()

    async def revision(self) -> str | None:
        return await migrate.current(self.engine)

    def hold_single_daemon(self) -> None:
        """Refuse a second daemon on one SQLite file (SKIP LOCKED does not exist there).

        PostgreSQL needs no such lock: daemons share the work there.
        """
        if self.dialect != "sqlite":
            return
        database = sa.make_url(self.url).database
        if not database or database == ":memory:":
            return
        path = os.path.abspath(database) + ".daemon-lock"
        # held open for the daemon's life; its owner's only, as the database
        handle = open(path, "a+", opener=lambda p, flags: os.open(p, flags, 0o600))  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise StoreBusy(
                f"another outreach daemon ({holder}) already runs on {database}; SQLite allows one daemon. "
                "Stop it, or use PostgreSQL to run several."
            ) from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        self._lock_file = handle

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.begin() as conn:
            yield conn

    async def _write_lock(self, conn: AsyncConnection) -> None:
        """On an SQLite file, take the write lock before anything is read (BEGIN IMMEDIATE): SQLite's driver
        reads outside the transaction until its first write, so what was read could change before it. Another
        process's write waits (busy_timeout), as it would for any write. PostgreSQL locks rows as it reads them."""
        if self._file_backed:
            await conn.exec_driver_sql("BEGIN IMMEDIATE")

    @contextlib.asynccontextmanager
    async def changing(self) -> AsyncIterator[changes.Changes]:
        """One transaction for an event: the application layer reads what it is about and writes what the engine
        decided through the Changes yielded; all of it commits together (outreach/store/changes.py)."""
        async with self.engine.begin() as conn:
            await self._write_lock(conn)
            yield changes.Changes(conn, self.dialect, self._record_of)

    # --- records -------------------------------------------------------------------------

    def _record(self, row: sa.Row[Any]) -> rows.Record:
        return self._record_of(row._mapping)

    def _record_of(self, m: Mapping[Any, Any]) -> rows.Record:
        return rows.Record(
            id=m["id"],
            type=m["type"],
            email=m["email"],
            owner=m["owner"],
            stage=m["stage"],
            stage_entered_at=m["stage_entered_at"],
            timezone=m["timezone"],
            fields=self._fields_out(m["fields"]),
            created_at=m["created_at"],
            updated_at=m["updated_at"],
            converted_at=m["converted_at"],
            deleted_at=m["deleted_at"],
        )

    async def get_record(self, record_id: str) -> rows.Record:
        async with self.engine.connect() as conn:
            row = (await conn.execute(_RECORD, {"id": record_id})).first()
        if row is None:
            raise NotFound(f"no record {record_id!r}")
        return self._record(row)

    async def records_by_id(self, ids: list[str]) -> dict[str, rows.Record]:
        async with self.engine.connect() as conn:
            return await self._records_in(conn, ids)

    async def owners_and_zones(self, ids: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
        """Each record's owner and time zone by id: who mail to it may go out as and whose clock it is read on
        (the few columns the forecast of daily limits needs of many records, without reading them whole)."""
        r = tables.records
        found: dict[str, tuple[str | None, str | None]] = {}
        async with self.engine.connect() as conn:
            for i in range(0, len(ids), _IDS_AT_ONCE):
                query = sa.select(r.c.id, r.c.owner, r.c.timezone).where(r.c.id.in_(ids[i : i + _IDS_AT_ONCE]))
                found.update((row.id, (row.owner, row.timezone)) for row in await conn.execute(query))
        return found

    async def _records_in(self, conn: AsyncConnection, ids: list[str]) -> dict[str, rows.Record]:
        if self.dialect == "sqlite":  # read from the driver: the scheduler reads hundreds at a time
            found = await bulk.select_sqlite(conn, tables.records, "id IN (SELECT value FROM json_each(?))",
                                             (json.dumps(ids),))  # fmt: skip
            return {m["id"]: self._record_of(m) for m in found}
        return {row.id: self._record(row) for row in await conn.execute(_RECORDS_BY_ID, {"ids": ids})}

    async def auto_enrollment_candidates(
        self,
        where: rules_criteria.Criteria,
        *,
        modules: tuple[str, ...],
        sequence: str,
        changed_since: dt.datetime | None,
        now: dt.datetime,
        limit: int,
    ) -> list[rows.Record]:
        """Live records with an email that match, of the given types, never enrolled in this sequence.

        Never: not in this version nor an earlier one, so that editing a sequence does
        not send it again to people who had it. With `changed_since`, only records
        updated since then (the scheduler's last look).
        """

        def build() -> tuple[sa.Select[Any], sql_criteria.Edges]:
            r, e = tables.records, tables.enrollments
            edges = sql_criteria.Edges("edge_")
            enrolled = sa.exists().where(e.c.record_id == r.c.id, e.c.sequence == sa.bindparam("sequence"))
            query = (
                sa.select(r)
                .where(sql_criteria.compile_criteria(where, self.fields, edges), r.c.type.in_(modules),
                       r.c.deleted_at.is_(None), r.c.email.is_not(None), ~enrolled)
                .order_by(r.c.updated_at, r.c.id)
                .limit(sa.bindparam("limit"))
            )  # fmt: skip
            if changed_since is not None:
                query = query.where(r.c.updated_at >= sa.bindparam("since", type_=tables.UTCDateTime()))
            return query, edges

        query, edges = self.statement(("auto-enrollment", where, modules, changed_since is None), build)
        values = {**edges.values(now), "sequence": sequence, "limit": limit}
        if changed_since is not None:
            values["since"] = changed_since
        async with self.engine.connect() as conn:
            return [self._record(row) for row in await conn.execute(query, values)]

    async def definition_body(self, kind: str, name: str, digest: str) -> dict[str, Any] | None:
        d = tables.definitions
        query = sa.select(d.c.body).where(d.c.kind == kind, d.c.name == name, d.c.hash == digest)
        async with self.engine.connect() as conn:
            body = (await conn.execute(query)).scalar()
        return dict(body) if body is not None else None

    async def list_records(
        self,
        where: rules_criteria.Criteria | None = None,
        *,
        now: dt.datetime,
        module: str | None = None,
        include_deleted: bool = False,
        limit: int | None = None,
        not_enrolled: bool = False,
    ) -> list[rows.Record]:
        """Records matching criteria (compiled to SQL), ordered by id; with `not_enrolled`, only those in no
        sequence (no active or blocked enrollment)."""
        r = tables.records
        query = sa.select(r).where(*self._matching(where, now, module, include_deleted, not_enrolled)).order_by(r.c.id)
        if limit is not None:
            query = query.limit(limit)
        async with self.engine.connect() as conn:
            return [self._record(row) for row in await conn.execute(query)]

    async def count_records(
        self,
        where: rules_criteria.Criteria | None = None,
        *,
        now: dt.datetime,
        module: str | None = None,
        include_deleted: bool = False,
        not_enrolled: bool = False,
    ) -> int:
        """How many records `list_records` would find without a limit."""
        query = sa.select(sa.func.count()).select_from(tables.records)
        query = query.where(*self._matching(where, now, module, include_deleted, not_enrolled))
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    def _matching(self, where: rules_criteria.Criteria | None, now: dt.datetime, module: str | None,
                  include_deleted: bool, not_enrolled: bool = False) -> list[sa.ColumnElement[bool]]:  # fmt: skip
        """The conditions of `list_records` and `count_records`."""
        r, e = tables.records, tables.enrollments
        found: list[sa.ColumnElement[bool]] = []
        if not_enrolled:  # the (record_id) index finds a record's enrollments
            found.append(~sa.exists().where(e.c.record_id == r.c.id, e.c.status.in_(changes.LIVE)))
        if where is not None:
            found.append(sql_criteria.compile_criteria(where, self.fields, now))
        if module is not None:
            found.append(r.c.type == module)
        if not include_deleted:
            found.append(r.c.deleted_at.is_(None))
        return found

    async def import_records(
        self,
        items: Iterable[Any],
        *,
        now: dt.datetime,
        update: bool = False,
        skip_invalid: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> rows.ImportResult:
        """Write parsed rows (outreach.records.Row) and refusals (RowError) in one transaction.

        Without `skip_invalid`, any refused row rolls the whole file back, so a
        rejected file leaves nothing half-written; every problem is reported
        with its line either way. With `update`, a row whose id (or, without an
        id, whose email) exists updates that record; otherwise it is refused.
        """
        result = rows.ImportResult()
        seen = 0

        def refuse(line: int, message: str) -> None:
            result.problem_count += 1
            if len(result.problems) < MAX_KEPT_PROBLEMS:
                result.problems.append(rows.ImportProblem(line, message))

        async with self.engine.connect() as conn, conn.begin() as tx:
            batch: list[Any] = []
            for item in items:
                seen += 1
                if not hasattr(item, "fields"):  # a RowError
                    refuse(item.line, item.message)
                else:
                    batch.append(item)
                if len(batch) >= IMPORT_BATCH:
                    await self._import_batch(conn, batch, now, update, refuse, result)
                    batch = []
                if progress is not None and seen % 1000 == 0:
                    progress(seen)
            if batch:
                await self._import_batch(conn, batch, now, update, refuse, result)
            if progress is not None:
                progress(seen)
            if result.problem_count and not skip_invalid:
                await tx.rollback()  # a rejected file leaves nothing behind
                result.inserted = result.updated = 0
            else:
                result.committed = True  # the block's end commits
        result.problems.sort(key=lambda p: p.line)
        return result

    async def _import_batch(
        self,
        conn: AsyncConnection,
        batch: list[Any],
        now: dt.datetime,
        update: bool,
        refuse: Callable[[int, str], None],
        result: rows.ImportResult,
    ) -> None:
        r = tables.records
        ids = [x.id for x in batch if x.id]
        existing: dict[str, Any] = {}
        if ids:
            found = await conn.execute(sa.select(r.c.id, r.c.stage, r.c.fields).where(r.c.id.in_(ids)))
            existing = {row.id: row for row in found}
        by_email: dict[str, str] = {}
        emails = [x.email for x in batch if not x.id and x.email]
        if emails:
            found = await conn.execute(
                sa.select(r.c.id, r.c.email).where(r.c.email.in_(emails), r.c.deleted_at.is_(None))
            )
            by_email = {row.email: row.id for row in found}
        inserts: list[dict[str, Any]] = []
        for x in batch:
            if x.id:
                target = x.id if x.id in existing else None
            else:
                target = by_email.get(x.email) if x.email else None
            if target is None:
                values = {**_INSERT_DEFAULTS, **_record_values(x, now)}
                values["id"] = x.id or f"r-{uuid.uuid4().hex[:12]}"
                inserts.append(values)
                continue
            if not update:
                what = f"record {target!r}" if x.id else f"a record with email {x.email!r} ({target})"
                refuse(x.line, f"{what} exists (use --update to change it)")
                continue
            if target not in existing:
                got = await conn.execute(sa.select(r.c.id, r.c.stage, r.c.fields).where(r.c.id == target))
                existing[target] = got.one()
            await self._update_record(conn, existing[target], x, now, source="import", line=x.line)
            result.updated += 1
        if inserts:
            await self._insert_records(conn, inserts)
            result.inserted += len(inserts)

    async def _insert_records(self, conn: AsyncConnection, inserts: list[dict[str, Any]]) -> None:
        """Insert many records. On SQLite the values go to the driver as SQLAlchemy would store them.

        SQLAlchemy's per-value conversions cost more than SQLite's own work on a
        large import; the values below are exactly what its UTCDateTime, DATETIME
        and JSON types write (the contract tests read them back through them).
        """
        if self.dialect != "sqlite":
            await conn.execute(sa.insert(tables.records), inserts)
            return
        stamp = bulk.sqlite_stamp  # the same text as SQLAlchemy writes, kept for the repeated `now`
        await conn.exec_driver_sql(
            _SQLITE_INSERT_RECORDS,
            [
                (v["id"], v["type"], v["email"], v["owner"], v["stage"], stamp(v["stage_entered_at"]), v["timezone"],
                 json.dumps(v["fields"]), stamp(v["created_at"]), stamp(v["updated_at"]))
                for v in inserts
            ],
        )  # fmt: skip

    async def _update_record(
        self, conn: AsyncConnection, old: Any, x: Any, now: dt.datetime, *, source: str, line: int | None = None
    ) -> None:
        new = _record_values(x, now)
        new.pop("created_at")
        if new["email"] is None:
            del new["email"]  # a file without the address (or an empty cell) leaves it as it is
        merged_fields = {**dict(old.fields or {}), **new["fields"]}
        new["fields"] = merged_fields
        stage_changed = "stage" in new and new["stage"] != old.stage
        if stage_changed and "stage_entered_at" not in x.fields:
            new["stage_entered_at"] = now
        elif not stage_changed and "stage_entered_at" not in x.fields:
            new.pop("stage_entered_at", None)  # the same stage again: the record stays where it was since then
        await conn.execute(sa.update(tables.records).where(tables.records.c.id == old.id).values(**new))
        if stage_changed:
            await self._event(conn, old.id, "stage_changed", now, {"from": old.stage, "to": new["stage"]}, source)
        details: dict[str, Any] = {"fields": sorted(x.fields)}
        if line:
            details["line"] = line
        await self._event(conn, old.id, "updated", now, details, source)

    async def set_fields(
        self, record_id: str, values: Mapping[str, Any], *, now: dt.datetime, source: str = "cli"
    ) -> rows.Record:
        """Change fields of a record; a stage change records stage_entered_at and a stage_changed event."""
        r = tables.records
        async with self._tx() as conn:
            old = (await conn.execute(sa.select(r).where(r.c.id == record_id))).first()
            if old is None:
                raise NotFound(f"no record {record_id!r}")
            columns = {k: v for k, v in values.items() if k in rows.BUILTIN_COLUMNS}
            custom = {k: sql_criteria.json_value(v) for k, v in values.items() if k not in rows.BUILTIN_COLUMNS}
            update: dict[str, Any] = {**columns, "updated_at": now}
            if custom:
                update["fields"] = {**dict(old.fields or {}), **custom}
            stage_changed = "stage" in columns and columns["stage"] != old.stage
            if stage_changed and "stage_entered_at" not in columns:
                update["stage_entered_at"] = now
            await conn.execute(sa.update(r).where(r.c.id == record_id).values(**update))
            if stage_changed:
                await self._event(
                    conn, record_id, "stage_changed", now, {"from": old.stage, "to": columns["stage"]}, source
                )
            changed = {k: _jsonable(v) for k, v in values.items()}
            await self._event(conn, record_id, "updated", now, {"fields": changed}, source)
        return await self.get_record(record_id)

    def _fields_out(self, stored: Mapping[str, Any] | None) -> dict[str, Any]:
        out = dict(stored or {})
        for name in self._datetime_fields.intersection(out):  # kept as ISO text in the JSON
            value = out[name]
            if isinstance(value, str):
                out[name] = dt.datetime.fromisoformat(value)
        return out

    # --- tasks, appointments, events --------------------------------------------------------

    async def add_task(
        self,
        record_id: str,
        subject: str,
        *,
        now: dt.datetime,
        type: str = "todo",
        priority: str = "normal",
        owner: str | None = None,
        due_at: dt.datetime | None = None,
        enrollment_id: int | None = None,
        step_id: str | None = None,
        source: str = "cli",
    ) -> rows.Task:
        await self.get_record(record_id)
        async with self._tx() as conn:
            result = await conn.execute(
                sa.insert(tables.tasks).values(
                    record_id=record_id,
                    subject=subject,
                    type=type,
                    priority=priority,
                    owner=owner,
                    due_at=due_at,
                    created_at=now,
                    enrollment_id=enrollment_id,
                    step_id=step_id,
                )
            )
            task_id = int(result.inserted_primary_key[0])  # type: ignore[index]
            await self._event(conn, record_id, "task_created", now, {"task": task_id, "subject": subject}, source)
        return await self.get_task(task_id)

    async def get_task(self, task_id: int) -> rows.Task:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(tables.tasks).where(tables.tasks.c.id == task_id))).first()
        if row is None:
            raise NotFound(f"no task {task_id}")
        return rows.Task(**row._mapping)

    async def list_tasks(self, record_id: str | None = None, *, open_only: bool = True) -> list[rows.Task]:
        t = tables.tasks
        query = sa.select(t).order_by(t.c.due_at.is_(None), t.c.due_at, t.c.id)
        if record_id is not None:
            query = query.where(t.c.record_id == record_id)
        if open_only:
            query = query.where(t.c.completed_at.is_(None))
        async with self.engine.connect() as conn:
            return [rows.Task(**row._mapping) for row in await conn.execute(query)]

    async def complete_task(self, task_id: int, *, now: dt.datetime, source: str = "cli") -> rows.Task:
        t = tables.tasks
        async with self._tx() as conn:
            row = (await conn.execute(sa.select(t.c.record_id, t.c.completed_at).where(t.c.id == task_id))).first()
            if row is None:
                raise NotFound(f"no task {task_id}")
            if row.completed_at is not None:
                raise StoreError(f"task {task_id} was completed at {row.completed_at.isoformat()}")
            await conn.execute(sa.update(t).where(t.c.id == task_id).values(completed_at=now))
            await self._event(conn, row.record_id, "task_completed", now, {"task": task_id}, source)
        return await self.get_task(task_id)

    async def add_appointment(
        self, record_id: str, starts_at: dt.datetime, subject: str, *, now: dt.datetime, source: str = "cli"
    ) -> rows.Appointment:
        await self.get_record(record_id)
        a = tables.appointments
        async with self._tx() as conn:
            result = await conn.execute(
                sa.insert(a).values(record_id=record_id, subject=subject, starts_at=starts_at, created_at=now)
            )
            appointment_id = int(result.inserted_primary_key[0])  # type: ignore[index]
            await self._event(
                conn,
                record_id,
                "appointment",
                now,
                {"appointment": appointment_id, "starts_at": starts_at.isoformat()},
                source,
            )
            row = (await conn.execute(sa.select(a).where(a.c.id == appointment_id))).one()
        return rows.Appointment(**row._mapping)

    async def events(self, record_id: str) -> list[rows.Event]:
        """A record's activity in time order: its events, and the mail its sequences and campaigns queued.

        Sequence and campaign mail is not written twice: its outbox row is the activity (kind `sequence_email` or
        `campaign_email`, at the time it was queued, `id` the outbox message's). At one instant, events come before mail, as they were written.
        """
        e, o, en = tables.events, tables.outbox, tables.enrollments
        mail = (
            sa.select(o.c.id, o.c.created_at, o.c.step_id, o.c.subject, o.c.message_id, o.c.enrollment_id,
                      en.c.sequence)
            .join(en, en.c.id == o.c.enrollment_id)
            .where(o.c.record_id == record_id)
        )  # fmt: skip
        async with self.engine.connect() as conn:
            found = [(row.at, 0, row.id, rows.Event(**row._mapping))
                     for row in await conn.execute(sa.select(e).where(e.c.record_id == record_id))]  # fmt: skip
            for m in await conn.execute(mail):
                data = {"sequence": m.sequence, "step": m.step_id, "subject": m.subject, "message_id": m.message_id,
                        "enrollment": m.enrollment_id}  # fmt: skip
                found.append((m.created_at, 1, m.id, rows.Event(m.id, record_id, "sequence_email", m.created_at,
                                                                data, "engine")))  # fmt: skip
            campaign_mail = sa.select(o.c.id, o.c.created_at, o.c.step_id, o.c.subject, o.c.message_id, o.c.campaign,
                                      o.c.state).where(o.c.record_id == record_id, o.c.campaign.is_not(None))  # fmt: skip
            for m in await conn.execute(campaign_mail):  # a campaign's mail, as a sequence's: its outbox row
                data = {"campaign": m.campaign, "step": int(m.step_id or 0), "subject": m.subject,
                        "message_id": m.message_id, "state": m.state}  # fmt: skip
                found.append((m.created_at, 1, m.id, rows.Event(m.id, record_id, "campaign_email", m.created_at,
                                                                data, "engine")))  # fmt: skip
        return [event for *_, event in sorted(found, key=lambda x: x[:3])]

    _event = staticmethod(changes.insert_event)

    # --- definitions -------------------------------------------------------------------------

    async def active_definitions(self) -> dict[tuple[str, str], rows.ActiveDefinition]:
        a, d = tables.active_definitions, tables.definitions
        query = sa.select(a.c.kind, a.c.name, a.c.hash, a.c.applied_at, d.c.body).join(
            d, sa.and_(d.c.kind == a.c.kind, d.c.name == a.c.name, d.c.hash == a.c.hash)
        )
        async with self.engine.connect() as conn:
            return {(row.kind, row.name): rows.ActiveDefinition(**row._mapping) for row in await conn.execute(query)}

    @contextlib.asynccontextmanager
    async def applying_definitions(
        self,
        wanted: Mapping[tuple[str, str], tuple[str, Mapping[str, Any]]],
        *,
        now: dt.datetime,
        renamed_from: Mapping[tuple[str, str], tuple[str, ...]] | None = None,
    ) -> AsyncIterator[changes.AppliedDefinitions]:
        """Make `wanted` ({(kind, name): (hash, body)}) the definitions in force, in one transaction.

        New versions are kept beside the old ones. A definition that says it had another name (`renamed_from`:
        {(kind, name): earlier names}) and is not in force under its own takes over the first earlier one in force
        (outreach.rules.model.renames): what the store keeps under that name is kept under the new one from then
        on (`_rename`). The AppliedDefinitions yielded says what was added, changed, renamed and removed (`done`,
        `renamed`); through it the application layer writes, in the same transaction, what a removal or a rename
        means for the enrollments in flight (outreach/app/rules.py).
        """
        a, d = tables.active_definitions, tables.definitions
        done: dict[str, list[tuple[str, str]]] = {"added": [], "changed": [], "removed": []}
        async with self.engine.begin() as conn:
            await self._write_lock(conn)
            current = {(row.kind, row.name): row.hash for row in await conn.execute(sa.select(a))}
            renamed = []
            for (kind, old), new in model.renames(renamed_from or {}, current).items():
                await _rename(conn, kind, old, new)
                digest = current.pop((kind, old))
                current[(kind, new)] = digest
                renamed.append(changes.Renamed(kind, old, new, digest))
            known = {
                (row.kind, row.name, row.hash) for row in await conn.execute(sa.select(d.c.kind, d.c.name, d.c.hash))
            }
            moved = {(r.kind, r.new) for r in renamed}
            previous: dict[tuple[str, str], str] = {}  # the hash in force before, of what changed
            for (kind, name), (digest, body) in wanted.items():
                if current.get((kind, name)) == digest:
                    continue
                if (kind, name, digest) not in known:
                    await conn.execute(
                        sa.insert(d).values(kind=kind, name=name, hash=digest, body=dict(body), applied_at=now)
                    )
                if (kind, name) in current:
                    await conn.execute(
                        sa.update(a).where(a.c.kind == kind, a.c.name == name).values(hash=digest, applied_at=now)
                    )
                    previous[(kind, name)] = current[(kind, name)]
                    if (kind, name) not in moved:
                        done["changed"].append((kind, name))
                else:
                    await conn.execute(sa.insert(a).values(kind=kind, name=name, hash=digest, applied_at=now))
                    done["added"].append((kind, name))
            for kind, name in sorted(set(current) - set(wanted)):
                await conn.execute(sa.delete(a).where(a.c.kind == kind, a.c.name == name))
                done["removed"].append((kind, name))
            yield changes.AppliedDefinitions(conn, self.dialect, self._record_of, done=done, renamed=renamed,
                                             previous=previous)  # fmt: skip

    async def enrollment(self, enrollment_id: int) -> dict[str, Any]:
        """One enrollment's row, whatever its status; NotFound when there is none."""
        e = tables.enrollments
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(e).where(e.c.id == enrollment_id))).first()
        if row is None:
            raise NotFound(f"no enrollment {enrollment_id}")
        return dict(row._mapping)

    async def enrollment_counts(self) -> dict[tuple[str, str], int]:
        """Live (active or blocked) enrollments by (sequence, version hash)."""
        e = tables.enrollments
        query = (
            sa.select(e.c.sequence, e.c.sequence_hash, sa.func.count())
            .where(e.c.status.in_(("active", "blocked")))
            .group_by(e.c.sequence, e.c.sequence_hash)
        )
        async with self.engine.connect() as conn:
            return {(row[0], row[1]): int(row[2]) for row in await conn.execute(query)}


# What the store keeps under a definition's name, by kind: (table, column); a rename moves all of it.
_KEPT_UNDER_NAME: dict[str, tuple[tuple[sa.Table, str], ...]] = {
    "Sequence": ((tables.enrollments, "sequence"),),  # live and ended alike: the same sequence's people
    "SalesProcess": ((tables.reminder_state, "process"), (tables.outbox, "process")),
    "Campaign": ((tables.campaign_runs, "campaign"), (tables.campaign_steps, "campaign"),
                 (tables.campaign_recipients, "campaign"), (tables.outbox, "campaign")),
    "Template": ((tables.outbox, "template"),),
    "View": (),
}


async def _rename(conn: AsyncConnection, kind: str, old: str, new: str) -> None:
    """Keep under `new` what the store keeps under definition `old` of `kind`: every stored version (which one is
    in force too) and the rows that name it. Events keep the names they were written with."""
    a, d = tables.active_definitions, tables.definitions
    for table in (d, a):
        await conn.execute(sa.update(table).where(table.c.kind == kind, table.c.name == old).values(name=new))
    for table, column in _KEPT_UNDER_NAME.get(kind, ()):
        await conn.execute(sa.update(table).where(table.c[column] == old).values({column: new}))


# every insert of a batch names the same columns (executemany needs one shape)
_INSERT_DEFAULTS: dict[str, Any] = {"owner": None, "stage": None, "stage_entered_at": None, "timezone": None}


_SQLITE_INSERT_RECORDS = (
    "INSERT INTO records (id, type, email, owner, stage, stage_entered_at, timezone, fields, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _record_values(x: Any, now: dt.datetime) -> dict[str, Any]:
    """Column values of a parsed import row (outreach.records.Row): the columns it names and its custom fields."""
    values: dict[str, Any] = {"type": x.type, "email": x.email, "created_at": now, "updated_at": now}
    custom: dict[str, Any] = {}
    for k, v in x.fields.items():
        if k in _COLUMN_SET:
            values[k] = v
        else:
            custom[k] = sql_criteria.json_value(v)
    values["fields"] = custom
    if values.get("stage") is not None and "stage_entered_at" not in values:
        values["stage_entered_at"] = now
    return values


_COLUMN_SET = frozenset(rows.BUILTIN_COLUMNS)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value
