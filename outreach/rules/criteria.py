"""Criteria: the `all` / `any` / `not` trees that pick records (views, exclusions, auto-enrollment).

They are parsed into a typed tree here and compiled to SQL by the store; they
are never evaluated as code.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from outreach.rules import diagnostics, timing


class FieldType(enum.StrEnum):
    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATETIME = "datetime"


# Fields every record has, whatever Settings declares.
BUILTIN_FIELDS: Mapping[str, FieldType] = {
    "id": FieldType.STRING,
    "type": FieldType.STRING,
    "email": FieldType.STRING,
    "owner": FieldType.STRING,
    "stage": FieldType.STRING,
    "stage_entered_at": FieldType.DATETIME,
    "created_at": FieldType.DATETIME,
    "timezone": FieldType.STRING,
}


class Op(enum.StrEnum):
    EQ = "eq"
    NE = "ne"
    IN = "in"
    NOT_IN = "not_in"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    CONTAINS = "contains"
    STARTS_WITH = "starts_with"
    EXISTS = "exists"
    OLDER_THAN = "older_than"
    NEWER_THAN = "newer_than"


OPS_BY_TYPE: Mapping[FieldType, frozenset[Op]] = {
    FieldType.STRING: frozenset({Op.EQ, Op.NE, Op.IN, Op.NOT_IN, Op.CONTAINS, Op.STARTS_WITH, Op.EXISTS}),
    FieldType.NUMBER: frozenset({Op.EQ, Op.NE, Op.IN, Op.NOT_IN, Op.GT, Op.GTE, Op.LT, Op.LTE, Op.EXISTS}),
    FieldType.BOOLEAN: frozenset({Op.EQ, Op.NE, Op.EXISTS}),
    FieldType.DATETIME: frozenset(
        {Op.EQ, Op.NE, Op.GT, Op.GTE, Op.LT, Op.LTE, Op.EXISTS, Op.OLDER_THAN, Op.NEWER_THAN}
    ),
}


@dataclasses.dataclass(frozen=True)
class Leaf:
    field: str
    op: Op
    value: Any  # str | float | bool | datetime | Duration | tuple of those


@dataclasses.dataclass(frozen=True)
class All:
    items: tuple[Criteria, ...]


@dataclasses.dataclass(frozen=True)
class AnyOf:
    items: tuple[Criteria, ...]


@dataclasses.dataclass(frozen=True)
class Not:
    item: Criteria


Criteria = Leaf | All | AnyOf | Not

Path = tuple[str | int, ...]


class CriteriaError(Exception):
    def __init__(self, path: Path, code: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.code = code
        self.message = message


def coerce_value(ftype: FieldType, value: object) -> object:
    """A rule's literal as a value of the field's type; raises ValueError when it cannot be one."""
    if ftype is FieldType.STRING:
        if isinstance(value, str):
            return value
        raise ValueError(f"expected text, got {_describe(value)}")
    if ftype is FieldType.NUMBER:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        raise ValueError(f"expected a number, got {_describe(value)}")
    if ftype is FieldType.BOOLEAN:
        if isinstance(value, bool):
            return value
        raise ValueError(f"expected true or false, got {_describe(value)}")
    return timing.parse_instant(value)


def _describe(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, int | float):
        return f"the number {value}"
    return f"a {type(value).__name__}"


def parse(data: Any, fields: Mapping[str, FieldType], path: Path = ()) -> Criteria:
    """Parse a schema-valid criteria tree and check it against the known fields.

    Raises CriteriaError at the first problem, with its path.
    """
    if "all" in data:
        return All(tuple(parse(x, fields, (*path, "all", i)) for i, x in enumerate(data["all"])))
    if "any" in data:
        return AnyOf(tuple(parse(x, fields, (*path, "any", i)) for i, x in enumerate(data["any"])))
    if "not" in data:
        return Not(parse(data["not"], fields, (*path, "not")))
    field = data["field"]
    ops = [k for k in data if k != "field"]
    op = Op(ops[0])
    if field not in fields:
        hint = diagnostics.did_you_mean(field, fields)
        raise CriteriaError(
            (*path, "field"), "ref-field", f"unknown field {field!r}{hint}: declare it in Settings.record_fields"
        )
    ftype = fields[field]
    vpath = (*path, op.value)
    if op not in OPS_BY_TYPE[ftype]:
        allowed = ", ".join(sorted(o.value for o in OPS_BY_TYPE[ftype]))
        raise CriteriaError(
            vpath, "criteria-operator", f"`{op}` does not fit the {ftype} field {field!r}; use one of {allowed}"
        )
    raw = data[op.value]
    try:
        value = _value(op, ftype, raw)
    except ValueError as exc:
        raise CriteriaError(vpath, "criteria-value", f"{field} {op}: {exc}") from None
    return Leaf(field, op, value)


def _value(op: Op, ftype: FieldType, raw: object) -> object:
    if op is Op.EXISTS:
        if not isinstance(raw, bool):
            raise ValueError("expected true or false")
        return raw
    if op in (Op.OLDER_THAN, Op.NEWER_THAN):
        d = timing.parse_duration(raw)
        if d.is_business:
            raise ValueError("criteria take plain durations (`30 days`), not business days")
        return d
    if op in (Op.IN, Op.NOT_IN):
        if not isinstance(raw, list) or not raw:
            raise ValueError("expected a non-empty list")
        return tuple(coerce_value(ftype, x) for x in raw)
    return coerce_value(ftype, raw)


def fields_used(c: Criteria) -> set[str]:
    if isinstance(c, Leaf):
        return {c.field}
    if isinstance(c, Not):
        return fields_used(c.item)
    return set().union(*(fields_used(x) for x in c.items)) if c.items else set()
