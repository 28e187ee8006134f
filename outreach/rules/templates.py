"""Email templates: the Jinja2 sandbox they render in, the merge names they may use, and the limits on what
their expressions may compute."""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

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
MERGE_OBJECTS = ("record", "sender", "owner", "organization", "recipient")

# What an expression in a template may compute, whatever the settings (limits.message_size bounds text besides):
MAX_ITEMS = jinja2.sandbox.MAX_RANGE  # items in a range() and in a list a template makes (100,000)
MAX_DIGITS = 4300  # digits of a number (Python prints no longer integers by default)
_MAX_BITS = math.ceil(MAX_DIGITS * math.log2(10))
# The smallest limits.message_size, and what validate computes constant texts up to: a longer one is noted with
# its size, and is an error when it is longer than the rule set's limit.
MIN_MESSAGE_SIZE = 10 * 1024


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
    excesses: tuple[Excess, ...] = ()  # expressions of written values that go past a limit


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
    folder = _Folder()
    todo: list[jinja2.nodes.Node] = [ast]
    while todo:
        node = todo.pop()
        if isinstance(node, jinja2.nodes.BinExpr | jinja2.nodes.Concat | jinja2.nodes.Call):
            folder.fold(node)
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
    attributes.sort(key=lambda a: a[2])
    return Analysis(
        None, names, tuple(attributes), tuple(filters), tuple(tests), tuple(includes), tuple(folder.excesses)
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


# --- limits ------------------------------------------------------------------------------------------------------


class LimitError(Exception):
    """An operation in a template would go past a limit; the text says what it would make."""

    def __init__(self, message: str, size: int = 0) -> None:
        super().__init__(message)
        self.size = size  # characters of text it would make: past limits.message_size; 0: past a fixed limit


_OPERATIONS: Mapping[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "**": operator.pow, "%": operator.mod,
    "/": operator.truediv, "//": operator.floordiv,
}  # fmt: skip
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.)", re.DOTALL)


def binop(op: str, left: Any, right: Any, max_size: int) -> Any:
    """`left op right`, refused before it is computed when the result would be past a limit: a number of more than
    MAX_DIGITS digits, a list of more than MAX_ITEMS items, a text of more than `max_size` characters."""
    check_binop(op, left, right, max_size)
    return _OPERATIONS[op](left, right)


def _int(value: Any) -> bool:
    return isinstance(value, int)


def _number_too_long() -> LimitError:
    return LimitError(f"the number would have more than {MAX_DIGITS} digits")


def check_binop(op: str, left: Any, right: Any, max_size: int) -> None:
    """Raise LimitError when `left op right` would be past a limit; cheap, and computes nothing large."""
    if op == "**":
        big = _int(left) and _int(right) and right > 1 and abs(left) > 1
        if big and (abs(left).bit_length() - 1) * right >= _MAX_BITS:
            raise _number_too_long()
    elif op == "*":
        if _int(left) and _int(right):
            if left.bit_length() + right.bit_length() > _MAX_BITS + 1:
                raise _number_too_long()
        elif _int(right) or _int(left):
            seq, times = (left, right) if _int(right) else (right, left)
            if isinstance(seq, str | list | tuple) and times > 0:
                _check_sized(seq, len(seq) * times, max_size)
    elif op in ("+", "-"):
        if _int(left) and _int(right):
            if max(left.bit_length(), right.bit_length()) >= _MAX_BITS:
                raise _number_too_long()
        elif op == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            _check_sized(left, len(left) + len(right), max_size)
    elif op == "%" and isinstance(left, str):
        check_percent(left, right, max_size)


def _check_sized(kind: Any, length: int, max_size: int) -> None:
    if isinstance(kind, str):
        if length > max_size:
            raise LimitError(f"the text would be {length} characters long", length)
    elif length > MAX_ITEMS:
        raise LimitError(f"the list would have {length} items (a template's lists have at most {MAX_ITEMS})")


def check_percent(template: str, args: Any, max_size: int) -> None:
    """`template % args` (and the `format` filter) within max_size characters: its widths and precisions count."""
    padding = 0
    for spec in _PERCENT_SPEC.finditer(template):
        width, precision, _conversion = spec.groups()
        if width == "*" or precision == "*":
            raise LimitError("% formatting may not take a width or precision from its arguments (`*`)")
        padding += int(width or 0) + int(precision or 0)
        if padding > max_size:
            raise LimitError(f"the text would be at least {padding} characters long", padding)
    size = len(template) + padding + printed_size(args, max_size)
    if size > max_size:
        raise LimitError(f"the text would be at least {size} characters long", size)


def printed_size(value: Any, limit: int) -> int:
    """About how many characters `value` prints as; counting stops once past `limit` (an alias of a list in
    itself, or a list of a long text repeated, prints as much as it holds)."""
    total = 0
    todo = [value]
    while todo and total <= limit:
        item = todo.pop()
        if isinstance(item, str | bytes):
            total += len(item) + 2
        elif isinstance(item, bool) or item is None:
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() * 3 // 10 + 2
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 + 2 * len(item)
            todo.extend(item)
        else:
            total += 24  # a float, a date, an object that prints its short name
    return total


def bounded_range(*args: int) -> range:
    """range() with at most MAX_ITEMS items."""
    numbers = range(*args)
    length = _range_length(numbers)
    if length > MAX_ITEMS:
        shown = ", ".join(str(a) for a in args)
        raise LimitError(f"range({shown}) would have {length} items (a template's ranges have at most {MAX_ITEMS})")
    return numbers


def _range_length(numbers: range) -> int:
    """len() of a range of any size (len() itself fails past sys.maxsize)."""
    start, stop, step = numbers.start, numbers.stop, numbers.step
    if step > 0:
        return max(0, (stop - start + step - 1) // step)
    return max(0, (start - stop - step - 1) // -step)


@dataclasses.dataclass(frozen=True)
class Excess:
    """An expression whose values are all written in the template, and that goes past a limit."""

    line: int
    needle: str  # text to look for in the rule file
    message: str  # what it would make
    size: int = 0  # characters of text: too many when more than limits.message_size; 0: past a fixed limit
    merge: tuple[str, str] | None = None  # a merge value repeated `size` times: a limit when that value is text


class _Unknown:
    """The value of an expression that depends on merge data: not computed here."""


_UNKNOWN = _Unknown()


@dataclasses.dataclass(frozen=True)
class _MergeValue:
    obj: str
    attr: str


class _Folder:
    """Computes what a template's expressions compute from values written in it, with the limits the render
    has, to find those that go past them before any mail is due."""

    OPERATORS: Mapping[type[jinja2.nodes.Node], str] = {
        jinja2.nodes.Add: "+", jinja2.nodes.Sub: "-", jinja2.nodes.Mul: "*", jinja2.nodes.Pow: "**",
        jinja2.nodes.Mod: "%", jinja2.nodes.Div: "/", jinja2.nodes.FloorDiv: "//",
    }  # fmt: skip

    def __init__(self) -> None:
        self.values: dict[int, Any] = {}
        self.excesses: list[Excess] = []

    def fold(self, node: jinja2.nodes.Node) -> Any:
        key = id(node)
        if key not in self.values:
            try:
                self.values[key] = self._fold(node)
            except LimitError as exc:
                self.excesses.append(Excess(node.lineno, _needle(node), str(exc), exc.size))
                self.values[key] = _UNKNOWN
            except Exception:  # what fails at render time for another reason (1 / 0): not a limit
                self.values[key] = _UNKNOWN
        return self.values[key]

    def _fold(self, node: jinja2.nodes.Node) -> Any:
        if isinstance(node, jinja2.nodes.Const):
            return node.value
        if isinstance(node, jinja2.nodes.List | jinja2.nodes.Tuple):
            items = [self.fold(item) for item in node.items]
            if any(item is _UNKNOWN for item in items):
                return _UNKNOWN
            return items if isinstance(node, jinja2.nodes.List) else tuple(items)
        if isinstance(node, jinja2.nodes.Neg | jinja2.nodes.Pos):
            value = self.fold(node.node)
            if isinstance(value, _Unknown | _MergeValue):
                return _UNKNOWN
            return -value if isinstance(node, jinja2.nodes.Neg) else +value
        if isinstance(node, jinja2.nodes.Getattr) and isinstance(node.node, jinja2.nodes.Name):
            return _MergeValue(node.node.name, node.attr) if node.node.name in MERGE_OBJECTS else _UNKNOWN
        if type(node) in self.OPERATORS:
            assert isinstance(node, jinja2.nodes.BinExpr)
            op = self.OPERATORS[type(node)]
            left, right = self.fold(node.left), self.fold(node.right)
            if op == "*" and _int(right) and isinstance(left, _MergeValue):
                left, right = right, left
            if op == "*" and _int(left) and isinstance(right, _MergeValue):
                if left > MIN_MESSAGE_SIZE:  # the value repeated: too long if it is text (of at least 1 character)
                    message = f"{right.obj}.{right.attr} * {left} repeats the value {left} times"
                    self.excesses.append(Excess(node.lineno, f"{right.obj}.{right.attr}", message, left,
                                                (right.obj, right.attr)))  # fmt: skip
                return _UNKNOWN
            if isinstance(left, _Unknown | _MergeValue) or isinstance(right, _Unknown | _MergeValue):
                return _UNKNOWN
            try:
                return binop(op, left, right, MIN_MESSAGE_SIZE)
            except LimitError as exc:
                shown = f"{left!r} {op} {right!r}"
                raise LimitError(f"{shown}: {exc}" if len(shown) <= 60 else str(exc), exc.size) from None
        if isinstance(node, jinja2.nodes.Concat):
            parts = [self.fold(part) for part in node.nodes]
            if any(isinstance(part, _Unknown | _MergeValue) for part in parts):
                return _UNKNOWN
            texts = [str(part) for part in parts]
            _check_sized("", sum(map(len, texts)), MIN_MESSAGE_SIZE)
            return "".join(texts)
        if (isinstance(node, jinja2.nodes.Call) and isinstance(node.node, jinja2.nodes.Name)
                and node.node.name == "range" and not node.kwargs and node.dyn_args is None):  # fmt: skip
            args = [self.fold(arg) for arg in node.args]
            if all(_int(arg) for arg in args):
                return bounded_range(*args)
        return _UNKNOWN


def _needle(node: jinja2.nodes.Node) -> str:
    if isinstance(node, jinja2.nodes.Call):
        return "range"
    if isinstance(node, jinja2.nodes.Concat):
        return "~"
    return _Folder.OPERATORS.get(type(node), "")


def excess_problems(
    analysis: Analysis, *, message_size: int, is_text: Callable[[str, str], bool]
) -> list[TemplateProblem]:
    """The expressions of a template that go past the render limits given the rule set's message size;
    `is_text(obj, attr)` says whether a merge value is text (a number may be multiplied)."""
    out = []
    for excess in analysis.excesses:
        if excess.merge is not None and not is_text(*excess.merge):
            continue
        if excess.size and excess.size <= message_size:
            continue
        message = excess.message
        if excess.size:
            message += f", more than a message may hold ({message_size} bytes, Settings limits.message_size)"
        out.append(TemplateProblem(excess.line, "template-limit", message, excess.needle))
    return out
