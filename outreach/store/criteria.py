"""Criteria compiled to SQL over the records table (never evaluated as code).

Leaves are null-safe: a record without the field never matches `eq`, `gt`,
`contains`, ..., matches `ne` and `not_in`, and `not` of a leaf is its plain
opposite (two-valued logic, as a CRM user expects, not SQL's three-valued one).
Text matching with `contains` / `starts_with` ignores case; `eq` does not.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from outreach.rules import criteria as rules_criteria
from outreach.rules import timing
from outreach.rules.criteria import FieldType, Op
from outreach.store import tables

_COLUMNS = {
    "id", "type", "email", "owner", "stage", "stage_entered_at", "created_at", "timezone",
}  # fmt: skip


def json_value(value: Any) -> Any:
    """How a custom field's value is kept in the JSON column: datetimes as UTC ISO text (sortable)."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    return value


def _column(field: str, ftype: FieldType) -> sa.ColumnElement[Any]:
    if field in _COLUMNS:
        return tables.records.c[field]
    item: Any = tables.records.c.fields[field]
    value: sa.ColumnElement[Any]
    if ftype is FieldType.NUMBER:
        value = item.as_float()
    elif ftype is FieldType.BOOLEAN:
        value = item.as_boolean()
    else:
        value = item.as_string()
    return value


def _bind(field: str, ftype: FieldType, value: Any) -> Any:
    if ftype is FieldType.DATETIME and field not in _COLUMNS:
        return json_value(value)
    return value


_COMPARE = {Op.EQ: operator.eq, Op.GT: operator.gt, Op.GTE: operator.ge, Op.LT: operator.lt, Op.LTE: operator.le}


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Edges:
    """The bind parameters of a clause compiled once and run at many instants: each older_than / newer_than edge
    is a parameter whose value `values(now)` gives (the scheduler reuses its statements, which cost more to
    build than SQLite takes to run them)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._edges: list[tuple[str, str, FieldType, dt.timedelta]] = []

    def edge(self, field: str, ftype: FieldType, length: dt.timedelta) -> sa.BindParameter[Any]:
        name = f"{self.prefix}{len(self._edges)}"
        self._edges.append((name, field, ftype, length))
        return sa.bindparam(name)  # typed by the column it is compared with

    def values(self, now: dt.datetime) -> dict[str, Any]:
        return {name: _bind(field, ftype, now - length) for name, field, ftype, length in self._edges}


def compile_criteria(
    c: rules_criteria.Criteria, fields: Mapping[str, FieldType], now: dt.datetime | Edges
) -> sa.ColumnElement[bool]:
    """A WHERE clause for records matching `c`; `now` anchors older_than / newer_than (with `Edges`, they become
    bind parameters whose values it gives for any instant)."""
    if isinstance(c, rules_criteria.All):
        return sa.and_(sa.true(), *(compile_criteria(x, fields, now) for x in c.items))
    if isinstance(c, rules_criteria.AnyOf):
        return sa.or_(sa.false(), *(compile_criteria(x, fields, now) for x in c.items))
    if isinstance(c, rules_criteria.Not):
        return sa.not_(compile_criteria(c.item, fields, now))
    return _leaf(c, fields, now)


def _leaf(leaf: rules_criteria.Leaf, fields: Mapping[str, FieldType], now: dt.datetime | Edges) -> sa.ColumnElement[bool]:
    ftype = fields[leaf.field]
    col = _column(leaf.field, ftype)
    present = col.is_not(None)
    op, value = leaf.op, leaf.value
    if op is Op.EXISTS:
        return present if value else col.is_(None)
    if op in (Op.OLDER_THAN, Op.NEWER_THAN):
        assert isinstance(value, timing.Duration)
        length = value.as_timedelta()
        edge = now.edge(leaf.field, ftype, length) if isinstance(now, Edges) else _bind(leaf.field, ftype, now - length)
        return sa.and_(present, col < edge if op is Op.OLDER_THAN else col >= edge)
    if op is Op.NE:
        return sa.or_(col.is_(None), col != _bind(leaf.field, ftype, value))
    if op is Op.NOT_IN:
        return sa.or_(col.is_(None), col.not_in([_bind(leaf.field, ftype, v) for v in value]))
    if op is Op.IN:
        return sa.and_(present, col.in_([_bind(leaf.field, ftype, v) for v in value]))
    if op is Op.CONTAINS:
        return sa.and_(present, col.ilike(f"%{_escape_like(value)}%", escape="\\"))
    if op is Op.STARTS_WITH:
        return sa.and_(present, col.ilike(f"{_escape_like(value)}%", escape="\\"))
    return sa.and_(present, _COMPARE[op](col, _bind(leaf.field, ftype, value)))
