"""The stores tests open: PostgreSQL's URL and a fresh schema on it for each test, the record fields of a test
store, and what an SQLite database file itself holds.

The fixtures built on these (`backend`, `pg_schema`, `store`) are in tests/conftest.py.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from outreach.rules import criteria
from outreach.rules.criteria import FieldType

PG_URL = os.environ.get("OUTREACH_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
FIELDS: dict[str, FieldType] = {
    **criteria.BUILTIN_FIELDS,
    "first_name": FieldType.STRING,
    "company": FieldType.STRING,
    "country": FieldType.STRING,
    "score": FieldType.NUMBER,
    "purchased": FieldType.BOOLEAN,
    "signed_up_at": FieldType.DATETIME,
}


async def new_pg_schema() -> str | None:
    """A fresh schema on the local PostgreSQL, or None when there is none."""
    import asyncpg

    url = sa.make_url(PG_URL)
    try:
        conn = await asyncpg.connect(
            host=url.host, port=url.port or 5432, user=url.username, database=url.database, timeout=3
        )
    except (OSError, asyncpg.PostgresError):
        return None
    schema = f"outreach_test_{uuid.uuid4().hex[:10]}"
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.close()
    return schema


async def drop_pg_schema(schema: str) -> None:
    import asyncpg

    url = sa.make_url(PG_URL)
    conn = await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username, database=url.database)
    await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    await conn.close()


async def new_pg_database() -> str | None:
    """A fresh database on the local PostgreSQL (for processes that take only a URL), its URL; None: no server."""
    import asyncpg

    url = sa.make_url(PG_URL)
    try:
        conn = await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username, database=url.database,
                                     timeout=3)  # fmt: skip
    except (OSError, asyncpg.PostgresError):
        return None
    name = f"outreach_test_{uuid.uuid4().hex[:10]}"
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return str(url.set(database=name).render_as_string(hide_password=False))


async def drop_pg_database(database_url: str) -> None:
    import asyncpg

    url = sa.make_url(PG_URL)
    conn = await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username, database=url.database)
    await conn.execute(f'DROP DATABASE IF EXISTS "{sa.make_url(database_url).database}" WITH (FORCE)')
    await conn.close()


def in_database_file(path: Path, sql: str) -> Any:
    """What a query finds in the SQLite database file itself, not counting what is still only in its WAL."""
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def active_enrollment(
    next_due_at: dt.datetime, *, started_at: dt.datetime | None = None, record_id: str = "L1",
    email: str = "jo@example.org",
) -> dict[str, Any]:  # fmt: skip
    """An active enrollment (of jo, L1, unless told) in a sequence `s`, at its first step, as insert_enrollment
    takes it."""
    return {"record_id": record_id, "email": email, "sequence": "s", "sequence_hash": "h1", "enrolled_by": "anna",
            "status": "active", "step_index": 0, "steps_done": 0, "next_due_at": next_due_at,
            "started_at": started_at or next_due_at, "awaiting_task": False}  # fmt: skip
