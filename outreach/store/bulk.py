"""Many rows written with one statement: SQLAlchemy's executemany, or on SQLite the driver's own; and the
scheduler's reads of many rows, on SQLite straight from the driver too.

SQLAlchemy converts every value of an executemany in Python (bind processors,
parameter dictionaries), which costs more than SQLite's own work on the
scheduler's batches and on large imports. On SQLite the values here go to the
driver exactly as SQLAlchemy's types would store them: UTCDateTime and DateTime
as `YYYY-MM-DD HH:MM:SS.ffffff` UTC text, JSON as `json.dumps`, Boolean as 0/1
(tests/test_store.py reads them back through SQLAlchemy on both backends).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from outreach.store import tables


@functools.lru_cache(maxsize=4096)  # a batch writes the same `now` many times
def sqlite_stamp(value: dt.datetime | None) -> str | None:
    """An aware datetime as SQLAlchemy's SQLite DATETIME keeps it (naive UTC text)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("the store keeps aware datetimes only")
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _flag(value: Any) -> int | None:
    return None if value is None else int(bool(value))


def _converter(column: sa.Column[Any]) -> Callable[[Any], Any] | None:
    """How a value of the column goes to the driver (None: as it is)."""
    kind = column.type
    if isinstance(kind, tables.UTCDateTime):
        return sqlite_stamp
    if isinstance(kind, sa.JSON):
        return json.dumps
    if isinstance(kind, sa.Boolean):
        return _flag
    return None


def _parameters(rows: Sequence[Mapping[str, Any]], order: tuple[str, ...],
                convert: tuple[tuple[int, Callable[[Any], Any]], ...]) -> list[Any]:
    """Each row's values in `order`, converted where a column needs it (most need nothing)."""
    pick = operator.itemgetter(*order)
    if len(order) == 1:
        return [(pick(row),) for row in rows]
    if not convert:
        return [pick(row) for row in rows]
    out = []
    for row in rows:
        values = list(pick(row))
        for i, f in convert:
            values[i] = f(values[i])
        out.append(values)
    return out


async def pragma(conn: AsyncConnection, setting: str) -> None:
    """`PRAGMA setting` on the connection's SQLite driver directly: outside SQLAlchemy's transaction bookkeeping,
    so that no commit is needed after it."""
    await (await _driver(conn)).execute_fetchall(f"PRAGMA {setting}", ())


async def _driver(conn: AsyncConnection) -> Any:
    """The aiosqlite connection under SQLAlchemy's, in the same transaction. A statement through it is one trip
    to aiosqlite's thread; through SQLAlchemy it is three (a cursor made, the statement, the cursor closed), which
    cost more than SQLite's own work on a due batch's reads and writes."""
    return (await conn.get_raw_connection()).driver_connection


@functools.lru_cache(maxsize=64)
def _plan(
    table: sa.Table, columns: tuple[str, ...], key: str | None
) -> tuple[str, tuple[str, ...], tuple[tuple[int, Callable[[Any], Any]], ...]]:
    """The statement, the order its parameters take the columns in, and the conversions by position."""
    quote = sqlite.dialect().identifier_preparer.quote
    if key is None:
        sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
               f"VALUES ({', '.join('?' * len(columns))})")  # fmt: skip
        order = columns
    else:
        sets = tuple(c for c in columns if c != key)
        sql = f"UPDATE {quote(table.name)} SET {', '.join(f'{quote(c)} = ?' for c in sets)} WHERE {quote(key)} = ?"
        order = (*sets, key)
    convert = tuple((i, f) for i, c in enumerate(order) if (f := _converter(table.c[c])) is not None)
    return sql, order, convert


async def insert(conn: AsyncConnection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert rows that all name the same columns, inside a transaction (`engine.begin()` or `conn.begin()`):
    on SQLite the statement goes to the driver directly, and only the transaction's commit keeps it."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        await conn.execute(sa.insert(table), list(rows))
        return
    sql, order, convert = _plan(table, tuple(rows[0]), None)
    await (await _driver(conn)).executemany(sql, _parameters(rows, order, convert))


async def update(conn: AsyncConnection, table: sa.Table, key: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Update rows by their `key` column; every row names the same columns (the key among them). Inside a
    transaction, as `insert`."""
    if not rows:
        return
    columns = tuple(rows[0])
    if conn.dialect.name != "sqlite":
        sets = [c for c in columns if c != key]
        statement = (
            sa.update(table)
            .where(table.c[key] == sa.bindparam(f"b_{key}"))
            .values({c: sa.bindparam(f"b_{c}") for c in sets})
        )
        await conn.execute(statement, [{f"b_{k}": v for k, v in row.items()} for row in rows])
        return
    sql, order, convert = _plan(table, columns, key)
    await (await _driver(conn)).executemany(sql, _parameters(rows, order, convert))


# --- reading -----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)  # a store holds many rows written at the same instant
def _utc(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def _json_or_none(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _bool_or_none(value: int | None) -> bool | None:
    return None if value is None else bool(value)


def _reader(column: sa.Column[Any]) -> Callable[[Any], Any] | None:
    kind = column.type
    if isinstance(kind, tables.UTCDateTime):
        return _utc
    if isinstance(kind, sa.JSON):
        return _json_or_none
    if isinstance(kind, sa.Boolean):
        return _bool_or_none
    return None


@functools.lru_cache(maxsize=64)
def _select_plan(
    table: sa.Table, where: str, tail: str
) -> tuple[str, tuple[str, ...], tuple[tuple[int, Callable[[Any], Any]], ...]]:
    quote = sqlite.dialect().identifier_preparer.quote
    names = tuple(table.c.keys())
    sql = f"SELECT {', '.join(quote(n) for n in names)} FROM {quote(table.name)} WHERE {where}"
    if tail:
        sql += f" {tail}"
    readers = tuple((i, f) for i, n in enumerate(names) if (f := _reader(table.c[n])) is not None)
    return sql, names, readers


async def select_sqlite(
    conn: AsyncConnection, table: sa.Table, where: str, params: Sequence[Any], tail: str = ""
) -> list[dict[str, Any]]:
    """Every column of the rows of `table` matching `where` (SQL with `?` parameters, in SQLite's dialect; `tail`
    may add ORDER BY and LIMIT), as SQLAlchemy's types would read them (tests/test_store.py compares the two);
    SQLite only. Each row's values are converted by its columns' types, with no statement to build."""
    sql, names, readers = _select_plan(table, where, tail)
    out = []
    for raw in await (await _driver(conn)).execute_fetchall(sql, tuple(params)):
        values = list(raw)
        for i, read in readers:
            values[i] = read(values[i])
        out.append(dict(zip(names, values, strict=True)))
    return out
