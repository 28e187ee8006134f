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
# What only reminder mail (a SalesProcess's follow_up) has: the reminded user, the overdue record's stage and
# times, and with `digest: true` the list of records (docs/reminders.md).
REMINDER_NAMES = ("recipient", "stage", "in_stage", "max", "overdue_since", "reminder", "records", "also_overdue")
TOP_LEVEL = ("record", "sender", "owner", "organization", "unsubscribe_url", *REMINDER_NAMES)
_BLOCK_TAGS = frozenset({"if", "for", "macro", "call", "filter", "with", "autoescape", "raw", "block"})


@functools.cache
def environment(html: bool = False) -> jinja2.sandbox.SandboxedEnvironment:
    """The sandbox templates render in: a missing value is an error, never empty text.

    The `html` part renders with autoescaping, so merge data such as a lead's
    company name cannot inject markup; subject and text render as they are.
    """
    return jinja2.sandbox.SandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=html, keep_trailing_newline=True
    )


@dataclasses.dataclass(frozen=True)
class TemplateProblem:
    line: int  # 1-based line inside the template text
    code: str  # template-syntax | merge-field-unknown
    message: str
    needle: str = ""  # text to look for in the rule file when lines do not map one to one


@dataclasses.dataclass(frozen=True)
class Analysis:
    """What one template text uses, found without knowing the rule set (so it can run anywhere)."""

    syntax: TemplateProblem | None = None
    names: tuple[tuple[str, int], ...] = ()  # free names and their first line
    attributes: tuple[tuple[str, str, int], ...] = ()  # record.x / record['x'] uses
    filters: tuple[tuple[str, int], ...] = ()
    tests: tuple[tuple[str, int], ...] = ()
    loads: tuple[tuple[str, int], ...] = ()  # include / import / extends


def analyze(source: str) -> Analysis:
    """Parse a template text and list what it uses; a syntax error stops there."""
    if "{" not in source:
        return Analysis()  # no Jinja syntax at all
    env = environment()
    try:
        ast = env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        line = exc.lineno or 1
        if exc.message and "end of template" in exc.message:
            line = _innermost_open_block(source) or line
        return Analysis(syntax=TemplateProblem(line, "template-syntax", f"template syntax error: {exc.message}"))
    return _walk(ast)


def _innermost_open_block(source: str) -> int | None:
    """The line of the innermost block tag that is never closed ({% if %} without {% endif %})."""
    stack: list[tuple[str, int]] = []
    previous = ""
    try:
        for line, kind, value in environment().lex(source):
            if previous == "block_begin" and kind == "name":
                if value in _BLOCK_TAGS:
                    stack.append((value, line))
                elif value.startswith("end") and stack:
                    stack.pop()
            previous = kind if kind != "whitespace" else previous
    except jinja2.TemplateSyntaxError:
        pass
    return stack[-1][1] if stack else None


def _walk(ast: jinja2.nodes.Template) -> Analysis:
    """One walk over the template.

    Free names are those read but never set (loop variables, {% set %}); a
    cheaper stand-in for jinja2.meta.find_undeclared_variables, which runs the
    code generator. Scoping is simplified: a name set anywhere counts as set.
    """
    loads: dict[str, int] = {}
    stores = set(environment().globals) | {"loop"}
    attributes: list[tuple[str, str, int]] = []
    filters: list[tuple[str, int]] = []
    tests: list[tuple[str, int]] = []
    includes: list[tuple[str, int]] = []
    todo: list[jinja2.nodes.Node] = [ast]
    while todo:
        node = todo.pop()
        if isinstance(node, jinja2.nodes.Name):
            if node.ctx == "load":
                loads[node.name] = min(node.lineno, loads.get(node.name, node.lineno))
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
        elif isinstance(node, jinja2.nodes.Test):
            tests.append((node.name, node.lineno))
        elif isinstance(
            node, jinja2.nodes.Include | jinja2.nodes.Import | jinja2.nodes.FromImport | jinja2.nodes.Extends
        ):
            includes.append((type(node).__name__.lower(), node.lineno))
        todo.extend(node.iter_child_nodes())
    names = tuple(sorted((k, v) for k, v in loads.items() if k not in stores))
    return Analysis(
        None, names, tuple(sorted(attributes, key=lambda a: a[2])), tuple(filters), tuple(tests), tuple(includes)
    )


def problems(analysis: Analysis, record_fields: frozenset[str] | None) -> list[TemplateProblem]:
    """What is wrong with a template given the rule set's record fields (None: not known, not checked)."""
    if analysis.syntax is not None:
        return [analysis.syntax]
    env = environment()
    out: list[TemplateProblem] = []
    for name, line in analysis.names:
        if name not in TOP_LEVEL:
            out.append(TemplateProblem(
                line, "merge-field-unknown",
                f"unknown merge name {name!r}: use record.*, sender.*, owner.*, organization.* or unsubscribe_url "
                "(reminder mail also has recipient.*, stage, in_stage, max, overdue_since, reminder, records and "
                "also_overdue)",
                name,
            ))  # fmt: skip
    allowed: Mapping[str, frozenset[str] | None] = {
        "record": record_fields, "sender": PERSON_FIELDS, "owner": PERSON_FIELDS, "organization": ORGANIZATION_FIELDS,
        "recipient": PERSON_FIELDS,
    }  # fmt: skip
    for obj, attr, line in analysis.attributes:
        known = allowed.get(obj)
        if obj in allowed and known is not None and attr not in known:
            hint = "declare it in Settings.record_fields" if obj == "record" else "known: " + ", ".join(sorted(known))
            out.append(
                TemplateProblem(
                    line, "merge-field-unknown", f"unknown merge field {obj}.{attr}: {hint}", f"{obj}.{attr}"
                )
            )
    for name, line in analysis.filters:
        if name not in env.filters:
            out.append(TemplateProblem(line, "template-syntax", f"unknown filter {name!r}", name))
    for name, line in analysis.tests:
        if name not in env.tests:
            out.append(TemplateProblem(line, "template-syntax", f"unknown test {name!r}", name))
    for what, line in analysis.loads:
        out.append(TemplateProblem(
            line, "template-syntax",
            f"a template cannot {what} another template: each template stands alone (copy the text in)", what,
        ))  # fmt: skip
    return sorted(out, key=lambda p: p.line)


def check(source: str, record_fields: frozenset[str] | None) -> list[TemplateProblem]:
    """Syntax errors, unknown merge names, filters and tests in one template text."""
    return problems(analyze(source), record_fields)
