"""Rendering a template for one recipient: merge data in the sandbox, nothing missing, no header injection,
within the render limits.

A template that names a field the record lacks does not render an empty
string: it fails with "missing merge field record.first_name", and the
enrollment is blocked with that reason (unless the template gives a default).

A message renders within Settings limits.render_time and limits.message_size: its output is counted as it is
made and cut at the size; arithmetic, repetition, ranges, loops and the filters and methods that make long text
are checked before they run (rules/templates.py has the limits). A template that goes past one fails with a
RenderError that says which, and the enrollment is blocked with it. The time is checked in each of those steps,
so a render ends soon after its time is up: the daemon stays responsive, and stops when told to.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import functools
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NoReturn

import jinja2
import jinja2.nodes
import jinja2.runtime
import jinja2.sandbox
import jinja2.utils
import jinja2.visitor

from outreach.rules import model, templates, timing

_HEADER_BREAKERS = ("\r", "\n", "\0")


class RenderError(Exception):
    """Why a template cannot be sent to this recipient; the text becomes the enrollment's block reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Merge(dict[str, Any]):
    """A merge object (record, sender, owner, organization) that knows its own name for error messages.

    Read-only, so that one template cannot change what the next one sees (the sandbox lets a template call a
    dict's methods); that also lets the merges of users and the organization be made once and shared.
    """

    def __init__(self, name: str, values: Mapping[str, Any]) -> None:
        super().__init__((k, v) for k, v in values.items() if v is not None)  # an empty field is a missing one
        self.merge_name = name

    def _read_only(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RenderError(f"a template tried to change {self.merge_name}; merge values are read-only")

    __setitem__ = __delitem__ = update = pop = popitem = setdefault = clear = __ior__ = _read_only


class _Missing(jinja2.StrictUndefined):
    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> NoReturn:
        owner = self._undefined_obj
        if isinstance(owner, _Merge):
            raise RenderError(f"missing merge field {owner.merge_name}.{self._undefined_name}")
        raise RenderError(f"missing merge field {self._undefined_name}")

    __str__ = __iter__ = __len__ = __eq__ = __ne__ = __hash__ = _fail_with_undefined_error

    def __bool__(self) -> bool:  # type: ignore[override]
        return False  # `{% if record.company %}` tests for the field; printing it is what needs it


@dataclasses.dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


def person(user: model.User | None) -> dict[str, Any] | None:
    """The merge values of a user (sender.*, owner.*)."""
    if user is None:
        return None
    return {"id": user.id, "name": user.name, "email": user.email, "title": user.title, "phone": user.phone,
            "signature": user.signature}  # fmt: skip


def context(
    record: Mapping[str, Any],
    *,
    sender: model.User | None,
    owner: model.User | None,
    organization: model.Organization | None,
    unsubscribe_url: str | None,
) -> dict[str, Any]:
    """The merge names a template sees. Absent parts make their fields missing, not empty."""
    out: dict[str, Any] = {
        "record": _Merge("record", record),
        "sender": _user_merge("sender", sender),
        "owner": _user_merge("owner", owner),
        "organization": _organization_merge(organization),
    }
    if unsubscribe_url is not None:
        out["unsubscribe_url"] = unsubscribe_url
    return out


def reminder_item(
    record: Mapping[str, Any],
    *,
    owner: model.User | None,
    stage: str,
    in_stage: str,
    max: str,
    overdue_since: str,
    reminder: int,
) -> dict[str, Any]:
    """One overdue record as a reminder mail shows it (an item of `records`)."""
    return _Merge("records[]", {
        "record": _Merge("record", record), "owner": _Merge("owner", person(owner) or {}), "stage": stage,
        "in_stage": in_stage, "max": max, "overdue_since": overdue_since, "reminder": reminder,
    })  # fmt: skip


def reminder_context(
    *,
    recipient: model.User,
    organization: model.Organization | None,
    records: Sequence[Mapping[str, Any]],
    also_overdue: Sequence[Mapping[str, Any]] = (),
    digest: bool = False,
) -> dict[str, Any]:
    """The merge names of a reminder mail: the reminded user, the records it reminds of, and the organization.

    Without `digest` the mail is about one record, whose item names (record, owner, stage, in_stage, max,
    overdue_since, reminder) are also at the top level. `also_overdue` lists a digest's other overdue records.
    """
    out: dict[str, Any] = {
        "recipient": _Merge("recipient", person(recipient) or {}),
        "organization": _Merge("organization", _organization(organization) if organization else {}),
        "records": list(records),
        "also_overdue": list(also_overdue),
    }
    if not digest:
        (item,) = records
        out.update(item)
    return out


def human_duration(length: dt.timedelta) -> str:
    """A length as a person says it, rounded down: `5 days`, `1 day`, `20 hours`, `45 minutes`."""
    seconds = max(0, int(length.total_seconds()))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return "less than a minute"


@functools.lru_cache(maxsize=1024)
def _user_merge(name: str, user: model.User | None) -> _Merge:
    return _Merge(name, person(user) or {})


@functools.lru_cache(maxsize=16)
def _organization_merge(organization: model.Organization | None) -> _Merge:
    return _Merge("organization", _organization(organization) if organization else {})


@functools.lru_cache(maxsize=16)
def _organization(organization: model.Organization) -> dict[str, Any]:
    return {f.name: getattr(organization, f.name) for f in dataclasses.fields(organization)}


_ABSENT = object()


class _Budget:
    """What one message may still take: time (on the monotonic clock, from the start of its render) and output."""

    def __init__(self, limits: model.Limits) -> None:
        self.seconds = limits.render_time.seconds
        self.deadline = time.monotonic() + self.seconds
        self.size = limits.message_size  # bytes (UTF-8) of subject, text and html together
        self.used = 0

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise templates.LimitError(f"it took longer than {self.seconds} s to render (Settings limits.render_time)")

    def write(self, chunk: str) -> None:
        self.used += len(chunk) if chunk.isascii() else len(chunk.encode("utf-8", "surrogatepass"))
        if self.used > self.size:
            raise templates.LimitError(f"it renders more than {self.size} bytes (Settings limits.message_size)")
        self.tick()


_NO_TIME = model.Limits(render_time=timing.Duration(seconds=10**9))
_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("render_budget", default=None)


def _budget() -> _Budget:
    """The budget of the message being rendered (a template used outside `render` gets the default size)."""
    return _BUDGET.get() or _Budget(_NO_TIME)


def _check_result(value: Any, max_size: int) -> None:
    """What an operation made: text within the message size, lists within MAX_ITEMS."""
    if isinstance(value, str):
        if len(value) > max_size:
            raise templates.LimitError(f"the text would be {len(value)} characters long", len(value))
    elif isinstance(value, list | tuple | dict | set | frozenset) and len(value) > templates.MAX_ITEMS:
        raise templates.LimitError(f"the list would have {len(value)} items (a template's lists have at most "
                                   f"{templates.MAX_ITEMS})")  # fmt: skip


def _check_printed(value: Any, max_size: int) -> None:
    """A value about to be turned into text: lists and mappings print all they hold."""
    if not isinstance(value, str):
        size = templates.printed_size(value, max_size)
        if size > max_size:
            raise templates.LimitError(f"the value would print as at least {size} characters", size)


def _check_replace(text: str, old: Any, new: Any, count: Any, max_size: int) -> None:
    if isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
        found = text.count(old) if old else len(text) + 1
        if isinstance(count, int) and count >= 0:
            found = min(found, count)
        size = len(text) + found * (len(new) - len(old))
        if size > max_size:
            raise templates.LimitError(f"the text would be {size} characters long", size)


def _check_width(width: Any, max_size: int) -> None:
    if isinstance(width, int) and width > max_size:
        raise templates.LimitError(f"the text would be {width} characters long", width)


def _joined(items: Iterable[Any], separator: Any, max_size: int) -> list[Any]:
    """The items to join, checked: their text and the separators between them within the size."""
    listed = list(items)
    gaps = len(str(separator)) * max(0, len(listed) - 1)
    size = gaps + sum(templates.printed_size(item, max_size) - 2 for item in listed)
    if size > max_size:
        raise templates.LimitError(f"the joined text would be at least {size} characters long", size)
    return listed


def _check_str_method(
    text: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], max_size: int
) -> tuple[Any, ...]:
    """A text's methods that can make a much longer text, checked before they run; the arguments to call with."""
    if name in ("ljust", "rjust", "center", "zfill") and args:
        _check_width(args[0], max_size)
    elif name == "expandtabs":
        tab = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(tab, int):
            _check_width(len(text) + text.count("\t") * tab, max_size)
    elif name == "replace" and len(args) >= 2:
        _check_replace(text, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count", -1), max_size)
    elif name == "join" and args:
        return (_joined(args[0], text, max_size), *args[1:])
    elif name == "translate" and args and isinstance(args[0], Mapping):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        _check_width(len(text) * longest, max_size)
    elif name in ("format", "format_map"):
        _check_format(text, args, kwargs, max_size)
    return args


def _check_format(text: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], max_size: int) -> None:
    """str.format: the widths in its fields count, and so do the values."""
    padding = 0
    try:
        fields = list(string.Formatter().parse(text))
    except ValueError:
        return  # str.format says what is wrong
    for _literal, _field, spec, _conversion in fields:
        if spec and "{" in spec:
            raise templates.LimitError("str.format may not take a width from its arguments ({:{}})")
        padding += sum(int(n) for n in _DIGITS.findall(spec or ""))
    size = len(text) + padding + templates.printed_size((args, kwargs), max_size)
    if size > max_size:
        raise templates.LimitError(f"the text would be at least {size} characters long", size)


_DIGITS = re.compile(r"\d+")


# Filters that turn their value into text (a list prints all it holds), and checks of the filters whose arguments
# can make their text much longer; each takes (value, arguments, keyword arguments, size) and gives the value.
_PRINTING = frozenset({
    "string", "tojson", "pprint", "e", "escape", "forceescape", "urlencode", "xmlattr", "safe", "title", "upper",
    "lower", "capitalize", "trim", "striptags", "urlize", "wordwrap", "truncate", "center", "indent", "replace",
    "format", "wordcount",
})  # fmt: skip


def _filter_center(value: Any, args: Sequence[Any], kwargs: Mapping[str, Any], max_size: int) -> Any:
    _check_width(args[0] if args else kwargs.get("width", 80), max_size)
    return value


def _filter_indent(value: Any, args: Sequence[Any], kwargs: Mapping[str, Any], max_size: int) -> Any:
    width = args[0] if args else kwargs.get("width", 4)
    step = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    text = str(value)
    _check_width(len(text) + (text.count("\n") + 1) * step, max_size)
    return value


def _filter_wordwrap(value: Any, args: Sequence[Any], kwargs: Mapping[str, Any], max_size: int) -> Any:
    width = args[0] if args else kwargs.get("width", 79)
    wrap = args[2] if len(args) > 2 else kwargs.get("wrapstring")
    text = str(value)
    if isinstance(width, int):
        lines = len(text) // max(width, 1) + text.count("\n") + 1
        if isinstance(wrap, str):
            _check_width(len(text) + lines * len(wrap), max_size)
        if len(text) * lines > _WRAP_WORK:  # textwrap cuts a long word line by line, copying the rest each time
            raise templates.LimitError(f"wrapping {len(text)} characters at {width} columns takes too long")
    return value


_WRAP_WORK = 2 * 10**9  # characters times lines: about a quarter of a second of textwrap


def _filter_replace(value: Any, args: Sequence[Any], kwargs: Mapping[str, Any], max_size: int) -> Any:
    if len(args) >= 2:
        _check_replace(str(value), args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count"), max_size)
    return value


def _filter_format(value: Any, args: Sequence[Any], kwargs: Mapping[str, Any], max_size: int) -> Any:
    templates.check_percent(str(value), kwargs or tuple(args), max_size)
    return value


def _filter_join(value: Any, args: Sequence[Any], kwargs: Mapping[str, Any], max_size: int) -> Any:
    return _joined(value, args[0] if args else kwargs.get("d", ""), max_size)


def _filter_count(value: Any, args: Sequence[Any], kwargs: Mapping[str, Any], max_size: int) -> Any:
    count = args[0] if args else kwargs.get("linecount", kwargs.get("slices"))
    if isinstance(count, int) and count > templates.MAX_ITEMS:
        raise templates.LimitError(f"{count} groups are more than a template's lists hold ({templates.MAX_ITEMS})")
    return value


def _filter_sum(value: Any, args: Sequence[Any], kwargs: Mapping[str, Any], max_size: int) -> Any:
    start = args[1] if len(args) > 1 else kwargs.get("start", 0)
    if isinstance(start, int | float):
        return value
    listed = list(value)  # lists added one by one: each sum copies all before it
    if len(listed) > 1000 or sum(len(x) for x in listed if isinstance(x, list | tuple | str)) > templates.MAX_ITEMS:
        raise templates.LimitError(f"a sum of {len(listed)} lists or texts is more than a template may make")
    return listed


def _filter_round(value: Any, args: Sequence[Any], kwargs: Mapping[str, Any], max_size: int) -> Any:
    precision = args[0] if args else kwargs.get("precision", 0)
    if isinstance(precision, int) and abs(precision) > templates.MAX_DIGITS:
        raise templates.LimitError(f"rounding to {precision} digits (at most {templates.MAX_DIGITS})")
    return value


_FILTER_CHECKS: Mapping[str, Callable[[Any, Sequence[Any], Mapping[str, Any], int], Any]] = {
    "center": _filter_center, "indent": _filter_indent, "wordwrap": _filter_wordwrap, "replace": _filter_replace,
    "format": _filter_format, "join": _filter_join, "batch": _filter_count, "slice": _filter_count,
    "sum": _filter_sum, "round": _filter_round,
}  # fmt: skip


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that checks its value and arguments before it runs, and what it made after."""
    first = 1 if hasattr(function, "jinja_pass_arg") else 0  # the context or environment comes first
    check = _FILTER_CHECKS.get(name)
    printing = name in _PRINTING

    @functools.wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.tick()
        if len(args) > first:
            value = args[first]
            if printing:
                _check_printed(value, budget.size)
            if check is not None:
                checked = check(value, args[first + 1 :], kwargs, budget.size)
                if checked is not value:
                    args = (*args[:first], checked, *args[first + 1 :])
        result = function(*args, **kwargs)
        _check_result(result, budget.size)
        return result

    return bounded


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # Jinja's names
    if n * max * 12 > _budget().size:
        raise templates.LimitError(f"lipsum({n}, max={max}) would be longer than a message may be")
    return str(jinja2.utils.generate_lorem_ipsum(n=n, html=html, min=min, max=max))


def _range(*args: int) -> range:
    return templates.bounded_range(*args)


class _Sandbox(jinja2.sandbox.SandboxedEnvironment):
    """The validator's sandbox with the render limits, reading a merge object's fields before anything else.

    Jinja's `record.company` tries the attribute first and the item after a raised AttributeError; merge
    objects are plain mappings of data, so their fields are looked up directly (a field named like a dict
    method, `items` say, is the field). Anything else goes through the sandbox's own checks.

    The limits: the operators that can make long text or large numbers (`*`, `**`, `+`, `-`, `%`), every call
    (methods, macros, globals), every filter, every loop (its iterable is wrapped), every `~` and every printed
    value go through a check here, and take a look at the clock.
    """

    intercepted_binops = frozenset({"*", "**", "+", "-", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=self._finalize, optimized=False, **options)  # nothing computed while compiling
        self.globals["range"] = _range
        self.globals["lipsum"] = _lipsum
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.concat = self._concat  # type: ignore[method-assign]  # the text of set blocks and macros

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is _Merge:
            value = dict.get(obj, attribute, _ABSENT)
            if value is not _ABSENT:
                return value
        return super().getattr(obj, attribute)

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        budget = _budget()
        budget.tick()
        return templates.binop(operator, left, right, budget.size)

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.tick()
        owner = getattr(__obj, "__self__", None)
        wrapped = getattr(getattr(__obj, "__wrapped__", None), "__self__", None)  # the sandbox's str.format
        if isinstance(owner, str):
            args = _check_str_method(owner, __obj.__name__, args, kwargs, budget.size)
        elif isinstance(wrapped, str) and __obj.__name__ in ("format", "format_map"):
            _check_format(wrapped, args, kwargs, budget.size)
        result = super().call(__context, __obj, *args, **kwargs)
        _check_result(result, budget.size)
        if isinstance(owner, list | dict | set):
            _check_result(owner, budget.size)  # append, extend, update: grown in place
        return result

    @staticmethod
    def _finalize(value: Any) -> Any:
        if isinstance(value, str):
            return value  # made by a checked operation, or merge data; counted as output
        budget = _budget()
        budget.tick()
        _check_printed(value, budget.size)
        return value

    @staticmethod
    def _concat(parts: Iterable[str]) -> str:
        budget = _budget()
        budget.tick()
        listed = list(parts)
        size = sum(map(len, listed))
        if size > budget.size:
            raise templates.LimitError(f"the text would be {size} characters long", size)
        return "".join(listed)

    @staticmethod
    def bounded_iter(iterable: Iterable[Any]) -> Iterator[Any]:
        """A loop's items, with a look at the clock for each (a loop of loops makes no call of its own)."""
        budget = _budget()
        for item in iterable:
            budget.tick()
            yield item

    @staticmethod
    @jinja2.pass_eval_context
    def bounded_concat(eval_ctx: jinja2.nodes.EvalContext, *parts: Any) -> str:
        """`a ~ b ~ c`, checked before the parts are joined."""
        budget = _budget()
        budget.tick()
        size = sum(len(part) if isinstance(part, str) else templates.printed_size(part, budget.size) for part in parts)
        if size > budget.size:
            raise templates.LimitError(f"the text would be at least {size} characters long", size)
        join = jinja2.runtime.markup_join if eval_ctx.autoescape else jinja2.runtime.str_join
        return str(join(parts))


class _Bounds(jinja2.visitor.NodeTransformer):
    """Makes every loop's iterable and every `~` go through the sandbox's checks."""

    def visit_For(self, node: jinja2.nodes.For) -> jinja2.nodes.Node:
        self.generic_visit(node)
        node.iter = _call("bounded_iter", [node.iter], node.iter.lineno)
        return node

    def visit_Concat(self, node: jinja2.nodes.Concat) -> jinja2.nodes.Node:
        self.generic_visit(node)
        return _call("bounded_concat", list(node.nodes), node.lineno)


def _call(name: str, args: list[jinja2.nodes.Node], lineno: int) -> jinja2.nodes.Call:
    return jinja2.nodes.Call(jinja2.nodes.EnvironmentAttribute(name, lineno=lineno), args, [], None, None,
                             lineno=lineno)  # fmt: skip


@functools.cache
def _environment(html: bool) -> jinja2.Environment:
    base = templates.environment(html)
    return _Sandbox(undefined=_Missing, autoescape=base.autoescape, keep_trailing_newline=base.keep_trailing_newline)


_Compiled = tuple[jinja2.Template, dict[str, Any]]


@functools.lru_cache(maxsize=2048)
def _compiled(source: str, html: bool) -> _Compiled:
    """A template text parsed and compiled once (compiling is 98% of rendering one message), with the
    environment's globals (`range`, `namespace`...) that it names: most name none."""
    env = _environment(html)
    parsed = env.parse(source)  # parsed once: for the names here and compiled below
    named = {n.name for n in parsed.find_all(jinja2.nodes.Name) if n.ctx == "load"}
    bounded = _Bounds().visit(parsed)
    bounded.set_environment(env)
    return env.from_string(bounded), {k: v for k, v in env.globals.items() if k in named}


def render(template: model.Template, merge: Mapping[str, Any], limits: model.Limits | None = None) -> Rendered:
    """Render subject, text and html within the render limits (Settings.limits); raises RenderError with the
    block reason."""
    budget = _Budget(limits or model.Limits())
    token = _BUDGET.set(budget)
    try:
        subject = _render(_compiled(template.subject, False), merge, budget).strip()
        text = _render(_compiled(template.text, False), merge, budget)
        html = _render(_compiled(template.html, True), merge, budget) if template.html else None
    except RenderError:
        raise
    except templates.LimitError as exc:
        reason = f"template {template.name} went past a limit: {exc}"
        if exc.size:
            reason += f", more than a message may hold ({budget.size} bytes, Settings limits.message_size)"
        raise RenderError(reason) from None
    except jinja2.TemplateError as exc:  # a sandbox refusal or a filter failing on a value
        raise RenderError(f"template {template.name} cannot be rendered: {exc}") from None
    except Exception as exc:  # 1 / 0, "a" + 1, a value of the wrong type for a filter
        raise RenderError(f"template {template.name} cannot be rendered: {type(exc).__name__}: {exc}") from None
    finally:
        _BUDGET.reset(token)
    check_header("subject", subject)
    return Rendered(subject, text, html)


def _render(compiled: _Compiled, merge: Mapping[str, Any], budget: _Budget) -> str:
    """What `template.render(merge)` does, without the copying that costs more than rendering a short template,
    and with its output counted against the budget as it is made.

    Jinja builds each render's context from a fresh dict of its globals and the merge values, and a set of the
    globals' names; here the merge values are the context as they are (Jinja writes a template's own variables
    elsewhere, never into them), with the globals added only for a template that names one.
    """
    template, names = compiled
    values = {**names, **merge} if names else merge
    context = jinja2.runtime.new_context(template.environment, template.name, template.blocks,
                                         values, shared=True)  # type: ignore[arg-type]  # fmt: skip
    out = []
    try:
        for chunk in template.root_render_func(context):
            budget.write(chunk)
            out.append(chunk)
    except Exception:
        return template.environment.handle_exception()
    return "".join(out)


def check_header(name: str, value: str) -> None:
    """Merge data must not break a header: CR, LF or NUL would let it add headers of its own."""
    if any(c in value for c in _HEADER_BREAKERS):
        raise RenderError(f"merge data put a line break or NUL into the {name} header; nothing was sent")
