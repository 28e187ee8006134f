"""Email templates: the Jinja2 sandbox they render in, and the merge names they may use."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping

import jinja2
import jinja2.meta
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
    env = environment()
    try:
        ast = env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        return [TemplateProblem(exc.lineno or 1, "template-syntax", f"template syntax error: {exc.message}")]
    problems: list[TemplateProblem] = []
    for name in sorted(jinja2.meta.find_undeclared_variables(ast)):
        if name not in TOP_LEVEL:
            line = next((n.lineno for n in ast.find_all(jinja2.nodes.Name) if n.name == name), 1)
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
    for obj, attr, line in _attribute_uses(ast):
        if obj in allowed and attr not in allowed[obj]:
            hint = (
                "declare it in Settings.record_fields"
                if obj == "record"
                else "known: " + ", ".join(sorted(allowed[obj]))
            )
            problems.append(TemplateProblem(line, "merge-field-unknown", f"unknown merge field {obj}.{attr}: {hint}"))
    for node in ast.find_all(jinja2.nodes.Filter):
        if node.name not in env.filters:
            problems.append(TemplateProblem(node.lineno, "template-syntax", f"unknown filter {node.name!r}"))
    return problems


def _attribute_uses(ast: jinja2.nodes.Template) -> Iterator[tuple[str, str, int]]:
    """(object, attribute, line) for `record.x` and `record['x']` uses of the merge objects."""
    for node in ast.find_all((jinja2.nodes.Getattr, jinja2.nodes.Getitem)):
        assert isinstance(node, jinja2.nodes.Getattr | jinja2.nodes.Getitem)
        base = node.node
        if not isinstance(base, jinja2.nodes.Name) or base.ctx != "load":
            continue
        if isinstance(node, jinja2.nodes.Getattr):
            yield base.name, node.attr, node.lineno
        elif isinstance(node.arg, jinja2.nodes.Const) and isinstance(node.arg.value, str):
            yield base.name, node.arg.value, node.lineno


def merge_fields(source: str) -> set[str]:
    """The dotted merge names a template uses (`record.first_name`, `unsubscribe_url`)."""
    ast = environment().parse(source)
    used = {f"{obj}.{attr}" for obj, attr, _ in _attribute_uses(ast) if obj in TOP_LEVEL}
    used |= {n for n in jinja2.meta.find_undeclared_variables(ast) if n == "unsubscribe_url"}
    return used
