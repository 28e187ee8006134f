"""JSON Schema checks of one document, with errors a rule author can act on."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from outreach.rules import diagnostics, schema_compile, schemas, timing
from outreach.rules.diagnostics import Code, Diagnostic
from outreach.rules.loader import Document

SECRET_KEYS = frozenset({"password", "secret", "token", "api_key", "apikey", "passwd", "private_key"})
_COMMENT_CODES = {
    "duration": Code.DURATION_INVALID,
    "window": Code.WINDOW_INVALID,
    "datetime": Code.DATETIME_INVALID,
}
_PARSERS: dict[str, Callable[[Any], object]] = {
    "duration": timing.parse_duration,
    "window": timing.parse_window,
    "datetime": timing.parse_instant,
}
_OPERATOR_ALIASES = {
    "equals": "eq", "equal": "eq", "is": "eq", "not_equals": "ne", "not_equal": "ne", "neq": "ne",
    "greater_than": "gt", "less_than": "lt", "ge": "gte", "le": "lte", "includes": "contains", "has": "contains",
    "prefix": "starts_with", "startswith": "starts_with", "one_of": "in", "nin": "not_in", "before": "lt", "after": "gt",
}  # fmt: skip
_TYPE_NAMES = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "nothing",
}


@functools.cache
def validator(kind: str) -> Any:
    """jsonschema's validator, imported only when a document fails the fast check."""
    import jsonschema

    return jsonschema.Draft202012Validator(schemas.schema(kind))


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value!r}"
    return f"the number {value}"


@functools.cache
def fast_check(kind: str) -> schema_compile.Check:
    return schema_compile.compile_schema(schemas.schema(kind))


def check(doc: Document, kind: str) -> list[Diagnostic]:
    """Every schema problem of the document, at most one per place."""
    if fast_check(kind)(doc.data):
        return []
    out: list[Diagnostic] = []
    seen: set[tuple[str | int, ...]] = set()
    for error in validator(kind).iter_errors(doc.data):
        for d in _explain(doc, error):
            key = (d.path, d.line, d.column)
            if key not in seen:
                seen.add(key)
                out.append(d)
    return _without_echoes(out)


def _without_echoes(diags: list[Diagnostic]) -> list[Diagnostic]:
    """Drop errors that only repeat another one in other words.

    `stpes:` is an unknown key *and* leaves `steps` missing; a follow-up date
    written under `on:` is misplaced *and* leaves the follow-up without `after`/`at`.
    The first error of each pair says what to do.
    """
    suggested = {
        (d.path.rpartition(".")[0] if "." in d.path else "", m.group(1))
        for d in diags
        if d.code is Code.SCHEMA_UNKNOWN_KEY and (m := re.search(r"did you mean '([^']+)'", d.message))
    }
    misplaced_dates = {d.path.removesuffix(".on") for d in diags if d.code is Code.FOLLOWUP_WHEN}
    out = []
    for d in diags:
        m = re.search(r"missing required key '([^']+)'", d.message) if d.code is Code.SCHEMA_REQUIRED else None
        if m and (d.path, m.group(1)) in suggested:
            continue
        if d.code is Code.SCHEMA_ONE_OF and d.path in misplaced_dates:
            continue
        out.append(d)
    return out


def _explain(doc: Document, error: Any) -> list[Diagnostic]:
    path = tuple(error.absolute_path)
    v = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}
    inst = error.instance
    last = path[-1] if path else None

    if v == "additionalProperties" and isinstance(inst, dict):
        props = schema.get("properties", {})
        out = []
        for key in inst:
            if key in props:
                continue
            if key in SECRET_KEYS or (isinstance(key, str) and key.removesuffix("s") in SECRET_KEYS):
                out.append(
                    doc.diag(
                        (*path, key),
                        Code.SECRET_INLINE,
                        f"secrets never go in rule files: use {key}_env (an environment variable) "
                        f"or {key}_file (a file, e.g. a systemd credential) instead of {key}",
                        at_key=True,
                    )
                )
            elif "field" in props and "eq" in props:
                ops = [k for k in props if k != "field"]
                alias = _OPERATOR_ALIASES.get(key)
                hint = f"; did you mean {alias!r}?" if alias else diagnostics.did_you_mean(key, ops)
                out.append(
                    doc.diag(
                        (*path, key),
                        Code.CRITERIA_OPERATOR,
                        f"unknown operator {key!r}{hint} (operators: {', '.join(ops)})",
                        at_key=True,
                    )
                )
            else:
                out.append(
                    doc.diag(
                        (*path, key),
                        Code.SCHEMA_UNKNOWN_KEY,
                        f"unknown key {key!r}{diagnostics.did_you_mean(key, props)}",
                        at_key=True,
                    )
                )
        return out
    if v == "required" and isinstance(inst, dict):
        return [
            doc.diag(path, Code.SCHEMA_REQUIRED, f"missing required key {key!r}")
            for key in error.validator_value
            if key not in inst
        ]
    if v == "type":
        if last == "on" and len(path) >= 3 and path[-3] == "follow_ups" and isinstance(inst, str):
            return [
                doc.diag(
                    path,
                    Code.FOLLOWUP_WHEN,
                    "a follow-up's date goes in `at:`; `on:` holds its trigger actions (opened / clicked / bounced)",
                )
            ]
        want = error.validator_value
        wants = " or ".join(_TYPE_NAMES.get(str(t), str(t)) for t in (want if isinstance(want, list) else [want]))
        return [doc.diag(path, Code.SCHEMA_TYPE, f"expected {wants}, got {_describe(inst)}")]
    if v == "enum":
        choices = [str(c) for c in error.validator_value]
        hint = diagnostics.did_you_mean(inst, choices) if isinstance(inst, str) else ""
        return [doc.diag(path, Code.SCHEMA_ENUM, f"{_describe(inst)} is not one of: {', '.join(choices)}{hint}")]
    if v == "const":
        return [doc.diag(path, Code.SCHEMA_ENUM, f"expected {error.validator_value!r}, got {_describe(inst)}")]
    if v == "pattern":
        comment = schema.get("$comment", "")
        code = _COMMENT_CODES.get(comment, Code.SCHEMA_FORMAT)
        parser = _PARSERS.get(comment)
        if parser is not None:
            try:
                parser(inst)
            except ValueError as exc:
                return [doc.diag(path, code, str(exc))]
        hint = schema.get("patternErrorMessage", f"it must match {error.validator_value}")
        if error.schema_path and "propertyNames" in error.schema_path:
            return [doc.diag(path, Code.SCHEMA_FORMAT, f"the key {inst!r} is not a valid name: {hint}")]
        return [doc.diag(path, code, f"{inst!r} is not valid here: {hint}")]
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        words = {
            "minimum": "at least",
            "maximum": "at most",
            "exclusiveMinimum": "more than",
            "exclusiveMaximum": "less than",
        }[v]
        return [
            doc.diag(path, Code.SCHEMA_RANGE, f"{inst} is out of range: it must be {words} {error.validator_value}")
        ]
    if v == "minItems":
        if last == "steps":
            return [doc.diag(path, Code.SEQUENCE_NO_STEPS, "a sequence needs at least one step")]
        return [doc.diag(path, Code.SCHEMA_LENGTH, f"needs at least {error.validator_value} item(s)")]
    if v == "maxItems":
        path = (*path, error.validator_value)  # the first item over the limit
        if last == "follow_ups":
            return [
                doc.diag(
                    path,
                    Code.FOLLOWUP_LIMIT,
                    f"a campaign has at most {error.validator_value} follow-ups; this one has {len(inst)}",
                )
            ]
        return [doc.diag(path, Code.SCHEMA_LENGTH, f"holds at most {error.validator_value} item(s)")]
    if v == "minLength":
        return [doc.diag(path, Code.SCHEMA_LENGTH, "must not be empty")]
    if v == "uniqueItems":
        return [doc.diag(path, Code.SCHEMA_OTHER, "the items must be unique")]
    if v in ("minProperties", "maxProperties") and isinstance(inst, dict):
        props = schema.get("properties", {})
        if "field" in props and "eq" in props:
            return [
                doc.diag(
                    path,
                    Code.CRITERIA_OPERATOR,
                    "a condition has `field` and exactly one operator "
                    f"(found: {', '.join(k for k in inst if k != 'field') or 'none'})",
                )
            ]
        if "at" in props and "enroll" in props:
            kinds = [k for k in inst if k != "at"]
            return [
                doc.diag(
                    path,
                    Code.RULETEST_EVENT,
                    "an event has `at` and exactly one of "
                    f"{', '.join(schemas.EVENT_KINDS)} (found: {', '.join(kinds) or 'none'})",
                )
            ]
        if last == "expect":
            return [
                doc.diag(
                    path, Code.RULETEST_EMPTY, "a RuleTest must expect something: sent, tasks, updates, enrollments or campaigns"
                )
            ]
        return [doc.diag(path, Code.SCHEMA_OTHER, "needs more keys" if v == "minProperties" else "has too many keys")]
    if v in ("oneOf", "anyOf"):
        options = error.validator_value
        if all(set(o) == {"required"} and len(o["required"]) == 1 for o in options) and isinstance(inst, dict):
            names = [o["required"][0] for o in options]
            present = [str(n) for n in names if n in inst]
            listed = ", ".join(f"`{n}`" for n in names)
            code = Code.STEP_KIND if len(path) == 2 and path[0] == "steps" else Code.SCHEMA_ONE_OF
            if path == ("to",):
                code = Code.CAMPAIGN_RECIPIENTS
            if not present:
                return [doc.diag(path, code, f"needs one of {listed}")]
            return [doc.diag(path, code, f"give only one of {listed} (found {', '.join(present)})")]
        import jsonschema.exceptions

        best = jsonschema.exceptions.best_match(error.context) if error.context else None
        if best is not None:
            return _explain(doc, best)
    return [doc.diag(path, Code.SCHEMA_OTHER, error.message)]
