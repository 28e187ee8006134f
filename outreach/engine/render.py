"""Rendering a template for one recipient: merge data in the sandbox, nothing missing, no header injection.

A template that names a field the record lacks does not render an empty
string: it fails with "missing merge field record.first_name", and the
enrollment is blocked with that reason (unless the template gives a default).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import jinja2
import jinja2.nodes
import jinja2.runtime
import jinja2.sandbox

from outreach.rules import model, templates

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


class _Sandbox(jinja2.sandbox.SandboxedEnvironment):
    """The validator's sandbox, reading a merge object's fields before anything else.

    Jinja's `record.company` tries the attribute first and the item after a raised AttributeError; merge
    objects are plain mappings of data, so their fields are looked up directly (a field named like a dict
    method, `items` say, is the field). Anything else goes through the sandbox's own checks.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is _Merge:
            value = dict.get(obj, attribute, _ABSENT)
            if value is not _ABSENT:
                return value
        return super().getattr(obj, attribute)


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
    return env.from_string(parsed), {k: v for k, v in env.globals.items() if k in named}


def render(template: model.Template, merge: Mapping[str, Any]) -> Rendered:
    """Render subject, text and html; raises RenderError with the block reason."""
    try:
        subject = _render(_compiled(template.subject, False), merge).strip()
        text = _render(_compiled(template.text, False), merge)
        html = _render(_compiled(template.html, True), merge) if template.html else None
    except RenderError:
        raise
    except jinja2.TemplateError as exc:  # a sandbox refusal or a filter failing on a value
        raise RenderError(f"template {template.name} cannot be rendered: {exc}") from None
    check_header("subject", subject)
    return Rendered(subject, text, html)


def _render(compiled: _Compiled, merge: Mapping[str, Any]) -> str:
    """What `template.render(merge)` does, without the copying that costs more than rendering a short template.

    Jinja builds each render's context from a fresh dict of its globals and the merge values, and a set of the
    globals' names; here the merge values are the context as they are (Jinja writes a template's own variables
    elsewhere, never into them), with the globals added only for a template that names one.
    """
    template, names = compiled
    values = {**names, **merge} if names else merge
    context = jinja2.runtime.new_context(template.environment, template.name, template.blocks,
                                         values, shared=True)  # type: ignore[arg-type]  # fmt: skip
    try:
        return template.environment.concat(template.root_render_func(context))
    except Exception:
        return template.environment.handle_exception()


def check_header(name: str, value: str) -> None:
    """Merge data must not break a header: CR, LF or NUL would let it add headers of its own."""
    if any(c in value for c in _HEADER_BREAKERS):
        raise RenderError(f"merge data put a line break or NUL into the {name} header; nothing was sent")
