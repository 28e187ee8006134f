"""A fast yes/no check of a document against one of our schemas.

jsonschema explains failures well but costs about half a millisecond per
document, which is most of `outreach validate` on a large rule set. Almost
every document is valid, so each schema is compiled once into nested closures
that only answer "valid?"; jsonschema then runs only on the documents that
fail, to say why. The compiler knows exactly the keywords our schemas use and
refuses any other, and tests check that both agree on every fixture.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[Any], bool]

_IGNORED = frozenset(
    {"description", "title", "format", "$schema", "$id", "$comment", "patternErrorMessage", "$defs", "definitions"}
)


def _is_type(name: str) -> Check:
    if name == "string":
        return lambda v: isinstance(v, str)
    if name == "integer":
        return lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
    if name == "number":
        return lambda v: isinstance(v, int | float) and not isinstance(v, bool)
    if name == "boolean":
        return lambda v: isinstance(v, bool)
    if name == "object":
        return lambda v: isinstance(v, dict)
    if name == "array":
        return lambda v: isinstance(v, list)
    if name == "null":
        return lambda v: v is None
    raise ValueError(f"unsupported type {name!r}")


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


class _Compiler:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.defs: Mapping[str, Any] = root.get("$defs", {})
        self.compiled: dict[str, Check] = {}

    def ref(self, ref: str) -> Check:
        name = ref.removeprefix("#/$defs/")
        if name not in self.compiled:
            slot: list[Check] = []
            self.compiled[name] = lambda v: slot[0](v)  # allows recursive definitions (criteria)
            slot.append(self.compile(self.defs[name]))
        return self.compiled[name]

    def compile(self, s: Mapping[str, Any]) -> Check:
        checks: list[Check] = []
        unknown = set(s) - _IGNORED - _HANDLED
        if unknown:
            raise ValueError(f"the fast schema check does not support {sorted(unknown)}")
        if "$ref" in s:
            checks.append(self.ref(s["$ref"]))
        if "type" in s:
            types = s["type"] if isinstance(s["type"], list) else [s["type"]]
            tchecks = [_is_type(t) for t in types]
            checks.append(lambda v: any(c(v) for c in tchecks))
        if "enum" in s:
            options = list(s["enum"])
            checks.append(lambda v: any(_json_equal(v, o) for o in options))
        if "const" in s:
            const = s["const"]
            checks.append(lambda v: _json_equal(v, const))
        if "pattern" in s:
            rx = re.compile(s["pattern"])
            checks.append(lambda v: not isinstance(v, str) or rx.search(v) is not None)
        if "minLength" in s:
            n = s["minLength"]
            checks.append(lambda v: not isinstance(v, str) or len(v) >= n)
        for key, op in (("minimum", "ge"), ("maximum", "le"), ("exclusiveMinimum", "gt"), ("exclusiveMaximum", "lt")):
            if key in s:
                checks.append(_bound(op, s[key]))
        self._object(s, checks)
        self._array(s, checks)
        if "oneOf" in s:
            subs = [self.compile(x) for x in s["oneOf"]]
            checks.append(lambda v: sum(1 for c in subs if c(v)) == 1)
        if "anyOf" in s:
            subs_any = [self.compile(x) for x in s["anyOf"]]
            checks.append(lambda v: any(c(v) for c in subs_any))
        if "if" in s:
            cond = self.compile(s["if"])
            then = self.compile(s["then"]) if "then" in s else _always
            other = self.compile(s["else"]) if "else" in s else _always
            checks.append(lambda v: then(v) if cond(v) else other(v))
        if not checks:
            return _always
        if len(checks) == 1:
            return checks[0]
        return lambda v: all(c(v) for c in checks)

    def _object(self, s: Mapping[str, Any], checks: list[Check]) -> None:
        props = {k: self.compile(x) for k, x in s.get("properties", {}).items()}
        required = list(s.get("required", ()))
        additional = s.get("additionalProperties", True)
        extra: Check | None = None
        if additional is False:
            extra = _never
        elif isinstance(additional, dict):
            extra = self.compile(additional)
        names = self.compile(s["propertyNames"]) if "propertyNames" in s else None
        min_p, max_p = s.get("minProperties"), s.get("maxProperties")
        if not (props or required or extra or names or min_p is not None or max_p is not None):
            return

        def check(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            if min_p is not None and len(v) < min_p:
                return False
            if max_p is not None and len(v) > max_p:
                return False
            for r in required:
                if r not in v:
                    return False
            for k, x in v.items():
                c = props.get(k)
                if c is not None:
                    if not c(x):
                        return False
                elif extra is not None and not extra(x):
                    return False
                if names is not None and not names(k):
                    return False
            return True

        checks.append(check)

    def _array(self, s: Mapping[str, Any], checks: list[Check]) -> None:
        items = self.compile(s["items"]) if "items" in s else None
        min_i, max_i, unique = s.get("minItems"), s.get("maxItems"), s.get("uniqueItems", False)
        if items is None and min_i is None and max_i is None and not unique:
            return

        def check(v: Any) -> bool:
            if not isinstance(v, list):
                return True
            if min_i is not None and len(v) < min_i:
                return False
            if max_i is not None and len(v) > max_i:
                return False
            if unique and len({json.dumps(x, sort_keys=True) for x in v}) != len(v):
                return False
            return items is None or all(items(x) for x in v)

        checks.append(check)


_HANDLED = frozenset(
    {
        "$ref", "type", "enum", "const", "pattern", "minLength", "minimum", "maximum", "exclusiveMinimum",
        "exclusiveMaximum", "properties", "required", "additionalProperties", "propertyNames", "minProperties",
        "maxProperties", "items", "minItems", "maxItems", "uniqueItems", "oneOf", "anyOf", "if", "then", "else",
    }
)  # fmt: skip


def _always(_v: Any) -> bool:
    return True


def _never(_v: Any) -> bool:
    return False


def _bound(op: str, limit: float) -> Check:
    def check(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return True
        return {"ge": v >= limit, "le": v <= limit, "gt": v > limit, "lt": v < limit}[op]

    return check


def compile_schema(schema: Mapping[str, Any]) -> Check:
    """A function that tells whether a value is valid against `schema` (2020-12 form)."""
    return _Compiler(schema).compile(schema)
