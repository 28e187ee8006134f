"""An SQLite store in memory whose statements run at once on the event loop's thread: RuleTests and `simulate`.

aiosqlite hands every statement to a thread of its own and back. For a private database in memory, where a
statement never waits, that trip costs more than the statement (ten times a whole RuleTest run on a small
machine). `InlineConnection` gives SQLAlchemy's aiosqlite dialect what it drives, aiosqlite's public interface
(a connection's cursor, execute, executemany, execute_fetchall, commit, rollback, close, create_function; a
cursor's execute, fetches, description, rowcount, lastrowid), over a plain sqlite3 connection, each call done
before it returns. It neither subclasses aiosqlite nor touches anything private of it, so an aiosqlite release
cannot change how it behaves.

`MemoryStore` keeps one such store and empties it between RuleTests (all but the definitions, so the SQL the
store compiled for one test serves the next), and answers the runner's questions about what is due next
straight from sqlite3 (the store's verbs cost more than these queries).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from outreach.rules.criteria import FieldType
from outreach.store import migrate, tables
from outreach.store.store import Store


class InlineCursor:
    """A cursor with aiosqlite's async interface over a sqlite3 cursor."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        self._cursor.execute(sql, parameters if parameters is not None else ())
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class InlineConnection:
    """A connection with aiosqlite's async interface over a sqlite3 connection; every call runs at once."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection: sqlite3.Connection | None = connection  # SQLAlchemy's dialect looks at it, as at aiosqlite's

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("Connection closed")
        return self._connection

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._open().cursor())

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        return await self.cursor().execute(sql, parameters)

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        return await self.cursor().executemany(sql, parameters)

    async def execute_fetchall(self, sql: str, parameters: Any = ()) -> list[Any]:
        return self._open().execute(sql, parameters).fetchall()

    async def commit(self) -> None:
        self._open().commit()

    async def rollback(self) -> None:
        self._open().rollback()

    async def create_function(self, name: str, num_params: int, func: Callable[..., Any], **kw: Any) -> None:
        self._open().create_function(name, num_params, func, **kw)

    @property
    def isolation_level(self) -> str | None:
        return self._open().isolation_level

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


_KEPT = ("alembic_version", "definitions", "active_definitions")  # the same rule set's definitions stay applied

# What is due next, read from the store's tables (SQLite keeps times as naive UTC text, which sorts as time).
_NEXT_STEP = (
    "SELECT min(next_due_at) FROM enrollments WHERE status = 'active' AND NOT awaiting_task AND next_due_at IS NOT NULL"
)
_NEXT_RETRY = "SELECT min(next_attempt_at) FROM outbox WHERE state = 'deferred'"
_STATES = (
    "SELECT record_id, stage, stage_entered_at, overdue_since, next_due_at, stopped FROM reminder_state "
    "WHERE process = ?"
)
_STAGED = (
    "SELECT id, stage, stage_entered_at FROM records WHERE type = ? AND deleted_at IS NULL "
    "AND stage IS NOT NULL AND stage_entered_at IS NOT NULL"
)
_STAGED_IN_FIELD = (
    "SELECT id, json_extract(fields, ?), stage_entered_at FROM records WHERE type = ? AND deleted_at IS NULL "
    "AND stage_entered_at IS NOT NULL"
)

# Campaigns: the runs and the follow-ups that started, the recipients whose mail is not rendered yet (by why they
# wait), and campaign mail rendered and not yet handed over.
_CAMPAIGN_RUNS = "SELECT campaign, status, send_at, started_at FROM campaign_runs"
_CAMPAIGN_STEPS = "SELECT campaign, step, status FROM campaign_steps"
_CAMPAIGN_WAITING = (
    "SELECT campaign, step, min(held_until), max(held_until IS NULL) FROM campaign_recipients "
    "WHERE status = 'queued' GROUP BY campaign, step"
)
_CAMPAIGN_BACKLOG = "SELECT count(*) FROM outbox WHERE state IN ('queued', 'deferred') AND campaign IS NOT NULL"
_LINK_OF = "SELECT link_key, link_urls FROM outbox WHERE message_id = ?"


def _stamp(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def _when(text: str) -> dt.datetime:
    found = _stamp(text)
    assert found is not None
    return found


class MemoryStore:
    """One SQLite store in memory, emptied between RuleTests (see the module's docstring)."""

    def __init__(self) -> None:
        self.store: Store | None = None
        self._raw: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        self._raw = sqlite3.connect(":memory:", check_same_thread=False)
        self._raw.execute("PRAGMA foreign_keys=ON")
        return self._raw

    async def fresh(self, fields: Mapping[str, FieldType]) -> Store:
        """The store, empty but for the definitions applied, typing record fields as `fields` says."""
        if self.store is None:

            async def connection() -> InlineConnection:
                return InlineConnection(self._connect())

            engine = create_async_engine("sqlite+aiosqlite://", poolclass=sa.pool.StaticPool, async_creator=connection)
            await migrate.upgrade(engine)
            self.store = Store(engine, "sqlite:///:memory:")
        else:
            raw = self._sqlite()
            emptied = [t.name for t in reversed(tables.metadata.sorted_tables) if t.name not in _KEPT]
            script = "".join(f"DELETE FROM {name};" for name in emptied)
            if raw.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
                script += "DELETE FROM sqlite_sequence WHERE name <> 'definitions';"  # ids start at 1 again
            raw.executescript(f"BEGIN;{script}COMMIT;")
        self.store.fields = dict(fields)
        return self.store

    def _sqlite(self) -> sqlite3.Connection:
        if self._raw is None:
            raise RuntimeError("the memory store is not open")
        return self._raw

    # --- what is due next -------------------------------------------------------------------------------

    def next_step_due(self) -> dt.datetime | None:
        """When the next active enrollment's step is due (None: none is)."""
        return _stamp(self._sqlite().execute(_NEXT_STEP).fetchone()[0])

    def next_retry_due(self) -> dt.datetime | None:
        """When the next deferred message is to be tried again (None: none is deferred)."""
        return _stamp(self._sqlite().execute(_NEXT_RETRY).fetchone()[0])

    def reminder_states(
        self, process: str
    ) -> dict[str, tuple[Any, dt.datetime | None, dt.datetime | None, dt.datetime | None, str | None]]:
        """record -> (stage, stage entered at, overdue since, next reminder due, stopped) of a process's states."""
        return {rid: (stage, _stamp(entered), _stamp(since), _stamp(due), stopped)
                for rid, stage, entered, since, due, stopped in self._sqlite().execute(_STATES, (process,))}  # fmt: skip

    def staged(self, module: str, stage_field: str) -> Sequence[tuple[str, Any, dt.datetime]]:
        """(id, stage, entered at) of the live records of a module that are in a stage (of `stage_field`)."""
        raw = self._sqlite()
        if stage_field == "stage":
            return [(rid, stage, at) for rid, stage, text in raw.execute(_STAGED, (module,))
                    if (at := _stamp(text)) is not None]  # fmt: skip
        found = raw.execute(_STAGED_IN_FIELD, (f"$.{stage_field}", module))
        return [(rid, json.loads(stage) if isinstance(stage, str) and stage[:1] in '"[{' else stage, at)
                for rid, stage, text in found if (at := _stamp(text)) is not None]  # fmt: skip

    def campaign_runs(self) -> list[tuple[str, str, dt.datetime, dt.datetime | None]]:
        """(campaign, status, send time, started at) of every campaign's run."""
        return [(name, status, _when(send_at), _stamp(started))
                for name, status, send_at, started in self._sqlite().execute(_CAMPAIGN_RUNS)]  # fmt: skip

    def campaign_steps(self) -> dict[tuple[str, int], str]:
        """(campaign, step) -> status of the follow-ups that started."""
        return {(name, step): status for name, step, status in self._sqlite().execute(_CAMPAIGN_STEPS)}

    def campaign_waiting(self) -> list[tuple[str, int, dt.datetime | None, bool]]:
        """(campaign, step, the earliest time mail held back may go, whether some is not held) of each step with
        recipients whose mail is not rendered yet."""
        return [(name, step, _stamp(held), bool(unheld))
                for name, step, held, unheld in self._sqlite().execute(_CAMPAIGN_WAITING)]  # fmt: skip

    def campaign_backlog(self) -> int:
        """Campaign mail rendered and not yet handed over (queued or deferred)."""
        return int(self._sqlite().execute(_CAMPAIGN_BACKLOG).fetchone()[0])

    def link_of(self, message_id: str) -> tuple[str | None, tuple[str, ...]]:
        """(link key in hex, the URLs its tracked links lead to) of a message in the outbox."""
        row = self._sqlite().execute(_LINK_OF, (message_id,)).fetchone()
        if row is None:
            return None, ()
        urls = json.loads(row[1]) if isinstance(row[1], str) else row[1]  # JSON text; 'null' without links
        return row[0], tuple(str(u) for u in urls or ())

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()
            self.store = None
            self._raw = None
