"""Email templates: the Jinja2 sandbox they render in, and the merge names they may use."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

import jinja2
import jinja2.nodes
import jinja2.sandbox

# What each merge object offers besides record fields (which come from Settings).
PERSON_FIELDS = frozenset({"id", "name", "email", "title", "phone", "signature"})
ORGANIZATION_FIELDS = frozenset({"name", "email", "address", "website", "phone"})
TOP_LEVEL = ("record", "sender", "owner", "organization", "unsubscribe_url")


@functools.cache
def environment() -> jinja2.sandbox.SandboxedEnvironment:
    """The sandbox every template renders in: a missing value is an error, never empty text."""
    return jinja2.sandbox.SandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
    )


@dataclasses.dataclass(frozen=True)
class TemplateProblem:
    line: int  # 1-based line inside the template text
    code: str  # template-syntax | merge-field-unknown
    message: str


def check(source: str, record_fields: frozenset[str]) -> list[TemplateProblem]:
    """Syntax errors and unknown merge names or filters in one template text."""
    if "{" not in source:
        return []  # no Jinja syntax at all
    env = environment()
    try:
        ast = env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        return [TemplateProblem(exc.lineno or 1, "template-syntax", f"template syntax error: {exc.message}")]
    problems: list[TemplateProblem] = []
    names, attributes, filters = _uses(ast)
    for name, line in sorted(names.items()):
        if name not in TOP_LEVEL:
            problems.append(
                TemplateProblem(
                    line,
                    "merge-field-unknown",
                    f"unknown merge name {name!r}: use record.*, sender.*, owner.*, organization.* or unsubscribe_url",
                )
            )
    allowed: Mapping[str, frozenset[str]] = {
        "record": record_fields,
        "sender": PERSON_FIELDS,
        "owner": PERSON_FIELDS,
        "organization": ORGANIZATION_FIELDS,
    }
    for obj, attr, line in attributes:
        if obj in allowed and attr not in allowed[obj]:
            hint = (
                "declare it in Settings.record_fields"
                if obj == "record"
                else "known: " + ", ".join(sorted(allowed[obj]))
            )
            problems.append(TemplateProblem(line, "merge-field-unknown", f"unknown merge field {obj}.{attr}: {hint}"))
    for name, line in filters:
        if name not in env.filters:
            problems.append(TemplateProblem(line, "template-syntax", f"unknown filter {name!r}"))
    return problems


def _uses(ast: jinja2.nodes.Template) -> tuple[dict[str, int], list[tuple[str, str, int]], list[tuple[str, int]]]:
    """One walk over the template: free names, `obj.attr` / `obj['attr']` uses, and filters.

    Free names are those read but never set (loop variables, {% set %}), with
    their first line; a cheaper stand-in for jinja2.meta.find_undeclared_variables,
    which runs the code generator. Scoping is simplified: a name set anywhere counts as set.
    """
    loads: dict[str, int] = {}
    stores = set(environment().globals) | {"loop"}
    attributes: list[tuple[str, str, int]] = []
    filters: list[tuple[str, int]] = []
    todo: list[jinja2.nodes.Node] = [ast]
    while todo:
        node = todo.pop()
        if isinstance(node, jinja2.nodes.Name):
            if node.ctx == "load":
                if node.name not in loads or node.lineno < loads[node.name]:
                    loads[node.name] = node.lineno
            else:
                stores.add(node.name)
        elif isinstance(node, jinja2.nodes.Getattr | jinja2.nodes.Getitem):
            base = node.node
            if isinstance(base, jinja2.nodes.Name) and base.ctx == "load":
                if isinstance(node, jinja2.nodes.Getattr):
                    attributes.append((base.name, node.attr, node.lineno))
                elif isinstance(node.arg, jinja2.nodes.Const) and isinstance(node.arg.value, str):
                    attributes.append((base.name, node.arg.value, node.lineno))
        elif isinstance(node, jinja2.nodes.Filter):
            filters.append((node.name, node.lineno))
        todo.extend(node.iter_child_nodes())
    attributes.sort(key=lambda a: a[2])
    return {k: v for k, v in loads.items() if k not in stores}, attributes, filters


def merge_fields(source: str) -> set[str]:
    """The dotted merge names a template uses (`record.first_name`, `unsubscribe_url`)."""
    names, attributes, _ = _uses(environment().parse(source))
    used = {f"{obj}.{attr}" for obj, attr, _ in attributes if obj in TOP_LEVEL}
    return used | ({"unsubscribe_url"} & set(names))
